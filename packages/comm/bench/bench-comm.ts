/**
 * `pnpm bench:comm`: latency of all-reduce / all-gather of 2C+1 float32
 * (C = 64, 256, 1024: the SyncBatchNorm payloads) and bus bandwidth of
 * all-reduces from 1 KiB to 64 MiB, at 2 and 4 ranks, for bagua's `threads`
 * and `gloo` backends, each next to PyTorch's gloo backend (torch.distributed,
 * measured in the same run by tools/bench_torch_gloo.py on /usr/bin/python3).
 *
 *   node dist/bench/bench-comm.js [--ranks 2,4] [--iters N] [--repeat R] [--json out.json]
 *        [--sizes 1K,64K,1M,16M,64M] [--no-torch] [--no-gloo] [--rounds R] [--no-pair | --pair-only] [--ab K=V,...]
 *
 * With --repeat R the backends are measured R times, interleaved, and each
 * figure is the median of the R runs (this machine's neighbours come and go).
 *
 * Then (unless --no-pair; --pair-only: nothing else) gloo against torch-gloo
 * paired: both groups stay up side by side, and for each size one block of
 * timed all-reduces runs on one, then one on the other (order alternating),
 * for --rounds R (default 5) rounds; the ratio of each pair of blocks is
 * taken, and the table gives the median ratio with its min and max, the
 * median busbw of each, and the load average before and after (sizes: 1 KiB
 * to 64 MiB, or --sizes; with --json F, in F's .paired.json). Ratios of
 * runs minutes apart on a shared machine measure the neighbours, not us.
 * --ab K=V,...: the reference is a second gloo group run with these
 * environment variables instead (A/B of the shim's settings, e.g.
 * BAGUA_GLOO_SMALL_BYTES=0 for gloo's own algorithms).
 *
 * Bus bandwidth follows nccl-tests: algbw = bytes / time, busbw = algbw * 2(n-1)/n.
 * Latency is the median over iterations of rank 0's per-call time.
 */
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
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
const pairOnly = argv.includes('--pair-only');
const noPair = argv.includes('--no-pair');
const rounds = Math.max(1, Number(opt('--rounds') ?? 5));
// --ab K=V[,K=V]: the reference is a second gloo group with these environment variables instead of torch-gloo.
const abEnv = opt('--ab');
const PAIR_SIZES = opt('--sizes') ? SIZES : [1 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20, 64 << 20];

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

/**
 * A group serving timed blocks (bench-comm-rank.ts with BAGUA_BENCH_FIFO, or
 * bench_torch_gloo.py --serve): commands go down a FIFO, `BLOCK <json>` lines
 * come back on its stdout.
 */
class BlockServer {
  private readonly fd: number;
  private out = '';
  private waiter: { resolve: (b: Bandwidth) => void; reject: (e: Error) => void } | null = null;
  private exited: Error | null = null;
  private readonly done: Promise<void>;

  constructor(
    readonly name: string,
    fifo: string,
    cmd: string,
    args: string[],
    env: Record<string, string>,
  ) {
    execFileSync('mkfifo', [fifo]);
    // Read-write: opening never blocks on the reader (rank 0 opens it once its group is up).
    this.fd = openSync(fifo, 'r+');
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const take = (d: Buffer) => {
      this.out += d.toString();
      for (let nl = this.out.indexOf('\n'); nl >= 0; nl = this.out.indexOf('\n')) {
        const line = this.out.slice(0, nl);
        this.out = this.out.slice(nl + 1);
        const at = line.indexOf('BLOCK ');
        if (at >= 0 && this.waiter) {
          const w = this.waiter;
          this.waiter = null;
          w.resolve(JSON.parse(line.slice(at + 6)) as Bandwidth);
        } else if (at < 0) this.log += line + '\n';
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', (d: Buffer) => (this.log += d.toString()));
    this.done = new Promise((resolve) => {
      child.on('close', (code) => {
        this.exited = new Error(`${name} exited ${code}:\n${this.log.slice(-3000)}`);
        this.waiter?.reject(this.exited);
        this.waiter = null;
        resolve();
      });
    });
  }

  log = '';

  block(bytes: number): Promise<Bandwidth> {
    if (this.exited) return Promise.reject(this.exited);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      writeSync(this.fd, `bw ${bytes}\n`);
    });
  }

  async close(): Promise<void> {
    if (!this.exited) writeSync(this.fd, 'quit\n');
    await this.done;
    closeSync(this.fd);
  }
}

interface PairRow {
  bytes: number;
  ours_busbw_gbs: number;
  torch_busbw_gbs: number;
  ratio_median: number;
  ratio_min: number;
  ratio_max: number;
  ratios: number[];
}
interface PairResult {
  world_size: number;
  reference: string;
  rounds: number;
  load_before: number[];
  load_after: number[];
  rows: PairRow[];
}

async function paired(n: number): Promise<PairResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-comm-'));
  const load_before = loadavg();
  const ours = new BlockServer(
    'gloo',
    join(dir, 'gloo'),
    process.execPath,
    [LAUNCHER, '--nproc-per-node', String(n), '--backend', 'gloo', '--timeout-ms', '600000', fileURLToPath(RANK_SCRIPT), '1', '20'],
    { BAGUA_BENCH_FIFO: join(dir, 'gloo') },
  );
  const ref = abEnv
    ? new BlockServer(
        `gloo[${abEnv}]`,
        join(dir, 'torch'),
        process.execPath,
        [LAUNCHER, '--nproc-per-node', String(n), '--backend', 'gloo', '--timeout-ms', '600000', fileURLToPath(RANK_SCRIPT), '1', '20'],
        { BAGUA_BENCH_FIFO: join(dir, 'torch'), ...Object.fromEntries(abEnv.split(',').map((kv) => kv.split('=', 2) as [string, string])) },
      )
    : new BlockServer(
        'torch-gloo',
        join(dir, 'torch'),
        '/usr/bin/python3',
        [TORCH_SCRIPT, '--world-size', String(n), '--bw-iters', '20', '--serve', join(dir, 'torch')],
        {},
      );
  const samples = new Map<number, { ours: number[]; torch: number[]; ratios: number[] }>();
  try {
    for (let round = 0; round < rounds; round++) {
      process.stderr.write(`bench:comm: paired gloo / torch-gloo at ${n} ranks, round ${round + 1} of ${rounds}...\n`);
      for (const [i, bytes] of PAIR_SIZES.entries()) {
        // Alternate which goes first, so that a trend within a pair favours neither.
        const oursFirst = (round + i) % 2 === 0;
        const first = await (oursFirst ? ours : ref).block(bytes);
        const second = await (oursFirst ? ref : ours).block(bytes);
        const [o, t] = oursFirst ? [first, second] : [second, first];
        const s = samples.get(bytes) ?? { ours: [], torch: [], ratios: [] };
        s.ours.push(o.busbw_gbs);
        s.torch.push(t.busbw_gbs);
        s.ratios.push(o.busbw_gbs / t.busbw_gbs);
        samples.set(bytes, s);
      }
    }
  } finally {
    await Promise.all([ours.close(), ref.close()]);
    rmSync(dir, { recursive: true, force: true });
  }
  const rows = PAIR_SIZES.map((bytes) => {
    const s = samples.get(bytes)!;
    return {
      bytes,
      ours_busbw_gbs: median(s.ours),
      torch_busbw_gbs: median(s.torch),
      ratio_median: median(s.ratios),
      ratio_min: Math.min(...s.ratios),
      ratio_max: Math.max(...s.ratios),
      ratios: s.ratios,
    };
  });
  return { world_size: n, reference: ref.name, rounds, load_before, load_after: loadavg(), rows };
}

function pairTable(r: PairResult): string[] {
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
  const out = [
    '',
    `world size ${r.world_size}, gloo vs ${r.reference} paired (${r.rounds} rounds; load average ${load(r.load_before)} before, ${load(r.load_after)} after)`,
    `  all-reduce busbw (GB/s)     gloo   reference   gloo/reference median [min, max]`,
  ];
  for (const row of r.rows) {
    out.push(
      `    ${sizeLabel(row.bytes).padStart(8)} ${' '.repeat(10)} ${fmt(row.ours_busbw_gbs, 3).padStart(9)} ${fmt(row.torch_busbw_gbs, 3).padStart(11)}   ` +
        `${row.ratio_median.toFixed(2).padStart(6)}x [${row.ratio_min.toFixed(2)}, ${row.ratio_max.toFixed(2)}]`,
    );
  }
  return out;
}

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

for (const n of pairOnly ? [] : ranksList) {
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

const pairs: PairResult[] = [];
if (!noPair && !noTorch && !noGloo && gl.available) {
  for (const n of ranksList) {
    try {
      const r = await paired(n);
      pairs.push(r);
      lines.push(...pairTable(r));
    } catch (e) {
      console.warn(`bench:comm: paired run at ${n} ranks failed: ${(e as Error).message}`);
    }
  }
}

console.log(
  `\nbench:comm on ${cpus().length} CPU(s) (${cpus()[0]?.model ?? 'unknown'}), ${repeat} run(s) per backend; ` +
    'latency = median per call, ratio = how many times faster than torch-gloo',
);
console.log(lines.join('\n'));
if (jsonOut) {
  writeFileSync(jsonOut, JSON.stringify(all, null, 2));
  if (pairs.length) writeFileSync(jsonOut.replace(/\.json$/, '') + '.paired.json', JSON.stringify(pairs, null, 2));
}
