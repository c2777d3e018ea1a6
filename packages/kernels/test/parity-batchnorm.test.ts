/**
 * BatchNorm against PyTorch (fixtures/batchnorm.json): the modules over 3 training steps
 * and 1 eval step in every option combination, F.batchNorm, and the batch-norm primitives
 * SyncBatchNorm is built from (expected values derived in float64 from their definitions).
 */
import test from 'ava';
import '@bagua/kernels';
import { F, nn, tensor, type Tensor } from '@bagua/core';
import {
  assertClose, assertCloseScalar, DEFAULT_TOL, loadFixture, scalarOf, testDevice, toTensor, toTensorOrNull, type FixtureTensor,
} from '@bagua/testing';

type T = FixtureTensor;
type TN = FixtureTensor | null;

interface Step {
  training: boolean;
  input: T; output: T; gradOutput: T; gradInput: T;
  gradWeight: TN; gradBias: TN; runningMean: TN; runningVar: TN;
  numBatchesTracked: number | null;
}
interface ModuleCase {
  name: string;
  module: 'BatchNorm1d' | 'BatchNorm2d' | 'BatchNorm3d';
  numFeatures: number;
  options: { eps: number; momentum: number | null; affine: boolean; trackRunningStats: boolean };
  initial: { weight: TN; bias: TN; runningMean: TN; runningVar: TN; numBatchesTracked: number | null };
  steps: Step[];
}
interface FunctionalCase {
  name: string; training: boolean; momentum: number; eps: number;
  inputs: { x: T; runningMean: TN; runningVar: TN; weight: TN; bias: TN };
  output: T; gradOutput: T; grads: Record<string, T>; runningMean: TN; runningVar: TN;
}
interface Primitives {
  stats: { name: string; x: T; stats: T }[];
  merge: {
    name: string; rankInputs: T[]; stats: T; eps: number; factor: number; runningMean: TN; runningVar: TN;
    mean: T; invstd: T; count: number; runningMeanAfter: TN; runningVarAfter: TN;
  }[];
  elemt: { name: string; x: T; mean: T; invstd: T; weight: TN; bias: TN; output: T }[];
  backwardReduce: {
    name: string; dy: T; x: T; mean: T; invstd: T; needWeightGrad: boolean; sums: T; gradWeight: TN; gradBias: TN;
  }[];
  backwardElemt: { name: string; dy: T; x: T; mean: T; invstd: T; weight: TN; sums: T; count: number; gradInput: T }[];
  syncEmulation: {
    name: string; eps: number; weight: T; bias: T; rankInputs: T[]; rankGradOutputs: T[];
    rankOutputs: T[]; rankGradInputs: T[]; gradWeight: T; gradBias: T;
  }[];
}
interface BatchNormFixture {
  expectedCounts: Record<string, number>;
  modules: ModuleCase[];
  functional: FunctionalCase[];
  primitives: Primitives;
}

const fx = loadFixture<BatchNormFixture>('batchnorm.json');
const device = testDevice();

// Pinned, so a regenerated fixture that silently lost cases fails here.
const EXPECTED = { modules: 32, functional: 4, stats: 4, merge: 3, elemt: 3, backwardReduce: 3, backwardElemt: 2,
  syncEmulation: 2 };

test('parity batchnorm.json: fixture holds every expected case', (t) => {
  t.is(fx.modules.length, EXPECTED.modules);
  t.is(fx.functional.length, EXPECTED.functional);
  for (const k of ['stats', 'merge', 'elemt', 'backwardReduce', 'backwardElemt', 'syncEmulation'] as const) {
    t.is(fx.primitives[k].length, EXPECTED[k], `primitives.${k}`);
  }
  t.deepEqual(fx.expectedCounts, EXPECTED);
  for (const c of fx.modules) t.is(c.steps.length, 4, `${c.name}: 3 training steps + 1 eval step`);
});

/** Host-side sum of equal-length tensors: stands in for an all-reduce across ranks. */
function hostSum(ts: Tensor[]): Float32Array {
  const out = new Float32Array(ts[0].numel);
  for (const t of ts) (t.toArray() as Float32Array).forEach((v, i) => { out[i] += v; });
  return out;
}

/** Host-side stacking of [2C+2] records into [R, 2C+2]: stands in for the all-gather. */
function hostStack(rows: Tensor[]): Tensor {
  const w = rows[0].numel;
  const data = new Float32Array(rows.length * w);
  rows.forEach((r, i) => data.set(r.toArray() as Float32Array, i * w));
  return tensor(data, { shape: [rows.length, w], device });
}

const countTensor = (n: number): Tensor => tensor([n], { shape: [1], device });

/**
 * Per channel, the sums of |terms| behind grad weight (sum of dy (x - mean) invstd) and
 * grad bias (sum of dy), with the statistics the step normalised with.
 */
function gradSumScales(s: Step, eps: number, runningStats: boolean): { weight: Float64Array; bias: Float64Array } {
  const [n, c] = s.input.shape as [number, number];
  const inner = s.input.data.length / (n * c);
  const x = s.input.data, dy = s.gradOutput.data;
  const at = (ni: number, ch: number, k: number) => (ni * c + ch) * inner + k;
  const weight = new Float64Array(c), bias = new Float64Array(c);
  for (let ch = 0; ch < c; ch++) {
    let mean: number, v: number;
    if (runningStats) {
      mean = s.runningMean!.data[ch]!;
      v = s.runningVar!.data[ch]!;
    } else {
      let sum = 0, sq = 0;
      for (let ni = 0; ni < n; ni++) for (let k = 0; k < inner; k++) sum += x[at(ni, ch, k)]!;
      mean = sum / (n * inner);
      for (let ni = 0; ni < n; ni++) for (let k = 0; k < inner; k++) sq += (x[at(ni, ch, k)]! - mean) ** 2;
      v = sq / (n * inner);
    }
    const invstd = 1 / Math.sqrt(v + eps);
    for (let ni = 0; ni < n; ni++) {
      for (let k = 0; k < inner; k++) {
        const g = Math.abs(dy[at(ni, ch, k)]!);
        weight[ch] += g * Math.abs(x[at(ni, ch, k)]! - mean) * invstd;
        bias[ch] += g;
      }
    }
  }
  return { weight, bias };
}

// ---------------------------------------------------------------- modules

for (const c of fx.modules) {
  test(`parity batchnorm module: ${c.name}`, (t) => {
    const m = new nn[c.module](c.numFeatures, c.options);
    const { affine, trackRunningStats: track } = c.options;

    // State-dict keys as PyTorch has them, camelCased.
    const keys = Object.keys(m.stateDict()).sort();
    const want = [...(affine ? ['bias', 'weight'] : []),
      ...(track ? ['numBatchesTracked', 'runningMean', 'runningVar'] : [])].sort();
    t.deepEqual(keys, want, 'stateDict keys');

    // Non-default initial weight/bias/running stats through loadStateDict.
    const state: Record<string, Tensor> = { ...m.stateDict() };
    for (const k of ['weight', 'bias', 'runningMean', 'runningVar'] as const) {
      const v = c.initial[k];
      if (v) state[k] = toTensor(v, { device: 'cpu' });
    }
    m.loadStateDict(state);
    if (device !== 'cpu') m.to(device);
    t.is(m.numBatchesTracked, c.initial.numBatchesTracked ?? 0);

    c.steps.forEach((s, i) => {
      const label = `${c.name} step ${i} (${s.training ? 'train' : 'eval'})`;
      m.train(s.training);
      t.is(m.training, s.training);
      m.zeroGrad();
      const x = toTensor(s.input, { requiresGrad: true });
      const y = m.forward(x);
      assertClose(t, y, s.output, `${label} output`);
      y.backward(toTensor(s.gradOutput));
      assertClose(t, x.grad, s.gradInput, `${label} grad input`);
      if (affine) {
        // sums over the batch that may cancel: bounded by their |terms| too (16 float roundings)
        const sums = gradSumScales(s, c.options.eps, !s.training && track);
        assertClose(t, m.weight?.grad, s.gradWeight!, `${label} grad weight`, { ...DEFAULT_TOL, scale: sums.weight, scaleRtol: 2 ** -20 });
        assertClose(t, m.bias?.grad, s.gradBias!, `${label} grad bias`, { ...DEFAULT_TOL, scale: sums.bias, scaleRtol: 2 ** -20 });
      } else {
        t.is(m.weight, null);
        t.is(m.bias, null);
      }
      if (track) {
        assertClose(t, m.runningMean, s.runningMean!, `${label} runningMean`);
        assertClose(t, m.runningVar, s.runningVar!, `${label} runningVar`);
        t.is(m.numBatchesTracked, s.numBatchesTracked ?? NaN, `${label} numBatchesTracked`);
        t.is(scalarOf(m.stateDict().numBatchesTracked), s.numBatchesTracked ?? NaN, `${label} stateDict numBatchesTracked`);
      } else {
        t.is(m.runningMean, null);
        t.is(m.runningVar, null);
      }
    });
  });
}

// ---------------------------------------------------------------- F.batchNorm

for (const c of fx.functional) {
  test(`parity batchnorm functional: ${c.name}`, (t) => {
    const x = toTensor(c.inputs.x, { requiresGrad: true });
    const rm = toTensorOrNull(c.inputs.runningMean);
    const rv = toTensorOrNull(c.inputs.runningVar);
    const w = toTensorOrNull(c.inputs.weight, { requiresGrad: true });
    const b = toTensorOrNull(c.inputs.bias, { requiresGrad: true });
    const y = F.batchNorm(x, rm, rv, w, b, c.training, c.momentum, c.eps);
    assertClose(t, y, c.output, `${c.name} output`);
    y.backward(toTensor(c.gradOutput));
    assertClose(t, x.grad, c.grads.x, `${c.name} grad x`);
    if (c.grads.weight) assertClose(t, w?.grad, c.grads.weight, `${c.name} grad weight`);
    if (c.grads.bias) assertClose(t, b?.grad, c.grads.bias, `${c.name} grad bias`);
    if (c.runningMean) assertClose(t, rm, c.runningMean, `${c.name} runningMean after`);
    if (c.runningVar) assertClose(t, rv, c.runningVar, `${c.name} runningVar after`);
  });
}

// ---------------------------------------------------------------- primitives

const P = fx.primitives;

for (const c of P.stats) {
  test(`parity batchnorm primitive: ${c.name}`, (t) => {
    // the record is [mean, var, count, tag]: the fixture's [2C+1], then the tag given
    const stats = F.batchNormStats(toTensor(c.x), 4242).toArray() as Float32Array;
    t.is(stats.length, c.stats.data.length + 1, `${c.name} record of 2C+2`);
    assertClose(t, stats.subarray(0, c.stats.data.length), c.stats, `${c.name} stats`);
    t.is(stats[c.stats.data.length], 4242, `${c.name} tag column`);
  });
}

for (const c of P.merge) {
  test(`parity batchnorm primitive: ${c.name}`, (t) => {
    const rm = toTensorOrNull(c.runningMean);
    const rv = toTensorOrNull(c.runningVar);
    const r = F.batchNormMergeStats(toTensor(c.stats), c.eps, rm, rv, c.factor);
    assertClose(t, r.mean, c.mean, `${c.name} mean`);
    assertClose(t, r.invstd, c.invstd, `${c.name} invstd`);
    assertCloseScalar(t, r.count, c.count, `${c.name} count`);
    if (c.runningMeanAfter) assertClose(t, rm, c.runningMeanAfter, `${c.name} runningMean after`);
    if (c.runningVarAfter) assertClose(t, rv, c.runningVarAfter, `${c.name} runningVar after`);
  });

  // The same merge fed by batchNormStats of each rank's batch, an empty one included.
  test(`parity batchnorm primitive: ${c.name} from batchNormStats of each rank`, (t) => {
    const rows = c.rankInputs.map((x) => F.batchNormStats(toTensor(x), 7));
    const cc = (c.stats.shape[1] - 1) / 2;
    rows.forEach((r, i) => {
      const want = c.stats.data[i * c.stats.shape[1] + 2 * cc];
      t.is((r.toArray() as Float32Array)[2 * cc], want, `rank ${i} count`);
      t.is((r.toArray() as Float32Array)[2 * cc + 1], 7, `rank ${i} tag`);
    });
    // tagged rows [R, 2C+2]: the merge reads them with stride 2C+2
    const r = F.batchNormMergeStats(hostStack(rows), c.eps, null, null, c.factor);
    assertClose(t, r.mean, c.mean, `${c.name} mean`);
    assertClose(t, r.invstd, c.invstd, `${c.name} invstd`);
    assertCloseScalar(t, r.count, c.count, `${c.name} count`);
  });
}

for (const c of P.elemt) {
  test(`parity batchnorm primitive: ${c.name}`, (t) => {
    const y = F.batchNormElemt(toTensor(c.x), toTensor(c.mean), toTensor(c.invstd), toTensorOrNull(c.weight),
      toTensorOrNull(c.bias));
    assertClose(t, y, c.output, `${c.name} output`);
  });
}

for (const c of P.backwardReduce) {
  test(`parity batchnorm primitive: ${c.name}`, (t) => {
    const r = F.batchNormBackwardReduce(toTensor(c.dy), toTensor(c.x), toTensor(c.mean), toTensor(c.invstd),
      c.needWeightGrad);
    assertClose(t, r.sums, c.sums, `${c.name} sums`);
    if (c.needWeightGrad) {
      assertClose(t, r.gradWeight, c.gradWeight!, `${c.name} gradWeight`);
      assertClose(t, r.gradBias, c.gradBias!, `${c.name} gradBias`);
    } else {
      t.is(r.gradWeight, null);
      t.is(r.gradBias, null);
    }
  });
}

for (const c of P.backwardElemt) {
  test(`parity batchnorm primitive: ${c.name}`, (t) => {
    const dx = F.batchNormBackwardElemt(toTensor(c.dy), toTensor(c.x), toTensor(c.mean), toTensor(c.invstd),
      toTensorOrNull(c.weight), toTensor(c.sums), countTensor(c.count));
    assertClose(t, dx, c.gradInput, `${c.name} grad input`);
  });
}

// SyncBatchNorm's recipe over emulated ranks (collectives done on the host) equals
// PyTorch's BatchNorm over the concatenated batch, empty ranks included.
for (const c of P.syncEmulation) {
  test(`parity batchnorm primitive: ${c.name}`, (t) => {
    const xs = c.rankInputs.map((x) => toTensor(x));
    const w = toTensor(c.weight);
    const b = toTensor(c.bias);
    const { mean, invstd, count } = F.batchNormMergeStats(hostStack(xs.map((x) => F.batchNormStats(x))), c.eps,
      null, null, 0);
    xs.forEach((x, r) => assertClose(t, F.batchNormElemt(x, mean, invstd, w, b), c.rankOutputs[r], `rank ${r} output`));

    const dys = c.rankGradOutputs.map((g) => toTensor(g));
    const reds = xs.map((x, r) => F.batchNormBackwardReduce(dys[r], x, mean, invstd, true));
    const sums = tensor(hostSum(reds.map((red) => red.sums)), { device });
    xs.forEach((x, r) => assertClose(t, F.batchNormBackwardElemt(dys[r], x, mean, invstd, w, sums, count),
      c.rankGradInputs[r], `rank ${r} grad input`));
    // Weight/bias grads stay local per rank; their sum is the global gradient.
    assertClose(t, hostSum(reds.map((red) => red.gradWeight!)), c.gradWeight, 'gradWeight (sum over ranks)');
    assertClose(t, hostSum(reds.map((red) => red.gradBias!)), c.gradBias, 'gradBias (sum over ranks)');
  });
}
