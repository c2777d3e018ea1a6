/**
 * One rank of the SyncBatchNorm benchmark (bench-syncbn.ts starts it under
 * runThreads or under bagua-launch --backend gloo).
 *
 *   syncbn-rank.js [--shapes 8x64x56x56,32x256x14x14] [--warmup 3] [--reps 20]
 *
 * For each shape (the LOCAL shape of every rank) it times one training step,
 * forward + backward, of three layers on the same input, interleaved rep by
 * rep with a barrier before each step:
 *   plain      nn.BatchNorm2d, local statistics, no communication;
 *   ours       SyncBatchNorm: 1 all-gather forward, 1 all-reduce backward;
 *   bagua-way  BaguaWaySyncBatchNorm: 3 all-gathers forward, 2 all-reduces backward.
 * A step's time is the slowest rank's; the reported figure is the median over reps.
 * The collectives each step issues are counted through a wrapper of the group,
 * and ours and the Bagua way are checked to give the same outputs.
 * `ours` runs with the 'allGather' statistics exchange (the default) and, as
 * `oursReduce`, with 'allReduce'. Apart from the steps, the exchange itself is
 * timed for each shape's channel count: the all-gather of [2C+2] records into
 * [P, 2C+2] against the sum all-reduce of the [2C+1+P] shifted-sums record
 * (the buffers the layer hands the group), interleaved rep by rep.
 *
 * Every rank sends its timings to rank 0 through the group (one all-gather per
 * shape, outside the timed region); rank 0 prints one line
 * `BENCH_RESULT <json>` on stdout. A failing rank prints `BENCH_ERROR <message>`.
 */
import { manualSeed, nn, noGrad, randn, type Tensor } from '@bagua/core';
import { destroyProcessGroup, initProcessGroup, SyncBatchNorm, type ProcessGroup } from '../src/index.js';
import { BaguaWaySyncBatchNorm } from './bagua-way-batchnorm.js';
import { CountingGroup, diffCounts, totalCollectives, type CollectiveCounts } from './counting-group.js';
import { median } from '@bagua/testing';

export const VARIANTS = ['plain', 'ours', 'oursReduce', 'bagua'] as const;
export type Variant = (typeof VARIANTS)[number];

export interface PhaseCounts {
  forward: CollectiveCounts;
  backward: CollectiveCounts;
}

export interface ShapeResult {
  shape: number[];
  reps: number;
  /** Median over reps of the slowest rank's forward + backward time, ms. */
  medianMs: Record<Variant, number>;
  /** Every rep's step time (slowest rank), ms. */
  stepMs: Record<Variant, number[]>;
  /** Collectives one step issues, forward and backward (the same on every rank). */
  collectives: Record<Variant, PhaseCounts>;
  /** Max |ours - Bagua way| over all ranks, per output of one training step. */
  maxAbsDiff: Record<'y' | 'dx' | 'gradWeight' | 'gradBias' | 'runningMean' | 'runningVar', number>;
  /** The statistics exchange alone, per exchange: median over reps (slowest rank) of one collective, microseconds. */
  exchangeUs: Record<Exchange, number>;
  /** Every rep's exchange time (slowest rank, mean of EXCHANGE_BATCH back-to-back collectives), microseconds. */
  exchangeRepUs: Record<Exchange, number[]>;
}

export const EXCHANGES = ['allGather', 'allReduce'] as const;
export type Exchange = (typeof EXCHANGES)[number];
/** Collectives per timed batch: one is a few microseconds on threads, below the timer's resolution. */
const EXCHANGE_BATCH = 20;

export interface RankReport {
  backend: string;
  worldSize: number;
  shapes: ShapeResult[];
}

function parseArgs(argv: readonly string[]): { shapes: number[][]; warmup: number; reps: number } {
  let shapes = '8x64x56x56,32x256x14x14';
  let warmup = 3;
  let reps = 20;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`syncbn-rank: ${a} needs a value`);
    if (a === '--shapes') shapes = v;
    else if (a === '--warmup') warmup = Number(v);
    else if (a === '--reps') reps = Number(v);
    else throw new Error(`syncbn-rank: unknown option ${a}`);
  }
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error(`syncbn-rank: --warmup must be an integer >= 0`);
  if (!Number.isInteger(reps) || reps < 1) throw new Error(`syncbn-rank: --reps must be an integer >= 1`);
  const parsed = shapes.split(',').map((s) => s.split('x').map(Number));
  for (const s of parsed) {
    if (s.length !== 4 || s.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new Error(`syncbn-rank: shapes are NxCxHxW, got '${s.join('x')}'`);
    }
  }
  return { shapes: parsed, warmup, reps };
}

function maxAbsDiff(a: Tensor | null, b: Tensor | null): number {
  if (a === null || b === null) return a === b ? 0 : Infinity;
  const x = a.toArray() as Float32Array;
  const y = b.toArray() as Float32Array;
  if (x.length !== y.length) return Infinity;
  let m = 0;
  for (let i = 0; i < x.length; i++) {
    const d = Math.abs(x[i] - y[i]);
    if (Number.isNaN(d)) return NaN;
    if (d > m) m = d;
  }
  return m;
}


function randomise(layer: nn._BatchNorm, seed: number): void {
  // Same (non-trivial) affine parameters on every rank.
  manualSeed(seed);
  noGrad(() => {
    layer.loadStateDict({ weight: randn([layer.numFeatures]).mul(0.5).add(1), bias: randn([layer.numFeatures]).mul(0.1) }, false);
  });
}

function clearGrads(x: Tensor, layer: nn._BatchNorm): void {
  for (const t of [x, layer.weight, layer.bias]) {
    if (t && t.grad) {
      t.grad.dispose();
      t.grad = null;
    }
  }
}

/** One forward + backward; returns the collectives issued in each phase. */
function step(layer: nn._BatchNorm, x: Tensor, dy: Tensor, counter: CountingGroup): PhaseCounts {
  const c0 = counter.snapshot();
  const y = layer.forward(x);
  const c1 = counter.snapshot();
  y.backward(dy);
  const c2 = counter.snapshot();
  y.dispose();
  return { forward: diffCounts(c1, c0), backward: diffCounts(c2, c1) };
}

/** Ours against the Bagua way, one training step on the same data: the largest difference of every output. */
function checkSame(shape: number[], x: Tensor, dy: Tensor, counter: CountingGroup, world: ProcessGroup): ShapeResult['maxAbsDiff'] {
  const c = shape[1];
  const ours = new SyncBatchNorm(c, { processGroup: counter });
  const bagua = new BaguaWaySyncBatchNorm(c, counter);
  randomise(ours, 7);
  randomise(bagua, 7);
  const run = (layer: nn._BatchNorm) => {
    clearGrads(x, layer);
    const y = layer.forward(x);
    y.backward(dy);
    const dx = x.grad!;
    x.grad = null;
    return { y, dx, gw: layer.weight!.grad, gb: layer.bias!.grad };
  };
  const a = run(ours);
  const b = run(bagua);
  const diffs = new Float64Array([
    maxAbsDiff(a.y, b.y),
    maxAbsDiff(a.dx, b.dx),
    maxAbsDiff(a.gw, b.gw),
    maxAbsDiff(a.gb, b.gb),
    maxAbsDiff(ours.runningMean, bagua.runningMean),
    maxAbsDiff(ours.runningVar, bagua.runningVar),
  ]);
  world.allReduce(diffs, 'max');
  for (const t of [a.y, a.dx, b.y, b.dx]) t.dispose();
  return {
    y: diffs[0], dx: diffs[1], gradWeight: diffs[2], gradBias: diffs[3], runningMean: diffs[4], runningVar: diffs[5],
  };
}

function benchShape(shape: number[], warmup: number, reps: number, world: ProcessGroup): ShapeResult {
  const counter = new CountingGroup(world);
  const c = shape[1];
  manualSeed(1000 + world.rank); // different data on every rank
  const x = randn(shape);
  x.requiresGrad = true;
  const dy = randn(shape);

  const maxDiff = checkSame(shape, x, dy, counter, world);

  const layers: Record<Variant, nn._BatchNorm> = {
    plain: new nn.BatchNorm2d(c),
    ours: new SyncBatchNorm(c, { processGroup: counter }),
    oursReduce: new SyncBatchNorm(c, { processGroup: counter, statsExchange: 'allReduce' }),
    bagua: new BaguaWaySyncBatchNorm(c, counter),
  };
  for (const v of VARIANTS) randomise(layers[v], 11);

  const local: Record<Variant, number[]> = { plain: [], ours: [], oursReduce: [], bagua: [] };
  const collectives = {} as Record<Variant, PhaseCounts>;
  for (let rep = 0; rep < warmup + reps; rep++) {
    // Rotate the order so that no variant always runs first (or last) in a rep.
    for (let k = 0; k < VARIANTS.length; k++) {
      const v = VARIANTS[(rep + k) % VARIANTS.length];
      const layer = layers[v];
      clearGrads(x, layer);
      world.barrier(); // start together: the step is timed as the slowest rank sees it
      const t0 = performance.now();
      const counts = step(layer, x, dy, counter);
      const ms = performance.now() - t0;
      if (rep >= warmup) local[v].push(ms);
      const prev = collectives[v];
      // from the third rep: oursReduce's first step (a warm-up) also broadcasts its shift, once
      if (prev && rep > 1 && (totalCollectives(prev.forward) !== totalCollectives(counts.forward) ||
        totalCollectives(prev.backward) !== totalCollectives(counts.backward))) {
        throw new Error(`${v}: the number of collectives per step changed between reps`);
      }
      collectives[v] = counts;
    }
  }
  clearGrads(x, layers.plain);

  // Rank 0 learns every rank's times (outside the timed region).
  const mine = new Float64Array(VARIANTS.length * reps);
  VARIANTS.forEach((v, i) => mine.set(local[v], i * reps));
  const all = new Float64Array(mine.length * world.size);
  world.allGather(all, mine);
  const stepMs = { plain: [], ours: [], oursReduce: [], bagua: [] } as Record<Variant, number[]>;
  const medianMs = {} as Record<Variant, number>;
  VARIANTS.forEach((v, i) => {
    for (let rep = 0; rep < reps; rep++) {
      let slowest = 0;
      for (let r = 0; r < world.size; r++) slowest = Math.max(slowest, all[r * mine.length + i * reps + rep]);
      stepMs[v].push(slowest);
    }
    medianMs[v] = median(stepMs[v]);
  });
  x.dispose();
  dy.dispose();
  const exchange = benchExchange(c, warmup, reps, world);
  return { shape, reps, medianMs, stepMs, collectives, maxAbsDiff: maxDiff, ...exchange };
}

/** The two statistics exchanges of a C-channel layer, alone: what each moves through the group, timed interleaved. */
function benchExchange(c: number, warmup: number, reps: number, world: ProcessGroup):
  Pick<ShapeResult, 'exchangeUs' | 'exchangeRepUs'> {
  const P = world.size;
  const record = new Float32Array(2 * c + 2).fill(1);
  const gathered = new Float32Array(P * record.length);
  const sums = new Float32Array(2 * c + 1 + P);
  const run: Record<Exchange, () => void> = {
    allGather: () => world.allGather(gathered, record),
    allReduce: () => { sums.fill(1); world.allReduce(sums, 'sum'); },
  };
  const local: Record<Exchange, number[]> = { allGather: [], allReduce: [] };
  for (let rep = 0; rep < warmup + reps; rep++) {
    for (let k = 0; k < EXCHANGES.length; k++) {
      const e = EXCHANGES[(rep + k) % EXCHANGES.length];
      world.barrier();
      const t0 = performance.now();
      for (let i = 0; i < EXCHANGE_BATCH; i++) run[e]();
      const us = ((performance.now() - t0) * 1000) / EXCHANGE_BATCH;
      if (rep >= warmup) local[e].push(us);
    }
  }
  const mine = Float64Array.from([...local.allGather, ...local.allReduce]);
  const all = new Float64Array(mine.length * P);
  world.allGather(all, mine);
  const exchangeRepUs = { allGather: [], allReduce: [] } as Record<Exchange, number[]>;
  const exchangeUs = {} as Record<Exchange, number>;
  EXCHANGES.forEach((e, i) => {
    for (let rep = 0; rep < reps; rep++) {
      let slowest = 0;
      for (let r = 0; r < P; r++) slowest = Math.max(slowest, all[r * mine.length + i * reps + rep]);
      exchangeRepUs[e].push(slowest);
    }
    exchangeUs[e] = median(exchangeRepUs[e]);
  });
  return { exchangeUs, exchangeRepUs };
}

async function main(): Promise<void> {
  const { shapes, warmup, reps } = parseArgs(process.argv.slice(2));
  const world = await initProcessGroup({ timeoutMs: 60_000 });
  try {
    const report: RankReport = { backend: world.backend, worldSize: world.size, shapes: [] };
    for (const shape of shapes) report.shapes.push(benchShape(shape, warmup, reps, world));
    if (world.rank === 0) process.stdout.write(`BENCH_RESULT ${JSON.stringify(report)}\n`);
    world.barrier();
  } finally {
    await destroyProcessGroup();
  }
}

try {
  await main();
} catch (e) {
  process.stdout.write(`BENCH_ERROR ${String((e as Error)?.message ?? e).split('\n').join(' | ')}\n`);
  process.exitCode = 1;
}
