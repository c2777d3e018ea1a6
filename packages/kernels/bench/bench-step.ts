/**
 * The CIFAR-style training step (issue 9), ours against PyTorch in the same run:
 *
 *   Conv2d 3-32-32-64-64 (3x3, padding 1), each followed by BatchNorm2d and ReLU,
 *   MaxPool2d(2) after the second, AdaptiveAvgPool2d(1), Flatten, Linear(64, 10);
 *   a batch of [32, 3, 32, 32] with class targets, CrossEntropyLoss, SGD(lr 0.01,
 *   momentum 0.9); the plain synchronous loop a user writes: forward, loss,
 *   zeroGrad, backward, step (no awaits, no dispose calls inside a step).
 *
 * At each thread count (1 and 2): warm-up steps, then the median ms per step, ours
 * (setNumThreads(n)) and PyTorch (torch.set_num_threads(n),
 * tools/bench_step_torch.py kept running in one child process). The two sides run
 * interleaved in BENCH_ROUNDS blocks, so load elsewhere on the machine lands on both;
 * ratio = PyTorch's median ms / ours (above 1x: ours faster), medians over all timed
 * steps of each side; the per-block ratios are printed beside it (a wide spread means
 * the machine was busy: PyTorch's OpenMP threads suffer most from a shared core).
 * Goal: no slower than PyTorch (ratio >= 1) at 1 and at 2 threads. Each side's cores
 * (process CPU time over wall time while timed) are printed: a side using more cores than
 * asked (kernels threaded by a library's own default) is flagged, as not like for like.
 * Within a block our steps run back to back, synchronously (each timed alone); the event
 * loop turns only between blocks. --yield (BENCH_YIELD=1) turns it between steps too,
 * untimed, for builds whose memory comes back only through finalizers.
 *
 *   pnpm bench:step [--steps 20] [--warmup 3] [--rounds 2] [--threads 1,2] [--batch 32] [--yield]
 *   (or env BENCH_STEPS, BENCH_WARMUP, BENCH_ROUNDS, BENCH_THREADS, BENCH_BATCH, BENCH_YIELD=1)
 */
import { parseArgs } from 'node:util';
import { availableParallelism, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { manualSeed, nn, optim, randn, tensor } from '@bagua/core';
import { cpuBackend } from '../src/index.js';
import { benchCnn, intOptions } from '@bagua/testing';
import { busyWarning, JsonLineChild, loud, median, tableHeader, tableRow, turnEventLoop, useKernelThreads } from './common.js';

const here = dirname(fileURLToPath(import.meta.url)); // <kernels>/dist/bench
const TORCH_SCRIPT = join(here, '../../../../tools/bench_step_torch.py');

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: process.env.BENCH_STEPS ?? '20' },
    warmup: { type: 'string', default: process.env.BENCH_WARMUP ?? '3' },
    rounds: { type: 'string', default: process.env.BENCH_ROUNDS ?? '2' },
    threads: { type: 'string', default: process.env.BENCH_THREADS ?? '1,2' },
    batch: { type: 'string', default: process.env.BENCH_BATCH ?? '32' },
    yield: { type: 'boolean', default: process.env.BENCH_YIELD === '1' },
  },
});
const { steps: STEPS, warmup: WARMUP, rounds, batch: BATCH } =
  intOptions('bench-step', args, { steps: 1, warmup: 0, rounds: 1, batch: 1 });
const ROUNDS = Math.min(rounds, STEPS);
const THREADS = args.threads!.split(',').map(Number);
const YIELD = args.yield!;
if (THREADS.some((t) => !Number.isInteger(t) || t < 1)) throw new Error(`bench-step: --threads is a list like 1,2`);


manualSeed(0);
const model = benchCnn();
model.train();
const optimizer = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
const lossFn = new nn.CrossEntropyLoss();
const x = randn([BATCH, 3, 32, 32]);
const target = tensor(Int32Array.from({ length: BATCH }, (_, i) => i % 10), { shape: [BATCH], dtype: 'int32' });

/** One training step as a user writes it. */
function step(): void {
  const loss = lossFn.forward(model.forward(x), target);
  optimizer.zeroGrad();
  loss.backward();
  optimizer.step();
}

/**
 * ms of each of `steps` steps after `warmup` untimed ones: a plain synchronous loop, unless
 * --yield (then the event loop turns between steps, untimed). The event loop turns after the block.
 */
async function oursSteps(warmup: number, steps: number): Promise<{ ms: number[]; cpuMs: number[] }> {
  const ms: number[] = [], cpuMs: number[] = [];
  for (let i = 0; i < warmup + steps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    step();
    const t = performance.now() - t0;
    const c = process.cpuUsage(c0);
    if (i >= warmup) {
      ms.push(t);
      cpuMs.push((c.user + c.system) / 1000);
    }
    if (YIELD) await turnEventLoop();
  }
  await turnEventLoop();
  return { ms, cpuMs };
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

interface Row {
  threads: number;
  /** Our kernel threads really were `threads` (set and read back, or 1 where core has no setNumThreads). */
  matched: boolean;
  note: string;
  ours: number[];
  torch: number[];
  ratios: number[];
  /** CPU ms and wall ms of the timed steps, each side: cores used = cpu / wall. */
  oursCpu: number;
  oursWall: number;
  torchCpu: number;
  torchWall: number;
}

async function main(): Promise<void> {
  const started = performance.now();
  console.log(`bagua-ts training-step benchmark (CIFAR-style: conv3x3 3-32-32-64-64 + BatchNorm2d + ReLU, max pool, ` +
    `global average pool, Linear(64,10); batch [${BATCH},3,32,32], cross-entropy, SGD momentum 0.9)`);
  console.log(`  ${WARMUP} warm-up step(s), then ${STEPS} timed steps per side and thread count, in ${ROUNDS} interleaved ` +
    `block(s)${YIELD ? ' (event loop turning between our steps: --yield)' : ', our steps back to back (synchronous)'}; ` +
    `${availableParallelism()} core(s), load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}; ` +
    `library ${cpuBackend.native.library.path}`);
  const busyStart = busyWarning('at start');
  if (busyStart) console.log(busyStart);
  const startedTorch = await JsonLineChild.start([TORCH_SCRIPT, '--batch', String(BATCH)]);
  const torch = typeof startedTorch === 'string' ? null : startedTorch.child;
  if (typeof startedTorch === 'string') {
    console.log(loud([`PyTorch NOT measured: ${startedTorch}`,
      'install Debian\'s python3-torch (/usr/bin/python3) to compare; ratios and goals read n/a']));
  } else {
    console.log(`  PyTorch ${startedTorch.hello.version} (${TORCH_SCRIPT})`);
  }
  const rows: Row[] = THREADS.map((t) => ({
    threads: t, matched: false, note: '', ours: [], torch: [], ratios: [], oursCpu: 0, oursWall: 0, torchCpu: 0, torchWall: 0,
  }));
  const perRound = (r: number) => Math.floor(STEPS / ROUNDS) + (r < STEPS % ROUNDS ? 1 : 0);
  for (let r = 0; r < ROUNDS; r++) {
    for (const row of rows) {
      const set = useKernelThreads(row.threads);
      row.matched = set.applied;
      row.note = set.note;
      // The first block of each thread count warms up for WARMUP steps, later ones for one step.
      const warm = r === 0 ? WARMUP : Math.min(WARMUP, 1);
      const ours = await oursSteps(warm, perRound(r));
      row.ours.push(...ours.ms);
      row.oursCpu += sum(ours.cpuMs);
      row.oursWall += sum(ours.ms);
      if (torch) {
        const res = await torch.request<{ ms: number[]; cpuMs: number[]; threads: number }>({
          threads: row.threads, warmup: warm, steps: perRound(r),
        });
        if (res.threads !== row.threads) throw new Error(`PyTorch runs ${res.threads} threads, asked for ${row.threads}`);
        row.torch.push(...res.ms);
        row.torchCpu += sum(res.cpuMs);
        row.torchWall += sum(res.ms);
        row.ratios.push(median(res.ms) / median(ours.ms));
      }
    }
  }
  torch?.stop();

  const header = ['threads', 'ours threads', 'ms ours', 'ms torch', 'ratio', 'per block', 'cores ours', 'cores torch',
    'goal (no slower than PyTorch)'];
  const widths = [7, 12, 9, 9, 7, 16, 10, 11, 30];
  console.log('');
  console.log(tableHeader(header, widths));
  const verdicts: string[] = [];
  for (const row of rows) {
    const ours = median(row.ours);
    const theirs = row.torch.length ? median(row.torch) : null;
    const ratio = theirs === null ? null : theirs / ours;
    const oursCores = row.oursCpu / row.oursWall;
    const torchCores = row.torchWall > 0 ? row.torchCpu / row.torchWall : null;
    // Half a core above the threads asked: a library threading on its own (Node's garbage
    // collection and compiler threads add a little, a quarter of a core at most seen here).
    const overused = oursCores > row.threads + 0.5;
    const caveats = [
      ...(!row.matched ? [`ours not set to ${row.threads}`] : []),
      ...(overused ? [`ours used ${oursCores.toFixed(1)} cores: not like for like`] : []),
    ];
    const verdict = ratio === null ? 'n/a (PyTorch not measured)'
      : `${ratio >= 1 ? 'met' : 'NOT met'}${caveats.length ? ` (${caveats.join('; ')})` : ''}`;
    verdicts.push(`${row.threads} thread(s): ${verdict}`);
    console.log(tableRow([
      String(row.threads), row.matched ? String(row.threads) : '1?', ours.toFixed(1), theirs === null ? 'n/a' : theirs.toFixed(1),
      ratio === null ? 'n/a' : `${ratio.toFixed(2)}x`, row.ratios.map((r) => r.toFixed(2)).join(' ') || 'n/a',
      oursCores.toFixed(2), torchCores === null ? 'n/a' : torchCores.toFixed(2), verdict,
    ], widths));
  }
  console.log('');
  console.log('ms: median ms per step over all timed steps; ratio: PyTorch ms / ours (above 1x: ours faster); ' +
    'per block: the same ratio within each interleaved block; cores: process CPU time / wall time over the timed steps');
  for (const row of rows) {
    if (!row.matched) console.log(`  NOTE: ours at ${row.threads} thread(s): ${row.note}`);
  }
  console.log(`goal (issue 9: the step no slower than PyTorch at the same thread count): ${verdicts.join('; ')}`);
  const busyEnd = busyWarning('at end');
  if (busyEnd) console.log(busyEnd);
  console.log(`peak RSS of this process ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB; load average at end ${loadavg().map((l) => l.toFixed(1)).join(' ')}; total run time ` +
    `${((performance.now() - started) / 1000).toFixed(1)} s`);
}

await main();
