/**
 * `pnpm bench:ddp` (issue 12): one data-parallel training step of the CIFAR-style net
 * (4 conv3x3 3-32-32-64-64 + BatchNorm2d + ReLU, max pool, global average pool,
 * Linear(64,10); batch 16 per rank, cross-entropy, SGD momentum 0.9) under
 * withBagua + GradientAllReduce, beside PyTorch DDP over gloo on the same net and
 * batch, in the same run:
 *
 *   ours     --backends threads,gloo x --ranks 1,2,4 x {BatchNorm2d, SyncBatchNorm}
 *            x overlap {off, on} (GradientAllReduce's `overlap` option)
 *   PyTorch  DistributedDataParallel over gloo (tools/bench_ddp_torch.py, ranks spawned
 *            by torch.multiprocessing) at the same rank counts; its SyncBatchNorm is
 *            tried too, and PyTorch 1.13 refuses it on CPU: that cell reads n/a, and the
 *            SyncBatchNorm rows are compared with DDP + BatchNorm2d (marked).
 *   floor    one plain process, no group, no wrapper, one rank's batch: each side's
 *            compute alone.
 *
 * Every rank runs one kernel thread (ours: BAGUA_NUM_THREADS=1, read back per rank;
 * PyTorch: torch.set_num_threads(1), OMP_NUM_THREADS=1). Each job is a fresh set of
 * ranks that runs --warmup steps then --steps timed steps, a barrier before each, and
 * reports the slowest rank's time per step. The jobs run in --rounds interleaved
 * rounds (every configuration once per round, PyTorch's beside ours), so load that
 * comes and goes lands on both sides; figures are medians over all timed steps of all
 * rounds, ratios are ours / PyTorch (below 1: ours faster).
 *
 * Two tables of paired settings, each pair alternating in blocks of steps within one job
 * (overlap-step.ts), so that the load of other jobs on the machine hits both alike; one job per
 * backend and round:
 *   overlap  where communication is a large part of the step: the MLP of overlap-step.ts
 *            (Linear 48-1024, 4 x Linear(1024,1024), Linear(1024,10): 16 MiB of gradients) at
 *            a small batch in --comm-cap-mb buckets, overlap on against off, at --comm-ranks;
 *   SyncBN   the CIFAR-style net with SyncBatchNorm against BatchNorm2d (overlap on) at 2 ranks.
 * Their headline is the median over rounds of each job's paired ratio (the median over block
 * pairs of the ratio of block medians).
 *
 *   pnpm bench:ddp [--ranks 1,2,4] [--backends threads,gloo] [--steps 15] [--warmup 4]
 *                  [--rounds 2] [--batch 16] [--overlap off,on] [--no-torch]
 *                  [--comm-ranks 2] [--comm-batch 8] [--comm-cap-mb 4] [--comm-steps 100] [--no-comm]
 *                  [--pair-steps 60] [--no-syncbn-pair]
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { glooAvailability, runThreads } from '@bagua/comm';
import { intOptions, median } from '@bagua/testing';
import { GradientAllReduce } from '../src/index.js';
import type { JobReport } from './bench-ddp-rank.js';

const here = dirname(fileURLToPath(import.meta.url)); // <bagua>/dist/bench
const RANK_SCRIPT = join(here, 'bench-ddp-rank.js');
const OVERLAP_SCRIPT = join(here, 'overlap-step.js');
const LAUNCH_CLI = join(here, 'launch-cli.js');
const TORCH_SCRIPT = join(here, '../../../../tools/bench_ddp_torch.py');
const PYTHON = '/usr/bin/python3'; // Debian's python3-torch; the python3 first on PATH may lack torch
const JOB_TIMEOUT_MS = 180_000;

const { values: args } = parseArgs({
  options: {
    ranks: { type: 'string', default: '1,2,4' },
    backends: { type: 'string', default: 'threads,gloo' },
    steps: { type: 'string', default: '15' },
    warmup: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '2' },
    batch: { type: 'string', default: '16' },
    overlap: { type: 'string', default: 'off,on' },
    'no-torch': { type: 'boolean', default: false },
    'comm-ranks': { type: 'string', default: '2' },
    'comm-batch': { type: 'string', default: '8' },
    'comm-cap-mb': { type: 'string', default: '4' },
    'comm-steps': { type: 'string', default: '100' },
    'no-comm': { type: 'boolean', default: false },
    'pair-steps': { type: 'string', default: '60' },
    'no-syncbn-pair': { type: 'boolean', default: false },
  },
});
const COMM_RANKS = args['comm-ranks']!.split(',').map(Number);
const { 'comm-batch': COMM_BATCH, 'comm-steps': COMM_STEPS, 'pair-steps': PAIR_STEPS } =
  intOptions('bench-ddp', args, { 'comm-batch': 1, 'comm-steps': 20, 'pair-steps': 20 });
const COMM_CAP_MB = Number(args['comm-cap-mb']);
if (COMM_RANKS.some((r) => !Number.isInteger(r) || r < 2)) throw new Error('bench-ddp: --comm-ranks is a list like 2,4 (2 or more)');
if (!(COMM_CAP_MB > 0)) throw new Error(`bench-ddp: --comm-cap-mb must be a positive number, got ${args['comm-cap-mb']}`);
const RANKS = args.ranks!.split(',').map(Number);
const BACKENDS = args.backends!.split(',').map((s) => s.trim());
const { steps: STEPS, warmup: WARMUP, rounds: ROUNDS, batch: BATCH } =
  intOptions('bench-ddp', args, { steps: 1, warmup: 0, rounds: 1, batch: 2 });
const OVERLAPS = args.overlap!.split(',').map((s) => s.trim());
if (RANKS.some((r) => !Number.isInteger(r) || r < 1)) throw new Error('bench-ddp: --ranks is a list like 1,2,4');
for (const b of BACKENDS) if (b !== 'threads' && b !== 'gloo') throw new Error(`bench-ddp: unknown backend '${b}' (threads, gloo)`);
for (const o of OVERLAPS) if (o !== 'off' && o !== 'on') throw new Error(`bench-ddp: --overlap is a list of off, on; got '${o}'`);

const CORES = availableParallelism();
const ONE_THREAD = { BAGUA_NUM_THREADS: '1', OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1' };
const BNS = ['bn', 'syncbn'] as const;
type Bn = (typeof BNS)[number];
const BN_NAME: Record<Bn, string> = { bn: 'BatchNorm2d', syncbn: 'SyncBatchNorm' };

// ---------------------------------------------------------------- jobs

interface TorchReport {
  version: string;
  world: number;
  bn: Bn;
  threads?: number[];
  ms?: number[];
  unsupported?: string;
}

type Outcome<T> = { ok: true; report: T; wallMs: number } | { ok: false; reason: string; wallMs: number };

function lastLines(out: string, err: string): string {
  const m = /BENCH_ERROR (.*)$/m.exec(out);
  if (m) return m[1]!;
  const lines = `${err}\n${out}`.split('\n').map((l) => l.trim()).filter((l) => l && !/^at /.test(l));
  return lines.slice(-3).join(' | ') || 'no output';
}

function resultLine<T>(out: string): T | null {
  const m = /BENCH_RESULT (.*)$/m.exec(out);
  return m ? (JSON.parse(m[1]!) as T) : null;
}

function runChild(cmd: string, argv: string[], env: Record<string, string>): Promise<{ code: number | null; out: string; err: string; wallMs: number }> {
  const t0 = performance.now();
  return new Promise((done) => {
    const child = spawn(cmd, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), JOB_TIMEOUT_MS);
    child.on('error', (e) => (err += `cannot start ${cmd}: ${e.message}\n`));
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, out, err, wallMs: performance.now() - t0 });
    });
  });
}

/** The first wrapped job's report: the net's size and GradientAllReduce's buckets, for the footer. */
let netInfo: JobReport | null = null;

function rankArgs(mode: 'ddp' | 'single', bn: Bn, overlap: string): string[] {
  return ['--mode', mode, '--bn', bn, '--overlap', overlap, '--batch', String(BATCH), '--warmup', String(WARMUP), '--steps', String(STEPS)];
}

async function ours(backend: 'threads' | 'gloo' | 'single', world: number, bn: Bn, overlap: string): Promise<Outcome<JobReport>> {
  if (backend === 'threads') {
    const t0 = performance.now();
    const res = await runThreads(world, RANK_SCRIPT, rankArgs('ddp', bn, overlap), { output: 'capture', env: ONE_THREAD, timeoutMs: 120_000 });
    const wallMs = performance.now() - t0;
    const report = res.exitCode === 0 ? resultLine<JobReport>(res.stdout.join('\n')) : null;
    if (report) netInfo ??= report;
    return report ? { ok: true, report, wallMs }
      : { ok: false, reason: `exit ${res.exitCode}: ${lastLines(res.stdout.join('\n'), res.stderr.join('\n'))}`, wallMs };
  }
  const argv = backend === 'gloo'
    ? [LAUNCH_CLI, '--nproc-per-node', String(world), '--backend', 'gloo', '--timeout-ms', '120000', RANK_SCRIPT, ...rankArgs('ddp', bn, overlap)]
    : [RANK_SCRIPT, ...rankArgs('single', bn, overlap)];
  const r = await runChild(process.execPath, argv, ONE_THREAD);
  const report = r.code === 0 ? resultLine<JobReport>(r.out) : null;
  if (report?.mode === 'ddp') netInfo ??= report;
  return report ? { ok: true, report, wallMs: r.wallMs } : { ok: false, reason: `exit ${r.code}: ${lastLines(r.out, r.err)}`, wallMs: r.wallMs };
}

async function torch(mode: 'ddp' | 'single', world: number, bn: Bn, steps = STEPS): Promise<Outcome<TorchReport>> {
  const r = await runChild(PYTHON, [TORCH_SCRIPT, '--mode', mode, '--world-size', String(world), '--bn', bn,
    '--batch', String(BATCH), '--warmup', String(WARMUP), '--steps', String(steps)], ONE_THREAD);
  const line = r.out.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (r.code !== 0 || !line) return { ok: false, reason: `exit ${r.code}: ${lastLines(r.out, r.err)}`, wallMs: r.wallMs };
  return { ok: true, report: JSON.parse(line) as TorchReport, wallMs: r.wallMs };
}

/** What overlap-step.ts prints (rank 0): medians of the slowest rank's step per setting, and the paired ratio. */
interface PairReport {
  buckets: number;
  /** --pair overlap */
  onMedianMs?: number;
  offMedianMs?: number;
  onOverOff?: number;
  /** --pair bn */
  syncbnMedianMs?: number;
  bnMedianMs?: number;
  syncbnOverBn?: number;
}

/** One overlap-step job; `tag` is the line it prints (OVERLAP or SYNCBN). */
async function pairJob(backend: 'threads' | 'gloo', world: number, tag: string, argv: string[]): Promise<Outcome<PairReport>> {
  const parse = (out: string) => {
    const m = new RegExp(`${tag} (\\{.*\\})$`, 'm').exec(out);
    return m ? (JSON.parse(m[1]!) as PairReport) : null;
  };
  if (backend === 'threads') {
    const t0 = performance.now();
    const res = await runThreads(world, OVERLAP_SCRIPT, argv, { output: 'capture', env: ONE_THREAD, timeoutMs: 120_000 });
    const report = res.exitCode === 0 ? parse(res.stdout.join('\n')) : null;
    const wallMs = performance.now() - t0;
    return report ? { ok: true, report, wallMs }
      : { ok: false, reason: `exit ${res.exitCode}: ${lastLines(res.stdout.join('\n'), res.stderr.join('\n'))}`, wallMs };
  }
  const r = await runChild(process.execPath, [LAUNCH_CLI, '--nproc-per-node', String(world), '--backend', 'gloo',
    '--timeout-ms', '120000', OVERLAP_SCRIPT, ...argv], ONE_THREAD);
  const report = r.code === 0 ? parse(r.out) : null;
  return report ? { ok: true, report, wallMs: r.wallMs } : { ok: false, reason: `exit ${r.code}: ${lastLines(r.out, r.err)}`, wallMs: r.wallMs };
}

const COMM_ARGS = () => ['--pair', 'overlap', '--net', 'mlp', '--bn', 'bn', '--batch', String(COMM_BATCH),
  '--cap-mb', String(COMM_CAP_MB), '--steps', String(COMM_STEPS), '--warmup', '10'];
const SYNCBN_ARGS = () => ['--pair', 'bn', '--net', 'cifar', '--batch', String(BATCH), '--steps', String(PAIR_STEPS),
  '--warmup', String(Math.max(WARMUP, 2)), '--block', '10'];

// ---------------------------------------------------------------- bookkeeping


/** Timed steps of one configuration over all rounds, and its per-round medians. */
class Series {
  readonly ms: number[] = [];
  readonly perRound: number[] = [];
  failure: string | null = null;
  add(ms: readonly number[]): void {
    this.ms.push(...ms);
    this.perRound.push(median(ms));
  }
  get median(): number | null {
    return this.ms.length ? median(this.ms) : null;
  }
}

const series = new Map<string, Series>();
function get(key: string): Series {
  let s = series.get(key);
  if (!s) series.set(key, (s = new Series()));
  return s;
}
const oursKey = (backend: string, world: number, bn: Bn, overlap: string) => `ours ${backend} ${world} ${bn} ${overlap}`;
const torchKey = (world: number) => `torch ddp ${world}`;
const threadNotes = new Set<string>();
let commBuckets: number | null = null;

function record<T>(key: string, label: string, o: Outcome<T>, msOf: (r: T) => number[] | null, threadsOf: (r: T) => number[]): void {
  const s = get(key);
  if (!o.ok) {
    s.failure = o.reason;
    process.stdout.write(`  ${label}: FAILED: ${o.reason}\n`);
    return;
  }
  const ms = msOf(o.report);
  if (ms) s.add(ms);
  process.stdout.write(`  ${label}: ${ms ? `median ${median(ms).toFixed(1)} ms` : 'no times'} (job ${(o.wallMs / 1000).toFixed(1)} s)\n`);
  const t = threadsOf(o.report);
  if (t.some((n) => n !== 1)) threadNotes.add(`${label}: kernel threads per rank ${t.join(',')} (asked 1)`);
}

// ---------------------------------------------------------------- main

const fmt = (v: number | null, d = 1) => (v === null ? 'n/a' : v.toFixed(d));
const ratio = (a: number | null, b: number | null) => (a === null || b === null ? 'n/a' : `${(a / b).toFixed(2)}x`);

async function main(): Promise<void> {
  const started = performance.now();
  // Without the option the single run is GradientAllReduce's default (the rank script passes nothing).
  const gloo = glooAvailability();
  const backends = BACKENDS.filter((b) => b === 'threads' || gloo.available);
  const torchOk = !args['no-torch'] && existsSync(PYTHON);

  console.log(`bagua-ts data-parallel step benchmark: CIFAR-style net (conv3x3 3-32-32-64-64 + BatchNorm2d + ReLU, ` +
    `max pool, GAP, Linear(64,10)), batch [${BATCH},3,32,32] per rank, cross-entropy, SGD momentum 0.9`);
  console.log(`  ours: withBagua + GradientAllReduce (default 25 MiB buckets), backends ${backends.join(', ')}; ` +
    `BatchNorm2d, and SyncBatchNorm via convertSyncBatchnorm`);
  console.log(`  overlap: GradientAllReduce({ overlap }) (default ${new GradientAllReduce().overlap ? 'on' : 'off'}); ran: ${OVERLAPS.join(', ')}`);
  console.log(`  PyTorch: DDP over gloo (defaults: 25 MiB buckets, all-reduce overlapped with backward, broadcast_buffers)` +
    `${torchOk ? '' : ' NOT MEASURED (--no-torch or no /usr/bin/python3)'}`);
  console.log(`  one kernel thread per rank on both sides; ranks ${RANKS.join(', ')}; ${WARMUP} warm-up + ${STEPS} timed ` +
    `steps per job, ${ROUNDS} interleaved round(s); ${CORES} core(s) (${cpus()[0]?.model ?? 'unknown CPU'}), ` +
    `node ${process.version}; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  if (!gloo.available && BACKENDS.includes('gloo')) {
    console.log(`  !!! GLOO ROWS SKIPPED: ${gloo.reason.split('\n')[0]}`);
  }
  if (RANKS.some((r) => r > CORES)) {
    console.log(`  NOTE: ${RANKS.filter((r) => r > CORES).join(', ')} ranks oversubscribe the ${CORES} cores ` +
      '(rows marked *): ranks time-share cores, so a step also waits for descheduled peers.');
  }

  // PyTorch's SyncBatchNorm is tried once per rank count in the first round; a refusal is reported as is.
  const torchSync = new Map<number, string>();
  for (let round = 0; round < ROUNDS; round++) {
    process.stdout.write(`round ${round + 1}/${ROUNDS}\n`);
    record('ours floor', 'ours floor', await ours('single', 1, 'bn', 'default'), (r) => r.ms, (r) => r.kernelThreads);
    if (torchOk) record('torch floor', 'torch floor', await torch('single', 1, 'bn'), (r) => r.ms ?? null, (r) => r.threads ?? [1]);
    for (const world of RANKS) {
      if (torchOk) {
        record(torchKey(world), `torch ddp x${world}`, await torch('ddp', world, 'bn'), (r) => r.ms ?? null, (r) => r.threads ?? [1]);
        if (round === 0) {
          const o = await torch('ddp', world, 'syncbn', 1);
          torchSync.set(world, o.ok ? (o.report.unsupported ? `refused: "${o.report.unsupported}"` : 'ran (not timed here)') : `failed: ${o.reason}`);
        }
      }
      for (const backend of backends) {
        for (const bn of BNS) {
          for (const o of OVERLAPS) {
            const label = `ours ${backend} x${world} ${bn} overlap ${o}`;
            record(oursKey(backend, world, bn, o), label, await ours(backend as 'threads' | 'gloo', world, bn, o),
              (r) => r.ms, (r) => r.kernelThreads);
          }
        }
      }
    }
    if (!args['no-comm']) {
      for (const world of COMM_RANKS) {
        for (const backend of backends) {
          const o = await pairJob(backend as 'threads' | 'gloo', world, 'OVERLAP', COMM_ARGS());
          const label = `ours ${backend} x${world} MLP 16 MiB, overlap on / off`;
          if (!o.ok) {
            get(`comm ${backend} ${world} on`).failure = o.reason;
            process.stdout.write(`  ${label}: FAILED: ${o.reason}\n`);
            continue;
          }
          commBuckets = o.report.buckets;
          get(`comm ${backend} ${world} on`).add([o.report.onMedianMs!]);
          get(`comm ${backend} ${world} off`).add([o.report.offMedianMs!]);
          get(`comm ${backend} ${world} ratio`).add([o.report.onOverOff!]);
          process.stdout.write(`  ${label}: ${o.report.onMedianMs!.toFixed(1)} / ${o.report.offMedianMs!.toFixed(1)} ms, ` +
            `paired ${o.report.onOverOff!.toFixed(3)} (job ${(o.wallMs / 1000).toFixed(1)} s)\n`);
        }
      }
    }
    if (!args['no-syncbn-pair'] && RANKS.includes(2)) {
      for (const backend of backends) {
        const o = await pairJob(backend as 'threads' | 'gloo', 2, 'SYNCBN', SYNCBN_ARGS());
        const label = `ours ${backend} x2 CIFAR net, SyncBatchNorm / BatchNorm2d`;
        if (!o.ok) {
          get(`syncbn ${backend} ratio`).failure = o.reason;
          process.stdout.write(`  ${label}: FAILED: ${o.reason}\n`);
          continue;
        }
        get(`syncbn ${backend} sync`).add([o.report.syncbnMedianMs!]);
        get(`syncbn ${backend} bn`).add([o.report.bnMedianMs!]);
        get(`syncbn ${backend} ratio`).add([o.report.syncbnOverBn!]);
        process.stdout.write(`  ${label}: ${o.report.syncbnMedianMs!.toFixed(1)} / ${o.report.bnMedianMs!.toFixed(1)} ms, ` +
          `paired ${o.report.syncbnOverBn!.toFixed(3)} (job ${(o.wallMs / 1000).toFixed(1)} s)\n`);
      }
    }
  }

  // ------------------------------------------------------------ table
  const floorOurs = get('ours floor').median;
  const floorTorch = torchOk ? get('torch floor').median : null;
  const header = ['config', 'ranks', 'ms overlap off', 'ms overlap on', 'PyTorch DDP ms', 'off / PyTorch', 'on / PyTorch',
    'per round (off/PT)', 'off / our floor'];
  const rows: string[][] = [];
  rows.push(['floor: 1 process, no DDP', '1', fmt(floorOurs), '-', `${fmt(floorTorch)} (floor)`, ratio(floorOurs, floorTorch), '-',
    get('ours floor').perRound.map((v, i) => (get('torch floor').perRound[i] ? (v / get('torch floor').perRound[i]!).toFixed(2) : 'n/a')).join(' '),
    '1.00x']);
  const notes: string[] = [];
  for (const backend of backends) {
    for (const bn of BNS) {
      for (const world of RANKS) {
        const off = get(oursKey(backend, world, bn, 'off'));
        const on = OVERLAPS.includes('on') ? get(oursKey(backend, world, bn, 'on')) : null;
        const pt = torchOk ? get(torchKey(world)) : null;
        const ptMs = pt?.median ?? null;
        // PyTorch has no CPU SyncBatchNorm: those rows are set against DDP + BatchNorm2d (the dagger).
        const mark = bn === 'syncbn' && ptMs !== null ? '†' : '';
        const ptCell = bn === 'bn' ? fmt(ptMs) : `n/a (BN: ${fmt(ptMs)})`;
        rows.push([
          `${backend} ${BN_NAME[bn]}`, `${world}${world > CORES ? '*' : ''}`,
          off.failure ? 'FAILED' : fmt(off.median), on === null ? 'n/a' : on.failure ? 'FAILED' : fmt(on.median), ptCell,
          `${ratio(off.median, ptMs)}${mark}`, on === null ? 'n/a' : `${ratio(on.median, ptMs)}${mark}`,
          off.perRound.map((v, i) => (pt?.perRound[i] ? (v / pt.perRound[i]!).toFixed(2) : 'n/a')).join(' '),
          ratio(off.median, floorOurs),
        ]);
        if (off.failure) notes.push(`${backend} x${world} ${bn} off: ${off.failure}`);
        if (on?.failure) notes.push(`${backend} x${world} ${bn} on: ${on.failure}`);
      }
    }
  }
  if (torchOk) {
    rows.push(...RANKS.map((world) => ['PyTorch DDP SyncBatchNorm', `${world}${world > CORES ? '*' : ''}`, '-', '-',
      'n/a', '-', '-', '-', '-']));
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  console.log('');
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
  console.log('');
  console.log('ms: median ms per step (slowest rank) over all timed steps of all rounds; ratios: ours / PyTorch (below 1x: ' +
    'ours faster); per round: that ratio within each round; floor: one process, one rank\'s batch, no group.');
  if (torchOk) {
    console.log(`† PyTorch SyncBatchNorm on CPU: ${[...torchSync.entries()].map(([w, s]) => `x${w} ${s}`).join('; ')}. ` +
      'Those rows are set against PyTorch DDP with plain BatchNorm2d (no statistics exchanged on its side).');
  }
  if (netInfo) {
    console.log(`net: ${netInfo.params} parameters (${(netInfo.params * 4 / 1024).toFixed(0)} KiB of gradients) in ` +
      `${netInfo.buckets} GradientAllReduce bucket(s)${netInfo.buckets === 1 ? ': the one bucket is ready only when backward ends, ' +
        'so overlap has nothing to hide behind here (on and off differ by noise)' : ''}`);
  }
  if (!args['no-comm']) {
    console.log('');
    console.log(`Overlap where communication is a large part of the step: MLP 48-1024-1024-1024-1024-1024-10 (16 MiB of ` +
      `gradients in ${commBuckets ?? '?'} buckets of at most ${COMM_CAP_MB} MiB), batch ${COMM_BATCH} per rank, BatchNorm-free; ` +
      `on and off alternate in blocks of 20 steps within each job; ms: median over rounds of each job's median (slowest rank); ` +
      `on / off: median over rounds of each job's paired ratio`);
    const ch = ['backend', 'ranks', 'ms overlap off', 'ms overlap on', 'on / off (paired)', 'on vs off', 'per round (paired on/off)'];
    const crows: string[][] = [];
    for (const world of COMM_RANKS) {
      for (const backend of backends) {
        const on = get(`comm ${backend} ${world} on`);
        const off = get(`comm ${backend} ${world} off`);
        const r = get(`comm ${backend} ${world} ratio`);
        const gain = r.median === null ? null : (1 - r.median) * 100;
        const speed = gain === null ? 'n/a' : `${Math.abs(gain).toFixed(1)}% ${gain >= 0 ? 'faster' : 'slower'}`;
        crows.push([backend, `${world}${world > CORES ? '*' : ''}`, on.failure ? 'FAILED' : fmt(off.median),
          on.failure ? 'FAILED' : fmt(on.median), fmt(r.median, 3), speed, r.perRound.map((v) => v.toFixed(2)).join(' ')]);
      }
    }
    const cw = ch.map((h, i) => Math.max(h.length, ...crows.map((r) => r[i]!.length)));
    const cline = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(cw[i]!) : c.padStart(cw[i]!))).join(' | ')} |`;
    console.log(cline(ch));
    console.log(`|${cw.map((w) => '-'.repeat(w + 2)).join('|')}|`);
    for (const r of crows) console.log(cline(r));
  }
  if (!args['no-syncbn-pair'] && RANKS.includes(2)) {
    console.log('');
    console.log(`SyncBatchNorm against BatchNorm2d at 2 ranks, paired: the CIFAR-style net (overlap-step's 'cifar', the same ` +
      `layers as above), batch ${BATCH} per rank, overlap on, the two alternating in blocks of 10 steps within each job`);
    const sh = ['backend', 'ms BatchNorm2d', 'ms SyncBatchNorm', 'SyncBN / BN (paired)', 'per round (paired)'];
    const srows = backends.map((backend) => {
      const r = get(`syncbn ${backend} ratio`);
      return [backend, fmt(get(`syncbn ${backend} bn`).median), fmt(get(`syncbn ${backend} sync`).median),
        r.failure ? 'FAILED' : fmt(r.median, 3), r.perRound.map((v) => v.toFixed(2)).join(' ')];
    });
    const sw = sh.map((h, i) => Math.max(h.length, ...srows.map((r) => r[i]!.length)));
    const sline = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(sw[i]!) : c.padStart(sw[i]!))).join(' | ')} |`;
    console.log(sline(sh));
    console.log(`|${sw.map((w) => '-'.repeat(w + 2)).join('|')}|`);
    for (const r of srows) console.log(sline(r));
  }
  for (const n of threadNotes) console.log(`  NOTE: ${n}`);
  for (const n of notes) console.log(`  FAILED: ${n}`);
  console.log(`load average at end ${loadavg().map((l) => l.toFixed(1)).join(' ')}; total run time ` +
    `${((performance.now() - started) / 1000).toFixed(0)} s`);
}

await main();
process.exit(0); // a leftover handle (a gloo child's pipe) must not keep the benchmark alive
