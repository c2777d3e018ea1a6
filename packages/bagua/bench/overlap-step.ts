/**
 * ms per training step of two settings run in one job (issue 12), alternating in
 * blocks so that drift and other jobs' load hit both alike:
 *   --pair overlap  GradientAllReduce's overlap on against off (with --bn); rank 0 prints `OVERLAP <json>`
 *   --pair bn       SyncBatchNorm against BatchNorm2d (overlap on); rank 0 prints `SYNCBN <json>`
 * A rank script for bagua-launch:
 *   BAGUA_NUM_THREADS=1 bagua-launch --nproc-per-node 2 --backend gloo dist/bench/overlap-step.js \
 *     [--pair overlap|bn] [--net train-cnn|cifar|mlp] [--batch 16] [--cap-mb 25] [--steps 200] [--warmup 20]
 *     [--bn bn|syncbn] [--block 20] [--alone 0] [--trace 0] [--trace-iface IFACE]
 * Times are the slowest rank's ms per step: medians of each setting, and the median over blocks of
 * the ratio of the two settings' block medians (paired: the blocks of a pair ran back to back),
 * with the smallest and largest block ratio.
 * --alone N (overlap pair): also N steps of each of: the bucket all-reduces alone, one after the
 *   other as overlap off issues them (allReduceMs), and the step under noSync, with no
 *   communication at all (computeMs). tools/bench-link uses them to place a link rate.
 * --trace N (overlap pair): N more overlap-on steps, timed inside: forward end, each gradient's
 *   ready time, each bucket's start and completion (polled at every gradient hook, then every
 *   0.2 ms after backward), backward end; with --trace-iface, the interface's tx_bytes at each
 *   of those points (was the communication thread sending while backward ran?). Every rank
 *   prints `TRACE <json>` per step.
 * --same-model (overlap pair): both settings train one model and optimizer, each block switching
 *   the GradientAllReduce hooked to it (plus one untimed step per block), instead of one model
 *   per setting: two identical models in one process were measured up to 2x apart in speed on
 *   this VM (their memory, not their settings), which swamps the difference under test.
 * --control (overlap pair): the baseline runs overlap on as well, so on/off reads the A/A spread.
 * --gap-ms N: every rank idles N ms before each block (probes whether one setting's blocks
 *   slow the next for a span of time rather than a number of steps).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { F, manualSeed, nn, optim, randn, registerGradReadyHook, tensor, type Tensor } from '@bagua/core';
import type { Work } from '@bagua/comm';
import * as bagua from '../src/index.js';
import { median } from '@bagua/testing';

const { values: args } = parseArgs({
  options: {
    net: { type: 'string', default: 'train-cnn' },
    batch: { type: 'string', default: '16' },
    'cap-mb': { type: 'string', default: '25' },
    steps: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '20' },
    bn: { type: 'string', default: 'syncbn' },
    pair: { type: 'string', default: 'overlap' },
    block: { type: 'string', default: '20' },
    alone: { type: 'string', default: '0' },
    trace: { type: 'string', default: '0' },
    'trace-iface': { type: 'string', default: '' },
    'same-model': { type: 'boolean', default: false },
    control: { type: 'boolean', default: false },
    'gap-ms': { type: 'string', default: '0' },
  },
});
if (args.pair !== 'overlap' && args.pair !== 'bn') throw new Error(`overlap-step: --pair is overlap or bn, got ${args.pair}`);
if (args.bn !== 'bn' && args.bn !== 'syncbn') throw new Error(`overlap-step: --bn is bn or syncbn, got ${args.bn}`);
const B = Number(args.batch);
const STEPS = Number(args.steps);

await bagua.initProcessGroup();
const rank = bagua.getRank();
const world = bagua.defaultGroup();

function makeNet(): { model: nn.Module; shape: number[] } {
  manualSeed(1234);
  if (args.net === 'mlp') {
    // 4 x Linear(1024, 1024): 16 MiB of gradients, where communication is a large part of the step
    const layers: nn.Module[] = [new nn.Linear(48, 1024)];
    for (let i = 0; i < 4; i++) layers.push(new nn.ReLU(), new nn.Linear(1024, 1024));
    layers.push(new nn.ReLU(), new nn.Linear(1024, 10));
    return { model: new nn.Sequential(...layers), shape: [B, 48] };
  }
  if (args.net === 'cifar') {
    const block = (i: number, o: number) => [new nn.Conv2d(i, o, 3, { padding: 1 }), new nn.BatchNorm2d(o), new nn.ReLU()];
    return {
      model: new nn.Sequential(...block(3, 32), ...block(32, 32), new nn.MaxPool2d(2), ...block(32, 64), ...block(64, 64),
        new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(64, 10)),
      shape: [B, 3, 32, 32],
    };
  }
  // examples/train-cnn's net, on its 16x16 synthetic images
  return {
    model: new nn.Sequential(
      new nn.Conv2d(1, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(), new nn.MaxPool2d(2),
      new nn.Conv2d(8, 16, 3, { padding: 1 }), new nn.BatchNorm2d(16), new nn.ReLU(),
      new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(16, 10)),
    shape: [B, 1, 16, 16],
  };
}

function setup(overlap: boolean, bn: string) {
  const { model, shape } = makeNet();
  const m = bn === 'syncbn' ? bagua.SyncBatchNorm.convertSyncBatchnorm(model) : model;
  const opt = new optim.SGD(m.parameters(), { lr: 0.01, momentum: 0.9 });
  const alg = new bagua.GradientAllReduce({ overlap, bucketCapMb: Number(args['cap-mb']) });
  const w = m.withBagua([opt], alg);
  manualSeed(7 + rank);
  const x = randn(shape);
  const y = tensor(Int32Array.from({ length: B }, (_, i) => (i + rank) % 10));
  const step = () => {
    opt.zeroGrad();
    F.crossEntropy(w.forward(x), y).backward();
    opt.step();
  };
  return { step, alg, model: m, opt, x, y, forward: (v: Tensor) => w.forward(v), buckets: alg.buckets(w).length, enter: () => false,
    stepOpt: () => opt.step() };
}

/**
 * --same-model: one model and optimizer, an algorithm per setting; enter() hooks that setting's
 * algorithm to the model (init broadcasts the parameters and builds fresh buckets; the other
 * setting's reducer is removed first) and returns true when it switched.
 */
function setupShared(overlaps: [boolean, boolean], bn: string) {
  const { model, shape } = makeNet();
  const m = bn === 'syncbn' ? bagua.SyncBatchNorm.convertSyncBatchnorm(model) : model;
  const opt = new optim.SGD(m.parameters(), { lr: 0.01, momentum: 0.9 });
  manualSeed(7 + rank);
  const x = randn(shape);
  const y = tensor(Int32Array.from({ length: B }, (_, i) => (i + rank) % 10));
  // GradientAllReduce has no public detach: its reducer (the hooks) is removed through the field.
  type Detachable = { reducer: { remove(): void } | null };
  let current: bagua.GradientAllReduce | null = null;
  const make = (overlap: boolean) => {
    const alg = new bagua.GradientAllReduce({ overlap, bucketCapMb: Number(args['cap-mb']) });
    const enter = () => {
      if (current === alg) return false;
      if (current) ((current as unknown as Detachable).reducer?.remove(), ((current as unknown as Detachable).reducer = null));
      alg.init(m, world);
      current = alg;
      return true;
    };
    const step = () => {
      enter();
      opt.zeroGrad();
      F.crossEntropy(m.forward(x), y).backward();
      alg.beforeStep(m, world);
      opt.step();
    };
    return { step, alg, model: m, opt, x, y, forward: (v: Tensor) => m.forward(v), buckets: alg.buckets(m).length, enter,
      stepOpt: () => (alg.beforeStep(m, world), opt.step()) };
  };
  return { a: make(overlaps[0]), b: make(overlaps[1]) };
}

// a: the setting under test, b: its baseline.
const baseOverlap = args.control; // the baseline: overlap off, or on as well with --control (A/A)
const runs = args.pair === 'overlap'
  ? args['same-model'] ? setupShared([true, baseOverlap], args.bn) : { a: setup(true, args.bn), b: setup(baseOverlap, args.bn) }
  : { a: setup(true, 'syncbn'), b: setup(true, 'bn') };
const times: Record<'a' | 'b', number[]> = { a: [], b: [] };
const ratios: number[] = []; // per block pair: median(a) / median(b)
const blockMedians: Record<'a' | 'b', number[]> = { a: [], b: [] }; // in run order, for --blocks-out
for (let i = 0; i < Number(args.warmup); i++) (runs.a.step(), runs.b.step());
const block = Math.max(1, Number(args.block));
const t = new Float64Array(1);
for (let done = 0, pairNo = 0; done < STEPS; done += block, pairNo++) {
  const blockMedian = { a: 0, b: 0 };
  // Alternate which setting runs first, so neither always follows the other.
  for (const k of pairNo % 2 ? (['b', 'a'] as const) : (['a', 'b'] as const)) {
    const mine: number[] = [];
    if (Number(args['gap-ms']) > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(args['gap-ms']));
    if (runs[k].enter()) runs[k].step(); // --same-model: switched; its first step rebuilds the buckets
    for (let i = 0; i < block; i++) {
      world.barrier();
      const t0 = performance.now();
      runs[k].step();
      t[0] = performance.now() - t0;
      world.allReduce(t, 'max'); // the slowest rank's step
      mine.push(t[0]!);
    }
    times[k].push(...mine);
    blockMedian[k] = median(mine);
    blockMedians[k].push(+blockMedian[k].toFixed(2));
  }
  ratios.push(blockMedian.a / blockMedian.b);
}
const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
/** The q-quantile (nearest rank): on a loaded machine the fast steps are those nothing descheduled. */
const quantile = (a: number[], q: number) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(q * a.length))]!;

/** The slowest rank's ms of fn, n times after 3 warm-ups. */
function timeSlowest(n: number, fn: () => void): number[] {
  const out: number[] = [];
  for (let i = 0; i < n + 3; i++) {
    world.barrier();
    const t0 = performance.now();
    fn();
    t[0] = performance.now() - t0;
    world.allReduce(t, 'max');
    if (i >= 3) out.push(t[0]!);
  }
  return out;
}

const extra: Record<string, unknown> = {};
const ALONE = Number(args.alone);
if (args.pair === 'overlap' && ALONE > 0) {
  // What overlap off issues: each bucket's all-reduce, blocking, in bucket order.
  const bufs = runs.b.alg.buckets(runs.b.model).map((ps) => new Float32Array(ps.reduce((n, p) => n + p.numel, 0)).fill(1));
  extra.bucketFloats = bufs.map((b) => b.length);
  extra.allReduceMs = +median(timeSlowest(ALONE, () => bufs.forEach((b) => world.allReduce(b, 'avg')))).toFixed(3);
  runs.b.enter();
  extra.computeMs = +median(timeSlowest(ALONE, () => runs.b.alg.noSync(runs.b.step))).toFixed(3);
}

const TRACE = Number(args.trace);
if (args.pair === 'overlap' && TRACE > 0) {
  const iface = args['trace-iface'];
  const tx = iface ? () => Number(readFileSync(`/sys/class/net/${iface}/statistics/tx_bytes`, 'utf8')) : () => 0;
  const g = world as typeof world & { allReduceAsync?(buf: Float32Array, op?: 'avg'): Work };
  const orig = g.allReduceAsync?.bind(g);
  if (!orig) throw new Error(`overlap-step: --trace needs a group with allReduceAsync (${world.backend} has none)`);
  let t0 = 0;
  const now = () => +(performance.now() - t0).toFixed(3);
  const started: { floats: number; start: number; txAtStart: number; done: number | null; txAtDone: number; work: Work }[] = [];
  const poll = () => {
    for (const s of started) if (s.done === null && s.work.done()) (s.done = now()), (s.txAtDone = tx());
  };
  g.allReduceAsync = (buf: Float32Array, op?: 'avg') => {
    const work = orig(buf, op);
    started.push({ floats: buf.length, start: now(), txAtStart: tx(), done: null, txAtDone: 0, work });
    return work;
  };
  const grads: { t: number; tx: number }[] = [];
  const handles = runs.a.model.parameters().map((p) => registerGradReadyHook(p, () => {
    grads.push({ t: now(), tx: tx() });
    poll();
  }));
  const nap = new Int32Array(new SharedArrayBuffer(4));
  if (runs.a.enter()) runs.a.step();
  const { opt, x, y, forward, stepOpt } = runs.a;
  for (let i = 0; i < TRACE; i++) {
    world.barrier();
    started.length = 0;
    grads.length = 0;
    t0 = performance.now();
    const tx0 = tx();
    opt.zeroGrad();
    const loss = F.crossEntropy(forward(x), y);
    const fwd = { t: now(), tx: tx() - tx0 };
    loss.backward();
    const bwd = { t: now(), tx: tx() - tx0 };
    while (started.some((s) => s.done === null) && now() < 60_000) (Atomics.wait(nap, 0, 0, 0.2), poll());
    stepOpt();
    const end = { t: now(), tx: tx() - tx0 };
    console.log(`TRACE ${JSON.stringify({
      rank, step: i, fwd, bwd, end,
      grads: grads.map((r) => [r.t, r.tx - tx0]),
      buckets: started.map((s) => ({ floats: s.floats, start: s.start, done: s.done, txAtStart: s.txAtStart - tx0, txAtDone: s.txAtDone - tx0 })),
    })}`);
  }
  handles.forEach((h) => h.remove());
  g.allReduceAsync = orig;
}

if (rank === 0) {
  const common = { net: args.net, batch: B, world: world.size, backend: world.backend, capMb: Number(args['cap-mb']), steps: STEPS };
  const paired = +median(ratios).toFixed(4);
  if (args.pair === 'overlap') {
    console.log(`OVERLAP ${JSON.stringify({
      ...common, bn: args.bn, buckets: runs.a.buckets, sameModel: args['same-model'], control: args.control,
      onMedianMs: +median(times.a).toFixed(3), offMedianMs: +median(times.b).toFixed(3),
      onMeanMs: +mean(times.a).toFixed(3), offMeanMs: +mean(times.b).toFixed(3), onOverOff: paired,
      onP10Ms: +quantile(times.a, 0.1).toFixed(3), offP10Ms: +quantile(times.b, 0.1).toFixed(3),
      ratioMin: +Math.min(...ratios).toFixed(4), ratioMax: +Math.max(...ratios).toFixed(4), blocks: ratios.length, ...extra,
      onBlockMs: blockMedians.a, offBlockMs: blockMedians.b,
    })}`);
  } else {
    console.log(`SYNCBN ${JSON.stringify({
      ...common, overlap: 'on', buckets: runs.a.buckets,
      syncbnMedianMs: +median(times.a).toFixed(3), bnMedianMs: +median(times.b).toFixed(3), syncbnOverBn: paired,
    })}`);
  }
}
await bagua.destroyProcessGroup();
