/**
 * `pnpm bench:comm`: latency of all-reduce / all-gather of 2C+1 float32
 * (C = 64, 256, 1024: the SyncBatchNorm payloads) and bus bandwidth of
 * all-reduces from 1 KiB to 64 MiB, at 2 and 4 ranks, for bagua's `threads`
 * and `gloo` backends, each next to PyTorch's gloo backend (torch.distributed,
 * measured in the same run by tools/bench_torch_gloo.py on /usr/bin/python3).
 *
 *   node dist/bench/bench-comm.js [--ranks 2,4] [--iters N] [--repeat R] [--json out.json]
 *        [--sizes 1K,64K,1M,16M,64M] [--no-torch] [--no-gloo]
 *
 * With --repeat R the backends are measured R times, interleaved, and each
 * figure is the median of the R runs (this machine's neighbours come and go).
 *
 * Bus bandwidth follows nccl-tests: algbw = bytes / time, busbw = algbw * 2(n-1)/n.
 * Latency is the median over iterations of rank 0's per-call time.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { runThreads } from '../src/launch/threads.js';
import { glooAvailability } from '../src/gloo/library.js';
import { median } from '@bagua/testing';

interface Result {
  backend: string;
  world_size: number;
  latency: Record<string, { allreduce_us: number; allgather_us: number }>;
  bandwidth: Bandwidth | null;
  bandwidths?: Bandwidth[];
}
interface Bandwidth {
  bytes: number;
  time_us: number;
  algbw_gbs: number;
  busbw_gbs: number;
}

const argv = process.argv.slice(2);
function opt(name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}
const ranksList = (opt('--ranks') ?? '2,4').split(',').map(Number);
const COUNTS = [64, 256, 1024].map((c) => 2 * c + 1);
const itersOverride = opt('--iters');
const noTorch = argv.includes('--no-torch');
const noGloo = argv.includes('--no-gloo');
const UNITS: Record<string, number> = { '': 1, K: 1 << 10, M: 1 << 20 };
const SIZES = (opt('--sizes') ?? '1K,64K,1M,16M,64M').split(',').map((v) => {
  const m = /^(\d+)([KM]?)$/i.exec(v.trim());
  if (!m) throw new Error(`--sizes: bad size '${v}' (bytes, or with K or M)`);
  return Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
});
const sizeLabel = (b: number) => (b >= 1 << 20 ? `${b >> 20} MiB` : b >= 1 << 10 ? `${b >> 10} KiB` : `${b} B`);
const jsonOut = opt('--json');
const repeat = Math.max(1, Number(opt('--repeat') ?? 1));

const RANK_SCRIPT = new URL('./bench-comm-rank.js', import.meta.url);
const LAUNCHER = fileURLToPath(new URL('../../bin/bagua-launch.js', import.meta.url));
const TORCH_SCRIPT = fileURLToPath(new URL('../../../../tools/bench_torch_gloo.py', import.meta.url));

function parse(out: string, marker: string): Result {
  const line = out.split('\n').find((l) => l.includes(marker));
  if (!line) throw new Error(`no ${marker} line in:\n${out.slice(-3000)}`);
  return JSON.parse(line.slice(line.indexOf(marker) + marker.length + 1)) as Result;
}

function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${out.slice(-3000)}`))));
  });
}

async function threads(n: number, iters: number): Promise<Result> {
  const res = await runThreads(n, RANK_SCRIPT, [String(iters), '20', COUNTS.join(','), SIZES.join(',')], { output: 'capture' });
  if (res.exitCode !== 0) throw new Error(`threads bench failed: ${res.stderr.join('')}`);
  return parse(res.stdout.join(''), 'BENCH_RESULT');
}

async function gloo(n: number, iters: number): Promise<Result> {
  const out = await run(process.execPath, [
    LAUNCHER,
    '--nproc-per-node',
    String(n),
    '--backend',
    'gloo',
    '--timeout-ms',
    '120000',
    fileURLToPath(RANK_SCRIPT),
    String(iters),
    '20',
    COUNTS.join(','),
    SIZES.join(','),
  ]);
  return parse(out, 'BENCH_RESULT');
}

async function torch(n: number, iters: number): Promise<Result> {
  const out = await run('/usr/bin/python3', [
    TORCH_SCRIPT,
    '--world-size',
    String(n),
    '--counts',
    COUNTS.join(','),
    '--iters',
    String(iters),
    '--warmup',
    String(Math.max(10, iters >> 3)),
    '--bw-iters',
    '20',
    '--bw-sizes',
    SIZES.join(','),
  ]);
  const line = out.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) throw new Error(`no JSON from ${TORCH_SCRIPT}:\n${out.slice(-3000)}`);
  return JSON.parse(line) as Result;
}

const fmt = (x: number | undefined, digits = 1) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits));
/** ratio as "N.NNx": how many times faster ours is (for times: torch / ours; for bandwidth: ours / torch). */
const speedup = (ours: number | undefined, ref: number | undefined, higherIsBetter = false) =>
  ours === undefined || ref === undefined || !ours || !ref ? '-' : `${(higherIsBetter ? ours / ref : ref / ours).toFixed(2)}x`;

const all: Result[] = [];
const lines: string[] = [];
const gl = glooAvailability();
if (!gl.available && !noGloo) console.warn(`gloo unavailable, skipping it: ${gl.reason.split('\n')[0]}`);

function medianOf(xs: number[]): number | undefined {
  const v = xs.filter((x) => Number.isFinite(x));
  return v.length ? median(v) : undefined;
}

/** Per-figure median over repeated runs of one backend. */
function combine(runs: Result[]): Result | null {
  if (runs.length === 0) return null;
  const latency: Result['latency'] = {};
  for (const count of COUNTS.map(String)) {
    latency[count] = {
      allreduce_us: medianOf(runs.map((r) => r.latency[count]?.allreduce_us ?? NaN)) ?? NaN,
      allgather_us: medianOf(runs.map((r) => r.latency[count]?.allgather_us ?? NaN)) ?? NaN,
    };
  }
  const bws = runs.map((r) => r.bandwidth).filter((b): b is NonNullable<Result['bandwidth']> => !!b);
  const busbw = medianOf(bws.map((b) => b.busbw_gbs));
  const bandwidth = bws.length
    ? { ...bws.find((b) => b.busbw_gbs === busbw)! }
    : null;
  const bandwidths = SIZES.map((bytes) => {
    const at = runs.map((r) => r.bandwidths?.find((b) => b.bytes === bytes)).filter((b): b is Bandwidth => !!b);
    const med = medianOf(at.map((b) => b.busbw_gbs));
    return at.find((b) => b.busbw_gbs === med) ?? { bytes, time_us: NaN, algbw_gbs: NaN, busbw_gbs: NaN };
  });
  return { backend: runs[0]!.backend, world_size: runs[0]!.world_size, latency, bandwidth, bandwidths };
}

for (const n of ranksList) {
  const runs: Record<string, Result[]> = { threads: [], gloo: [], torch: [] };
  const step = async (name: string, f: () => Promise<Result>) => {
    process.stderr.write(`bench:comm: ${name} at ${n} ranks...\n`);
    try {
      const r = await f();
      runs[name]!.push(r);
      all.push(r);
    } catch (e) {
      console.warn(`bench:comm: ${name} at ${n} ranks failed: ${(e as Error).message.split('\n')[0]}`);
    }
  };
  for (let rep = 0; rep < repeat; rep++) {
    await step('threads', () => threads(n, Number(itersOverride ?? 5000)));
    if (gl.available && !noGloo) await step('gloo', () => gloo(n, Number(itersOverride ?? (n <= 2 ? 2000 : 500))));
    if (!noTorch) await step('torch', () => torch(n, Number(itersOverride ?? (n <= 2 ? 500 : 100))));
  }
  const results: Record<string, Result | null> = {
    threads: combine(runs.threads!),
    gloo: combine(runs.gloo!),
    torch: combine(runs.torch!),
  };
  const T = results.threads;
  const G = results.gloo;
  const P = results.torch;
  lines.push('');
  lines.push(`world size ${n}                threads      gloo  torch-gloo   threads/torch  gloo/torch`);
  for (const count of COUNTS) {
    for (const [label, key] of [
      ['all-reduce', 'allreduce_us'],
      ['all-gather', 'allgather_us'],
    ] as const) {
      const t = T?.latency[String(count)]?.[key];
      const g = G?.latency[String(count)]?.[key];
      const p = P?.latency[String(count)]?.[key];
      lines.push(
        `  ${label} ${String(count).padStart(4)} f32 (us) ${fmt(t).padStart(8)} ${fmt(g).padStart(9)} ${fmt(p).padStart(11)}   ${speedup(t, p).padStart(13)} ${speedup(g, p).padStart(11)}`,
      );
    }
  }
  // Bus bandwidth = bytes / time * 2(n-1)/n (nccl-tests), median per-call time; ratio = ours / torch-gloo.
  lines.push(`  all-reduce bus bandwidth (GB/s)   threads      gloo  torch-gloo   threads/torch  gloo/torch`);
  SIZES.forEach((bytes, i) => {
    const tb = T?.bandwidths?.[i]?.busbw_gbs;
    const gb = G?.bandwidths?.[i]?.busbw_gbs;
    const pb = P?.bandwidths?.[i]?.busbw_gbs;
    lines.push(
      `    ${sizeLabel(bytes).padStart(8)} ${' '.repeat(20)} ${fmt(tb, 2).padStart(7)} ${fmt(gb, 2).padStart(9)} ${fmt(pb, 2).padStart(11)}   ${speedup(tb, pb, true).padStart(13)} ${speedup(gb, pb, true).padStart(11)}`,
    );
  });
}

console.log(
  `\nbench:comm on ${cpus().length} CPU(s) (${cpus()[0]?.model ?? 'unknown'}), ${repeat} run(s) per backend; ` +
    'latency = median per call, ratio = how many times faster than torch-gloo',
);
console.log(lines.join('\n'));
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(all, null, 2));
