/**
 * SyncBatchNorm benchmark (issue 4, item 6):
 *
 *   pnpm bench:syncbn
 *
 * Forward + backward time (median over reps, ms, slowest rank per step) of
 *   - plain BatchNorm (nn.BatchNorm2d on the local batch, no communication),
 *   - our SyncBatchNorm (1 all-gather forward, 1 all-reduce backward),
 *   - the same with statsExchange 'allReduce' (1 all-reduce forward, 1 backward), and
 *   - the same layer written Bagua's way (3 all-gathers forward, 2 all-reduces
 *     backward, each blocking with its own host round trip; bagua-way-batchnorm.ts),
 * measured in the same run, interleaved (ratios are medians of per-rep paired
 * ratios), on the same local shape per rank, at
 * world sizes 2 and 4 over the `threads` backend (runThreads) and the `gloo`
 * backend (processes under bagua-launch; skipped loudly without libbagua_gloo.so).
 *
 * Then, per shape, the statistics exchange alone, both ways in the same job: the
 * all-gather of [2C+2] records against the all-reduce of the [2C+1+P] sums record
 * (microseconds per collective, slowest rank, median over reps).
 *
 * Every rank runs single-threaded: one JS thread per rank, the CPU kernels
 * have no threading of their own, and OMP/BLAS thread counts are pinned to 1.
 *
 * Environment: BENCH_REPS (default 25), BENCH_WARMUP (3), BENCH_WORLDS ("2,4"),
 * BENCH_BACKENDS ("threads,gloo"), BENCH_SHAPES ("8x64x56x56,32x256x14x14").
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runThreads } from '@bagua/comm';
import type { CollectiveCounts } from './counting-group.js';
import type { PhaseCounts, RankReport, ShapeResult } from './syncbn-rank.js';
import { median } from '@bagua/testing';

const here = dirname(fileURLToPath(import.meta.url)); // <package>/dist/bench
const RANK_SCRIPT = join(here, 'syncbn-rank.js');
const LAUNCH_CLI = join(here, 'launch-cli.js');

const REPS = Number(process.env.BENCH_REPS ?? 25);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 3);
const WORLDS = (process.env.BENCH_WORLDS ?? '2,4').split(',').map(Number);
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'threads,gloo').split(',').map((s) => s.trim());
const SHAPES = process.env.BENCH_SHAPES ?? '8x64x56x56,32x256x14x14';
const JOB_TIMEOUT_MS = 150_000;
const CORES = availableParallelism();

const SINGLE_THREAD_ENV = {
  OMP_NUM_THREADS: '1',
  OPENBLAS_NUM_THREADS: '1',
  MKL_NUM_THREADS: '1',
};

const RANK_ARGS = ['--shapes', SHAPES, '--warmup', String(WARMUP), '--reps', String(REPS)];

type JobOutcome = { ok: true; report: RankReport; wallMs: number } | { ok: false; reason: string; wallMs: number };

function loud(message: string): void {
  const bar = '!'.repeat(100);
  process.stdout.write(`\n${bar}\n!!! ${message}\n${bar}\n\n`);
}

/** The last meaningful line(s) of a failed job's output. */
function failureReason(out: string, err: string): string {
  const m = /BENCH_ERROR (.*)$/m.exec(out);
  if (m) return m[1];
  const lines = `${err}\n${out}`.split('\n').map((l) => l.trim()).filter((l) => l && !/^at /.test(l));
  return lines.slice(-4).join(' | ') || 'no output';
}

function parseResult(out: string): RankReport | null {
  const m = /^(?:\[rank 0\] )?BENCH_RESULT (.*)$/m.exec(out);
  return m ? (JSON.parse(m[1]) as RankReport) : null;
}

async function runThreadsJob(n: number): Promise<JobOutcome> {
  const t0 = performance.now();
  const res = await runThreads(n, RANK_SCRIPT, RANK_ARGS, { output: 'capture', env: SINGLE_THREAD_ENV, timeoutMs: 60_000 });
  const wallMs = performance.now() - t0;
  const report = res.exitCode === 0 ? parseResult(res.stdout[0]) : null;
  if (report) return { ok: true, report, wallMs };
  return { ok: false, reason: `exit ${res.exitCode}: ${failureReason(res.stdout.join('\n'), res.stderr.join('\n'))}`, wallMs };
}

/** n processes under bagua-launch --backend gloo (the CLI, launchMain, in a child process). */
function runGlooJob(n: number): Promise<JobOutcome> {
  const t0 = performance.now();
  return new Promise((done) => {
    const child = spawn(process.execPath, [
      LAUNCH_CLI, '--nproc-per-node', String(n), '--backend', 'gloo', '--timeout-ms', '60000', RANK_SCRIPT, ...RANK_ARGS,
    ], { env: { ...process.env, ...SINGLE_THREAD_ENV }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), JOB_TIMEOUT_MS);
    child.on('error', (e) => (err += `cannot start bagua-launch: ${e.message}\n`));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const wallMs = performance.now() - t0;
      const report = code === 0 ? parseResult(out) : null;
      if (report) done({ ok: true, report, wallMs });
      else done({ ok: false, reason: `bagua-launch exit ${code ?? signal}: ${failureReason(out, err)}`, wallMs });
    });
  });
}

/** Where comm looks for the gloo shim: $BAGUA_GLOO_LIB, then @bagua/comm's native/build. */
function glooLibrary(): { found: string | null; tried: string[] } {
  const tried: string[] = [];
  if (process.env.BAGUA_GLOO_LIB) tried.push(resolve(process.env.BAGUA_GLOO_LIB));
  const commIndex = fileURLToPath(import.meta.resolve('@bagua/comm')); // <comm>/dist/src/index.js
  tried.push(resolve(dirname(commIndex), '../../native/build/libbagua_gloo.so'));
  return { found: tried.find((p) => existsSync(p)) ?? null, tried };
}

// ---------------------------------------------------------------- table

const fmtMs = (ms: number) => ms.toFixed(2);
const count = (c: CollectiveCounts) => c.allReduce + c.allGather + c.broadcast + c.barrier;
const phases = (p: PhaseCounts) => `${count(p.forward)}+${count(p.backward)}`;
const shapeName = (s: number[]) => `[${s.join(',')}]`;

function maxDiff(r: ShapeResult): number {
  return Math.max(...Object.values(r.maxAbsDiff).map((d) => (Number.isNaN(d) ? Infinity : d)));
}

interface Row {
  backend: string;
  world: string;
  shape: string;
  plain: string;
  ours: string;
  oursReduce: string;
  bagua: string;
  colls: string;
  diff: string;
}


/**
 * Median over reps of a / b within the same rep: the three variants of a rep
 * run back to back, so pairing them cancels load that drifts between reps.
 */
function pairedRatio(a: readonly number[], b: readonly number[]): number {
  return median(a.map((v, i) => v / b[i]));
}

function rowOf(report: RankReport, r: ShapeResult): Row {
  const { plain, ours, oursReduce, bagua } = r.medianMs;
  const oursVsPlain = pairedRatio(r.stepMs.ours, r.stepMs.plain);
  const baguaVsOurs = pairedRatio(r.stepMs.bagua, r.stepMs.ours);
  return {
    backend: report.backend,
    world: `${report.worldSize}${report.worldSize > CORES ? '*' : ''}`,
    shape: shapeName(r.shape),
    plain: fmtMs(plain),
    ours: `${fmtMs(ours)} (${oursVsPlain.toFixed(2)}x)`,
    oursReduce: `${fmtMs(oursReduce)} (${pairedRatio(r.stepMs.oursReduce, r.stepMs.ours).toFixed(2)}x)`,
    bagua: `${fmtMs(bagua)} (${baguaVsOurs.toFixed(2)}x)`,
    colls: `${phases(r.collectives.plain)} / ${phases(r.collectives.ours)} / ${phases(r.collectives.oursReduce)} / ` +
      phases(r.collectives.bagua),
    diff: maxDiff(r).toExponential(1),
  };
}

interface ExchangeRow {
  backend: string;
  world: string;
  channels: string;
  allGather: string;
  allReduce: string;
  ratio: string;
}

function exchangeRowOf(report: RankReport, r: ShapeResult): ExchangeRow {
  return {
    backend: report.backend,
    world: `${report.worldSize}${report.worldSize > CORES ? '*' : ''}`,
    channels: String(r.shape[1]),
    allGather: `${r.exchangeUs.allGather.toFixed(1)} (${(2 * r.shape[1] + 2) * report.worldSize} floats out)`,
    allReduce: `${r.exchangeUs.allReduce.toFixed(1)} (${2 * r.shape[1] + 1 + report.worldSize} floats)`,
    ratio: `${pairedRatio(r.exchangeRepUs.allReduce, r.exchangeRepUs.allGather).toFixed(2)}x`,
  };
}

/** A markdown table of `rows` under `head`; `left` columns are left-aligned. */
function printRows<R extends object>(head: R, rows: R[], left: Set<keyof R>): void {
  const keys = Object.keys(head) as (keyof R)[];
  const cell = (r: R, k: keyof R) => String(r[k]);
  const width = new Map(keys.map((k) => [k, Math.max(...[head, ...rows].map((r) => cell(r, k).length))]));
  const line = (r: R) => `| ${keys.map((k) => (left.has(k) ? cell(r, k).padEnd(width.get(k)!) : cell(r, k).padStart(width.get(k)!))).join(' | ')} |`;
  const sep = `|${keys.map((k) => '-'.repeat(width.get(k)! + 2)).join('|')}|`;
  process.stdout.write(`${line(head)}\n${sep}\n${rows.map(line).join('\n')}\n`);
}

function printExchangeTable(rows: ExchangeRow[]): void {
  printRows<ExchangeRow>({
    backend: 'backend', world: 'world', channels: 'C', allGather: 'allGather us', allReduce: 'allReduce us',
    ratio: 'allReduce / allGather',
  }, rows, new Set<keyof ExchangeRow>(['backend']));
}

function printTable(rows: Row[]): void {
  const head: Row = {
    backend: 'backend',
    world: 'world',
    shape: 'shape per rank',
    plain: 'plain BN ms',
    ours: 'SyncBN ms (/plain)',
    oursReduce: 'allReduce SyncBN ms (/SyncBN)',
    bagua: 'Bagua-way ms (/ours)',
    colls: 'collectives fwd+bwd plain / ours / allReduce / Bagua',
    diff: 'max|ours-Bagua|',
  };
  printRows(head, rows, new Set<keyof Row>(['backend', 'shape']));
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const start = performance.now();
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  process.stdout.write(
    `SyncBatchNorm benchmark: forward + backward of one layer, median of ${REPS} reps (after ${WARMUP} warm-ups), ` +
      `slowest rank per step\n` +
      `  ${CORES} CPU core(s) available (${cpu}); node ${process.version}; every rank single-threaded ` +
      `(one JS thread, single-threaded kernels, OMP/BLAS threads = 1)\n` +
      `  variants run interleaved in the same job on the same data: plain nn.BatchNorm2d (local stats), ` +
      `our SyncBatchNorm (allGather, and allReduce exchange), and the Bagua way (3 all-gathers + 2 all-reduces)\n`,
  );
  const load = () => loadavg().map((l) => l.toFixed(1)).join(' ');
  process.stdout.write(`  load average at start: ${load()} (other work on this machine adds noise to every row)\n`);
  const oversubscribed = WORLDS.filter((w) => w > CORES);
  if (oversubscribed.length) {
    process.stdout.write(
      `  NOTE: world size ${oversubscribed.join(', ')} (rows marked *) OVERSUBSCRIBES this ${CORES}-core machine: ` +
        `ranks time-share cores, so each blocking collective also waits for descheduled peers; ` +
        `those rows overstate communication cost compared with one core per rank.\n`,
    );
  }

  const rows: Row[] = [];
  const exchangeRows: ExchangeRow[] = [];
  const skipped: string[] = [];
  const jobTimes: string[] = [];
  for (const backend of BACKENDS) {
    if (backend === 'gloo') {
      const lib = glooLibrary();
      if (!lib.found) {
        loud(`GLOO ROWS SKIPPED: libbagua_gloo.so is missing (looked at ${lib.tried.join(', ')}). ` +
          `Build it with \`apt-get install libgloo-dev && pnpm --filter @bagua/comm native\` or set BAGUA_GLOO_LIB.`);
        skipped.push('gloo (libbagua_gloo.so missing)');
        continue;
      }
    } else if (backend !== 'threads') {
      throw new Error(`BENCH_BACKENDS: unknown backend '${backend}' (threads, gloo)`);
    }
    for (const n of WORLDS) {
      process.stdout.write(`  running ${backend} x${n} ...`);
      const outcome = backend === 'threads' ? await runThreadsJob(n) : await runGlooJob(n);
      process.stdout.write(` ${(outcome.wallMs / 1000).toFixed(1)} s\n`);
      jobTimes.push(`${backend} x${n}: ${(outcome.wallMs / 1000).toFixed(1)} s`);
      if (!outcome.ok) {
        loud(`${backend.toUpperCase()} x${n} ROWS SKIPPED: the job failed: ${outcome.reason}`);
        skipped.push(`${backend} x${n} (${outcome.reason.slice(0, 120)})`);
        if (/backend 'gloo' is not available|the gloo backend is unavailable/.test(outcome.reason)) {
          const rest = WORLDS.slice(WORLDS.indexOf(n) + 1);
          if (rest.length) loud(`GLOO x${rest.join(', x')} ROWS SKIPPED TOO: the gloo backend is unavailable (above)`);
          for (const m of rest) skipped.push(`${backend} x${m} (gloo unavailable)`);
          break;
        }
        continue;
      }
      for (const r of outcome.report.shapes) {
        rows.push(rowOf(outcome.report, r));
        exchangeRows.push(exchangeRowOf(outcome.report, r));
      }
    }
  }

  process.stdout.write('\n');
  if (rows.length) printTable(rows);
  if (exchangeRows.length) {
    process.stdout.write('\n  the statistics exchange alone, microseconds per collective (slowest rank, median over reps):\n');
    printExchangeTable(exchangeRows);
  }
  process.stdout.write(
    `\n  ms: median over reps of the step time (slowest rank). Ratios (in parentheses): median over reps of the ratio\n` +
      `  within the same rep (variants of a rep run back to back), SyncBN / plain BN and Bagua way / SyncBN.\n` +
      `  collectives: counted per step through the group (forward+backward): plain issues none, ours 1 all-gather + ` +
      `1 all-reduce, allReduce 1 + 1 all-reduces (its first step also broadcasts the shift, once), ` +
      `the Bagua way 3 all-gathers + 2 all-reduces.\n` +
      `  exchange: the forward's one collective alone, the [2C+2] records all-gathered or the [2C+1+P] sums all-reduced; ` +
      `ratio: median of per-rep ratios.\n` +
      `  max|ours-Bagua|: largest difference of y, dx, grad weight, grad bias, running mean and var after one step, all ranks.\n`,
  );
  if (oversubscribed.length) {
    process.stdout.write(`  * world size > ${CORES} cores: the CPU is oversubscribed (see the note above).\n`);
  }
  if (skipped.length) process.stdout.write(`  SKIPPED: ${skipped.join('; ')}\n`);
  process.stdout.write(`  load average at end: ${load()}\n`);
  process.stdout.write(`  jobs: ${jobTimes.join(', ')}\n  total run time: ${((performance.now() - start) / 1000).toFixed(1)} s\n`);
  const bad = rows.filter((r) => !(Number(r.diff) <= 1e-5));
  if (bad.length) {
    process.stdout.write(`  WARNING: ours and the Bagua way disagree (max|diff| > 1e-5) in ${bad.length} row(s).\n`);
  }
  if (skipped.length && !rows.length) process.exitCode = 1;
}

await main();
