/**
 * One job of `pnpm bench:ddp` (bench-ddp.ts starts it): the CIFAR-style training step
 * of bench:step (conv3x3 3-32-32-64-64, each with BatchNorm2d and ReLU, max pool after
 * the second, global average pool, Linear(64,10); cross-entropy, SGD momentum 0.9) on a
 * batch of [B,3,32,32] per rank.
 *
 *   --mode ddp     a rank under runThreads or bagua-launch: the model (its BatchNorm2d
 *                  converted to SyncBatchNorm with --bn syncbn) wrapped by withBagua +
 *                  GradientAllReduce; a barrier before each step, so a step is timed as the
 *                  slowest rank sees it (rank 0 gathers every rank's times after the loop).
 *   --mode single  one plain process, no group and no wrapper: the compute floor.
 *
 *   bench-ddp-rank.js --mode ddp|single [--bn bn|syncbn] [--overlap off|on|default]
 *                     [--batch 16] [--warmup 5] [--steps 20]
 *
 * Rank 0 prints one line `BENCH_RESULT <json>` (JobReport); a failure prints `BENCH_ERROR <message>`.
 */
import { parseArgs } from 'node:util';
import { getNumThreads, manualSeed, nn, optim, randn, setNumThreads, tensor } from '@bagua/core';
import { benchCnn, intOptions } from '@bagua/testing';
import { destroyProcessGroup, GradientAllReduce, initProcessGroup, SyncBatchNorm, withBagua } from '../src/index.js';

export interface JobReport {
  mode: 'ddp' | 'single';
  backend: string; // 'none' in single mode
  world: number;
  bn: 'bn' | 'syncbn';
  /** GradientAllReduce's overlap: 'on' / 'off'. */
  overlap: string;
  kernelThreads: number[]; // per rank, read back with getNumThreads()
  params: number;
  buckets: number;
  /** Per timed step, the slowest rank's ms. */
  ms: number[];
}

const { values: args } = parseArgs({
  options: {
    mode: { type: 'string', default: 'ddp' },
    bn: { type: 'string', default: 'bn' },
    overlap: { type: 'string', default: 'default' },
    batch: { type: 'string', default: '16' },
    warmup: { type: 'string', default: '5' },
    steps: { type: 'string', default: '20' },
  },
});
const MODE = args.mode as JobReport['mode'];
const BN = args.bn as JobReport['bn'];
const { batch: BATCH, warmup: WARMUP, steps: STEPS } = intOptions('bench-ddp-rank', args, { batch: 1, warmup: 0, steps: 1 });


/** GradientAllReduce with overlap on, off, or its default ('default'). */
function makeAlgorithm(overlap: string): { algorithm: GradientAllReduce; overlap: string } {
  if (!['default', 'on', 'off'].includes(overlap)) throw new Error(`--overlap is on, off or default, got ${overlap}`);
  const algorithm = new GradientAllReduce(overlap === 'default' ? {} : { overlap: overlap === 'on' });
  return { algorithm, overlap: algorithm.overlap ? 'on' : 'off' };
}

async function main(): Promise<void> {
  if (!['ddp', 'single'].includes(MODE)) throw new Error(`--mode is ddp or single, got ${MODE}`);
  if (!['bn', 'syncbn'].includes(BN)) throw new Error(`--bn is bn or syncbn, got ${BN}`);
  // BAGUA_NUM_THREADS=1 is the default the orchestrator sets; setting it here too makes every rank's count explicit.
  setNumThreads(Number(process.env.BAGUA_NUM_THREADS ?? 1));

  const group = MODE === 'ddp' ? await initProcessGroup({ timeoutMs: 120_000 }) : null;
  const rank = group?.rank ?? 0;
  manualSeed(0); // same initial weights everywhere (withBagua broadcasts rank 0's anyway)
  let model: nn.Module = benchCnn();
  if (BN === 'syncbn') model = SyncBatchNorm.convertSyncBatchnorm(model);
  model.train();
  const optimizer = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
  let overlap = 'n/a';
  let buckets = 0;
  if (group) {
    const { algorithm, overlap: o } = makeAlgorithm(args.overlap!);
    overlap = o;
    model = withBagua(model, [optimizer], algorithm, { processGroup: group });
    buckets = algorithm.buckets(model).length;
  }
  const lossFn = new nn.CrossEntropyLoss();
  manualSeed(100 + rank); // each rank its own slice of the global batch
  const x = randn([BATCH, 3, 32, 32]);
  const target = tensor(Int32Array.from({ length: BATCH }, (_, i) => (i + rank) % 10), { shape: [BATCH], dtype: 'int32' });

  const mine = new Float32Array(STEPS);
  for (let i = 0; i < WARMUP + STEPS; i++) {
    group?.barrier(); // start together: a step's time includes waiting for the slowest rank
    const t0 = performance.now();
    const loss = lossFn.forward(model.forward(x), target);
    optimizer.zeroGrad();
    loss.backward();
    optimizer.step();
    const ms = performance.now() - t0;
    if (i >= WARMUP) mine[i - WARMUP] = ms;
  }

  const world = group?.size ?? 1;
  const all = new Float32Array(STEPS * world);
  const threads = new Float32Array(world);
  if (group) {
    group.allGather(all, mine);
    const t = new Float32Array(world);
    group.allGather(t, Float32Array.of(getNumThreads()));
    threads.set(t);
  } else {
    all.set(mine);
    threads[0] = getNumThreads();
  }
  if (rank === 0) {
    const slowest = Array.from({ length: STEPS }, (_, s) => Math.max(...Array.from({ length: world }, (_, r) => all[r * STEPS + s]!)));
    const report: JobReport = {
      mode: MODE, backend: group?.backend ?? 'none', world, bn: BN, overlap,
      kernelThreads: Array.from(threads), params: model.parameters().reduce((n, p) => n + p.numel, 0), buckets, ms: slowest,
    };
    process.stdout.write(`BENCH_RESULT ${JSON.stringify(report)}\n`);
  }
  if (group) await destroyProcessGroup();
}

try {
  await main();
} catch (e) {
  process.stdout.write(`BENCH_ERROR ${((e as Error)?.message ?? String(e)).split('\n')[0]}\n`);
  process.exitCode = 1;
}
