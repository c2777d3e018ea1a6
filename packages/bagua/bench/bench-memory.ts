/**
 * Memory benchmark (issue 9): the plain training loop a user writes (forward, loss,
 * zeroGrad, backward, step; no awaits, no dispose calls) for many steps, printing
 * every 500 steps the step, the process RSS, the V8 heap and external memory (summed
 * over ranks: where RSS growth comes from) and memoryStats(device): allocated,
 * reserved, allocations per step (numAllocs delta), live allocations (numAllocs -
 * numFrees) and numSystemAllocs (blocks fresh from the OS or driver). The model is the
 * memory-probe's: Conv2d(3,16,3,padding 1)-BatchNorm2d-ReLU-AdaptiveAvgPool2d(1)-
 * Flatten-Linear(16,10), batch [16,3,32,32], CrossEntropyLoss, SGD momentum 0.9
 * (bench-memory-rank.ts).
 *
 * Configurations, each in a fresh child process (so one's memory does not show in the
 * next's RSS): 1 rank on this thread; then 4 thread ranks (the in-process threads
 * backend) with the model converted by SyncBatchNorm.convertSyncBatchnorm and wrapped
 * by withBagua([optimizer], new GradientAllReduce()).
 *
 * Ends with one line per configuration starting `memory:`: RSS growth from the first
 * report (step 500) to the end, reserved growth in bytes (largest over ranks),
 * allocations per step, and the verdicts against the goals: RSS grows < 10% on CPU;
 * reserved device memory does not grow at all on cuda:0; allocations per step (and
 * live allocations) do not grow. A run whose RSS passes --max-rss-mib stops early,
 * and says so. The exit code is 0 whatever the verdicts (it is a benchmark).
 *
 *   pnpm bench:memory [--steps 5000] [--device cpu|cuda:0] [--ranks 1,4] [--every 500]
 *                     [--max-rss-mib 4096] [--check-every 50]
 *   tools/cuda-emu node packages/bagua/dist/bench/bench-memory.js --device cuda:0
 *   (env BENCH_STEPS, BENCH_DEVICE, BENCH_RANKS, BENCH_EVERY work too)
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runThreads } from '@bagua/comm';
import { runLoop, type LoopOptions, type LoopResult, type Sample } from './bench-memory-rank.js';

const here = dirname(fileURLToPath(import.meta.url)); // <bagua>/dist/bench
const SELF = fileURLToPath(import.meta.url);
const RANK_SCRIPT = join(here, 'bench-memory-rank.js');

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: process.env.BENCH_STEPS ?? '5000' },
    device: { type: 'string', default: process.env.BENCH_DEVICE ?? 'cpu' },
    ranks: { type: 'string', default: process.env.BENCH_RANKS ?? '1,4' },
    every: { type: 'string', default: process.env.BENCH_EVERY ?? '500' },
    'max-rss-mib': { type: 'string', default: process.env.BENCH_MAX_RSS_MIB ?? '4096' },
    'check-every': { type: 'string', default: '50' },
    child: { type: 'boolean', default: false }, // internal: run one configuration here
  },
});

const opts: LoopOptions = {
  steps: Number(args.steps),
  device: args.device!,
  every: Number(args.every),
  checkEvery: Number(args['check-every']),
  maxRssMiB: Number(args['max-rss-mib']),
};
const RANKS = args.ranks!.split(',').map(Number);
for (const [name, v] of [['steps', opts.steps], ['every', opts.every], ['check-every', opts.checkEvery], ['max-rss-mib', opts.maxRssMiB]] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`bench-memory: --${name} must be an integer >= 1, got ${v}`);
}
if (RANKS.some((r) => !Number.isInteger(r) || r < 1)) throw new Error(`bench-memory: --ranks is a list like 1,4`);

const loopArgs = (o: LoopOptions) => [
  '--steps', String(o.steps), '--device', o.device, '--every', String(o.every),
  '--check-every', String(o.checkEvery), '--max-rss-mib', String(o.maxRssMiB),
];

const SINGLE_THREAD_ENV = { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1' };

// ------------------------------------------------------------------ one configuration (child process)

async function child(ranks: number): Promise<void> {
  const label = ranks === 1 ? '1 rank (plain loop on this thread)'
    : `${ranks} thread ranks (threads backend, SyncBatchNorm.convertSyncBatchnorm + withBagua GradientAllReduce)`;
  process.stdout.write(`\n== ${opts.device}, ${label}, ${opts.steps} steps; report every ${opts.every}` +
    `${ranks > 1 ? '; memoryStats shown: rank 0' : ''}\n`);
  if (ranks === 1) {
    const result = runLoop(opts, null, (line) => process.stdout.write(`${line}\n`));
    process.stdout.write(`MEMORY_RESULT ${JSON.stringify(result)}\n`);
    return;
  }
  const res = await runThreads(ranks, RANK_SCRIPT, loopArgs(opts), {
    output: 'inherit', env: SINGLE_THREAD_ENV, timeoutMs: 300_000,
  });
  if (res.exitCode !== 0) throw new Error(`the thread ranks failed: exit ${res.exitCode} (rank ${res.failedRank})`);
}

// ------------------------------------------------------------------ verdicts

const fmtBytes = (b: number) => {
  const sign = b < 0 ? '-' : '+';
  const a = Math.abs(b);
  return a < 1024 ? `${sign}${a} B` : `${sign}${a} B (${(a / 2 ** 20).toFixed(2)} MiB)`;
};
const verdict = (ok: boolean | null) => (ok === null ? 'n/a' : ok ? 'met' : 'NOT met');

/** The `memory:` line of one configuration. */
function summary(r: LoopResult): string {
  const head = `memory: ${r.device}, ${r.ranks} rank${r.ranks > 1 ? 's (threads, SyncBatchNorm + GradientAllReduce)' : ''}, ` +
    `${r.stepsRun}${r.stepsRun < r.stepsAsked ? ` of ${r.stepsAsked}` : ''} steps (${r.msPerStep.toFixed(1)} ms/step)`;
  const s = r.samples;
  if (!s.length) return `${head}: no report (fewer steps than --every?)`;
  const base = s[0]!, last = s.at(-1)!;
  const rssGrowth = (last.rssMiB - base.rssMiB) / base.rssMiB;
  const parts = base === last
    ? [`RSS growth n/a (one report, at step ${last.step}: ${last.rssMiB.toFixed(1)} MiB)`]
    : [`RSS ${rssGrowth >= 0 ? '+' : ''}${(100 * rssGrowth).toFixed(1)}% (step ${base.step}: ` +
      `${base.rssMiB.toFixed(1)} MiB -> step ${last.step}: ${last.rssMiB.toFixed(1)} MiB)`];
  if (base !== last) {
    // Where RSS went: the V8 heaps (JS objects) and their external memory (ArrayBuffers...), all ranks.
    const d = (a: number, b: number) => `${a - b >= 0 ? '+' : ''}${(a - b).toFixed(1)} MiB`;
    parts.push(`JS heap ${d(last.heapMiB, base.heapMiB)}, external ${d(last.externalMiB, base.externalMiB)}`);
  }
  const checks = r.rssChecks;
  if (r.stopped && checks.length >= 2) {
    // Stopped early: the RSS-cap checks still show the trend.
    const [s0, m0] = checks[0]!, [s1, m1] = checks.at(-1)!;
    parts.push(`RSS at the cap checks: step ${s0}: ${m0.toFixed(0)} MiB -> step ${s1}: ${m1.toFixed(0)} MiB ` +
      `(${((m1 - m0) / (s1 - s0)).toFixed(2)} MiB per step)`);
  }
  const goals: string[] = [];
  const isCpu = r.device === 'cpu';
  const rssOk = r.stopped ? false : base === last ? null : rssGrowth < 0.1;
  if (isCpu) goals.push(`RSS growth < 10%: ${verdict(rssOk)}`);

  let reservedOk: boolean | null = null;
  let allocsOk: boolean | null = null;
  const per = (a: Sample, b: Sample) => Math.max(...a.stats.map((x, i) => (x.numAllocs - b.stats[i]!.numAllocs) / (a.step - b.step)));
  const growths = last.stats.map((x, i) => x.reserved - base.stats[i]!.reserved);
  const reservedGrowth = Math.max(...growths);
  const grew = growths.flatMap((g, i) => (g > 0 ? [i] : []));
  const live = (x: Sample) => Math.max(...x.stats.map((st) => st.numAllocs - st.numFrees));
  const sysAfter = Math.max(...last.stats.map((x, i) => x.numSystemAllocs - base.stats[i]!.numSystemAllocs));
  parts.push(`reserved ${fmtBytes(reservedGrowth)}${r.ranks > 1 && grew.length ? ` (rank${grew.length > 1 ? 's' : ''} ${grew.join(', ')})` : ''}`);
  if (s.length >= 3) {
    const first = per(s[1]!, s[0]!), lastPer = per(last, s.at(-2)!);
    parts.push(`allocs/step ${first.toFixed(1)} -> ${lastPer.toFixed(1)}`);
    allocsOk = lastPer <= first * 1.001 + 1e-9 && live(last) <= live(base);
  } else {
    parts.push('allocs/step n/a (needs 3 reports)');
  }
  parts.push(`live allocs ${live(base)} -> ${live(last)}`, `system allocs after step ${base.step}: ${sysAfter}`);
  if (base !== last) reservedOk = reservedGrowth <= 0;
  if (!isCpu) {
    goals.push(`reserved ${r.device} memory not growing: ${verdict(reservedOk)}`);
    goals.push(`RSS growth (not a goal off the CPU) ${(100 * rssGrowth).toFixed(1)}%`);
  }
  goals.push(`allocations per step not growing: ${verdict(allocsOk)}`);
  if (r.stopped) goals.push(`NOT met: ${r.stopped}`);
  return `${head}: ${parts.join(', ')}; goals: ${goals.join('; ')}`;
}

// ------------------------------------------------------------------ parent

function runChild(ranks: number): Promise<{ result: LoopResult | null; failure: string | null }> {
  return new Promise((done) => {
    const proc = spawn(process.execPath, [...process.execArgv, SELF, '--child', '--ranks', String(ranks), ...loopArgs(opts)], {
      env: { ...process.env, ...SINGLE_THREAD_ENV }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let result: LoopResult | null = null;
    let failure: string | null = null;
    let pending = '';
    let errTail = '';
    proc.stdout.on('data', (d: Buffer) => {
      pending += d.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        const m = /^(?:\[rank \d+\] )?MEMORY_RESULT (.*)$/.exec(line);
        const e = /BENCH_ERROR (.*)$/.exec(line);
        if (m) result = JSON.parse(m[1]!) as LoopResult;
        else if (e) failure ??= e[1]!; // the first error: a rank's own, before the job's summary
        else process.stdout.write(`${line}\n`);
      }
    });
    proc.stderr.on('data', (d: Buffer) => {
      process.stderr.write(d);
      errTail = (errTail + d.toString()).slice(-2000);
    });
    proc.on('close', (code, signal) => {
      if (pending) process.stdout.write(`${pending}\n`);
      if (!result && !failure) {
        const tail = errTail.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('at ')).slice(-3).join(' | ');
        failure = `exit ${code ?? signal}${signal === 'SIGKILL' ? ' (killed: out of memory?)' : ''}: ${tail || 'no output'}`;
      }
      done({ result, failure });
    });
  });
}

async function parent(): Promise<void> {
  const started = performance.now();
  process.stdout.write(`bagua-ts memory benchmark: the plain loop (forward, loss, zeroGrad, backward, step; no awaits, ` +
    `no dispose calls), ${opts.steps} steps on ${opts.device}, ranks ${RANKS.join(', ')}; RSS cap ${opts.maxRssMiB} MiB\n`);
  const lines: string[] = [];
  for (const r of RANKS) {
    const { result, failure } = await runChild(r);
    lines.push(result ? summary(result)
      : `memory: ${opts.device}, ${r} rank${r > 1 ? 's' : ''}: FAILED (${failure}); goals: NOT met (the run did not finish)`);
  }
  process.stdout.write(`\n${lines.join('\n')}\n`);
  process.stdout.write(`total run time ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  process.exitCode = 0; // a benchmark: the verdicts above say NOT met, the exit code does not
}

if (args.child) {
  try {
    await child(RANKS[0]!);
  } catch (e) {
    process.stderr.write(`${String((e as Error)?.stack ?? e)}\n`);
    process.stdout.write(`BENCH_ERROR ${String((e as Error)?.message ?? e).split('\n').join(' | ')}\n`);
    process.exitCode = 1;
  }
} else {
  await parent();
}
