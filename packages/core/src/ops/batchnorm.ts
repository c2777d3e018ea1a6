import { fmt } from '../shape.js';
import { recordOp } from '../autograd.js';
import { empty, full, type Tensor } from '../tensor.js';
import { noGrad } from '../autograd.js';
import type { DType } from '../dtype.js';
import { bnInputs, bnKernel, floatInputs, finite, inLayoutOf } from './util.js';
import { cast, castInto } from './shape.js';

/**
 * Batch normalisation as the primitives SyncBatchNorm composes around its
 * collectives (PyTorch's batch_norm_stats / gather_stats / elemt /
 * backward_reduce / backward_elemt), and plain batchNorm built from them.
 * An input [N, C, *] is seen as [n, c, hw]; a channels-last one, stored as a
 * row-major [N*H*W, C] matrix, as [N*H*W, C, 1]: the same kernels, no transposes.
 *
 * Dtypes, PyTorch's mixed rule: x (and dy) float32, float16 or bfloat16; statistics,
 * records, sums and count always float32 (the kernels accumulate in float32 / double);
 * weight, bias and running statistics float32 or x's dtype; y and dx in x's dtype,
 * the weight's and bias's gradients in theirs.
 */

/** t as float32 for a kernel: t itself, or an unrecorded copy the caller disposes. */
function asFloat32(t: Tensor | null): Tensor | null {
  return t === null || t.dtype === 'float32' ? t : noGrad(() => cast(t, 'float32'));
}

/** dy in x's float dtype: dy itself, or an unrecorded copy the caller disposes. */
function inDtypeOf(dy: Tensor, x: Tensor): Tensor {
  const d = x.dtype;
  return dy.dtype === d ? dy : noGrad(() => cast(dy, d));
}

/**
 * A weight or bias gradient (float32 from the kernels) in the parameter's dtype `want`
 * (PyTorch's rule: gradients have their tensor's dtype); consumes g.
 */
export function bnGradInDtype(g: Tensor | null, want: DType | undefined): Tensor | null {
  if (!g || !want || want === g.dtype) return g;
  const r = noGrad(() => cast(g, want));
  g.dispose();
  return r;
}

function disposeCopy(copy: Tensor | null, orig: Tensor | null): void {
  if (copy !== orig) copy?.dispose();
}

/** weight, bias and running statistics: float32 or x's dtype. */
function paramDtypes(op: string, dtype: DType, ts: readonly (readonly [string, Tensor | null])[]): void {
  for (const [name, t] of ts) {
    if (t && t.dtype !== 'float32' && t.dtype !== dtype) {
      throw new Error(`${op}: ${name} must be float32 or the input's ${dtype}, got ${t.dtype}`);
    }
  }
}
export function bnLayout(op: string, x: Tensor): { n: number; c: number; hw: number } {
  if (x.ndim < 2) throw new Error(`${op}: expected an input of at least 2 dimensions [N, C, ...], got ${fmt(x.shape)}`);
  const [n, c] = x.shape;
  const hw = x.shape.slice(2).reduce((a, b) => a * b, 1);
  return x.isContiguous() ? { n, c, hw } : { n: n * hw, c, hw: 1 };
}

function channelVector(op: string, name: string, t: Tensor | null, c: number): void {
  if (t && (t.ndim !== 1 || t.shape[0] !== c)) {
    throw new Error(`${op}: ${name} of shape ${fmt(t.shape)} does not match ${c} channels`);
  }
}

/**
 * Per-channel [mean(C), biased var(C), count, tag] of x, by Welford: the record ranks
 * exchange (2C+2). `tag` names the layer (a float32-exact number, written as given),
 * so that ranks can check they gathered records of the same one.
 */
export function batchNormStats(x: Tensor, tag = 0): Tensor {
  const op = 'batchNormStats';
  const { backend, dtype } = bnInputs(op, [x]);
  finite(op, 'tag', tag);
  const { n, c, hw } = bnLayout(op, x);
  const stats = empty([2 * c + 2], 'float32', x.device);
  bnKernel(backend, 'bnStats', dtype, op)(stats.handle(op), x.handle(op), n, c, hw, tag);
  return stats;
}

/**
 * The channels and row stride of stats records [R, W] (or one record [W]) by their
 * width W: even W is tagged records [mean(C), var(C), count, tag] (C = (W-2)/2), as
 * batchNormStats makes them; odd W is untagged [mean(C), var(C), count] (C = (W-1)/2).
 * Either way the stride is W: the merge reads the rows where they lie.
 */
export function bnRecordLayout(op: string, stats: Tensor): { ranks: number; c: number; stride: number } {
  const width = stats.ndim === 0 ? 0 : stats.shape[stats.ndim - 1];
  if (stats.ndim < 1 || stats.ndim > 2 || width < 1) {
    throw new Error(`${op}: expected stats of shape [R, 2C+2] (tagged) or [R, 2C+1], got ${fmt(stats.shape)}`);
  }
  const ranks = stats.ndim === 1 ? 1 : stats.shape[0];
  const c = width % 2 === 0 ? (width - 2) / 2 : (width - 1) / 2;
  return { ranks, c, stride: width };
}

export interface MergedStats {
  mean: Tensor;
  invstd: Tensor;
  /** The global count, a one-element tensor on the device (no host sync needed). */
  count: Tensor;
}

/**
 * Merges stats records [R, 2C+2] (tagged, as batchNormStats makes them: the tag
 * column is not read) or [R, 2C+1] (see bnRecordLayout; ranks with count 0 are
 * skipped) and, when
 * running buffers are given, updates them in place with `factor`, the
 * variance unbiased by the global count.
 */
export function batchNormMergeStats(stats: Tensor, eps: number, runningMean: Tensor | null,
  runningVar: Tensor | null, factor: number): MergedStats {
  const op = 'batchNormMergeStats';
  return withFloat32Running(op, runningMean, runningVar, (rm, rv) =>
    mergeStats(op, stats, eps, rm, rv, factor));
}

/**
 * Runs a merge on float32 running statistics: half-type buffers (a same-dtype layer's) are
 * updated through float32 copies, rounded back once, in place.
 */
function withFloat32Running(op: string, runningMean: Tensor | null, runningVar: Tensor | null,
  merge: (rm: Tensor | null, rv: Tensor | null) => MergedStats): MergedStats {
  const rm = asFloat32(runningMean), rv = asFloat32(runningVar);
  const out = merge(rm, rv);
  if (rm !== runningMean && rm) castInto(runningMean!, rm, op);
  if (rv !== runningVar && rv) castInto(runningVar!, rv, op);
  disposeCopy(rm, runningMean);
  disposeCopy(rv, runningVar);
  return out;
}

function mergeStats(op: string, stats: Tensor, eps: number, runningMean: Tensor | null,
  runningVar: Tensor | null, factor: number): MergedStats {
  const backend = floatInputs(op, stats, runningMean, runningVar);
  finite(op, 'eps', eps, { positive: true });
  finite(op, 'momentum factor', factor);
  const { ranks, c, stride } = bnRecordLayout(op, stats);
  channelVector(op, 'runningMean', runningMean, c);
  channelVector(op, 'runningVar', runningVar, c);
  const mean = empty([c], 'float32', stats.device);
  const invstd = empty([c], 'float32', stats.device);
  const count = empty([1], 'float32', stats.device);
  backend.bnMergeStats(mean.handle(op), invstd.handle(op), count.handle(op), stats.handle(op), ranks, c, stride,
    eps, runningMean?.handle(op) ?? null, runningVar?.handle(op) ?? null, factor);
  return { mean, invstd, count };
}

/**
 * The record of SyncBatchNorm's 'allReduce' exchange, [2C + 1 + ranks]: per channel
 * sum(x - shift) and sum((x - shift)^2), the count, then `ranks` tag slots holding
 * `tag` in slot `rank` and 0 elsewhere. Summed over the ranks (one sum all-reduce) it
 * is the group's shifted sums, count, and every rank's tag in its slot. `shift` [C]
 * must be the same on every rank (null: 0); the closer to the mean, the fewer digits
 * the sums lose in float32.
 */
export function batchNormStatsSums(x: Tensor, shift: Tensor | null, ranks: number, rank: number, tag = 0): Tensor {
  const op = 'batchNormStatsSums';
  const { backend, dtype } = bnInputs(op, [x], [shift]);
  finite(op, 'tag', tag);
  if (!Number.isInteger(ranks) || ranks < 1 || !Number.isInteger(rank) || rank < 0 || rank >= ranks) {
    throw new Error(`${op}: rank ${rank} is not in [0, ${ranks})`);
  }
  const { n, c, hw } = bnLayout(op, x);
  if (shift && shift.numel < c) throw new Error(`${op}: shift of shape ${fmt(shift.shape)} has fewer than ${c} values`);
  const sums = empty([2 * c + 1 + ranks], 'float32', x.device);
  bnKernel(backend, 'bnStatsSums', dtype, op)(sums.handle(op), x.handle(op), shift?.handle(op) ?? null, n, c, hw, ranks, rank, tag);
  return sums;
}

/**
 * Merges an all-reduced batchNormStatsSums record (its first 2C + 1 values): mean =
 * shift + S1/N, biased var = (S2 - S1^2/N)/N, running buffers as batchNormMergeStats.
 * `shift` (its first C values) is then set to the merged mean, in place, when N > 0.
 */
export function batchNormMergeSums(sums: Tensor, shift: Tensor, c: number, eps: number, runningMean: Tensor | null,
  runningVar: Tensor | null, factor: number): MergedStats {
  const op = 'batchNormMergeSums';
  return withFloat32Running(op, runningMean, runningVar, (rm, rv) =>
    mergeSums(op, sums, shift, c, eps, rm, rv, factor));
}

function mergeSums(op: string, sums: Tensor, shift: Tensor, c: number, eps: number, runningMean: Tensor | null,
  runningVar: Tensor | null, factor: number): MergedStats {
  const backend = floatInputs(op, sums, shift, runningMean, runningVar);
  finite(op, 'eps', eps, { positive: true });
  finite(op, 'momentum factor', factor);
  if (sums.numel < 2 * c + 1) throw new Error(`${op}: sums of shape ${fmt(sums.shape)} hold fewer than 2C + 1 = ${2 * c + 1} values`);
  if (shift.numel < c) throw new Error(`${op}: shift of shape ${fmt(shift.shape)} has fewer than ${c} values`);
  channelVector(op, 'runningMean', runningMean, c);
  channelVector(op, 'runningVar', runningVar, c);
  const mean = empty([c], 'float32', sums.device);
  const invstd = empty([c], 'float32', sums.device);
  const count = empty([1], 'float32', sums.device);
  backend.bnMergeSums(mean.handle(op), invstd.handle(op), count.handle(op), shift.handle(op), sums.handle(op), c, eps,
    runningMean?.handle(op) ?? null, runningVar?.handle(op) ?? null, factor);
  return { mean, invstd, count };
}

/** y = (x - mean) * invstd * weight + bias */
export function batchNormElemt(x: Tensor, mean: Tensor, invstd: Tensor, weight: Tensor | null,
  bias: Tensor | null): Tensor {
  const op = 'batchNormElemt';
  const { dtype } = bnInputs(op, [x], [mean, invstd]);
  paramDtypes(op, dtype, [['weight', weight], ['bias', bias]]);
  const { n, c, hw } = bnLayout(op, x);
  for (const [name, t] of [['mean', mean], ['invstd', invstd], ['weight', weight], ['bias', bias]] as const) {
    channelVector(op, name, t, c);
  }
  const w = asFloat32(weight), b = asFloat32(bias); // the kernels read float32 per-channel operands
  const { backend } = bnInputs(op, [x], [mean, invstd, w, b]);
  const y = empty(x.shape, dtype, x.device, x.memoryFormat);
  bnKernel(backend, 'bnElemt', dtype, op)(y.handle(op), x.handle(op), mean.handle(op), invstd.handle(op),
    w?.handle(op) ?? null, b?.handle(op) ?? null, n, c, hw);
  disposeCopy(w, weight);
  disposeCopy(b, bias);
  return y;
}

export interface BackwardSums {
  /** [2C]: sum_dy, sum_dy_xmu: the record ranks all-reduce. */
  sums: Tensor;
  gradWeight: Tensor | null;
  gradBias: Tensor | null;
}

export function batchNormBackwardReduce(dy: Tensor, x: Tensor, mean: Tensor, invstd: Tensor,
  needWeightGrad: boolean): BackwardSums {
  const op = 'batchNormBackwardReduce';
  const dyOrig = dy;
  dy = inDtypeOf(dy, x); // a float32 seed may reach a half output
  const { backend, dtype } = bnInputs(op, [dy, x], [mean, invstd]);
  const { n, c, hw } = bnLayout(op, x);
  if (dy.numel !== x.numel) throw new Error(`${op}: gradient ${fmt(dy.shape)} does not match input ${fmt(x.shape)}`);
  const dyIn = dy;
  dy = inLayoutOf(dy, x); // the kernel walks dy in x's order
  const sums = empty([2 * c], 'float32', x.device);
  const gradWeight = needWeightGrad ? empty([c], 'float32', x.device) : null;
  const gradBias = needWeightGrad ? empty([c], 'float32', x.device) : null;
  bnKernel(backend, 'bnBackwardReduce', dtype, op)(sums.handle(op), gradWeight?.handle(op) ?? null, gradBias?.handle(op) ?? null,
    dy.handle(op), x.handle(op), mean.handle(op), invstd.handle(op), n, c, hw);
  if (dy !== dyIn) dy.dispose();
  if (dyIn !== dyOrig) dyIn.dispose();
  return { sums, gradWeight, gradBias };
}

/** dx from the (possibly all-reduced) sums and the global count. */
export function batchNormBackwardElemt(dy: Tensor, x: Tensor, mean: Tensor, invstd: Tensor,
  weight: Tensor | null, sums: Tensor, count: Tensor): Tensor {
  const op = 'batchNormBackwardElemt';
  const dyOrig = dy;
  dy = inDtypeOf(dy, x);
  const { dtype } = bnInputs(op, [dy, x], [mean, invstd, sums, count]);
  paramDtypes(op, dtype, [['weight', weight]]);
  const w = asFloat32(weight);
  const { backend } = bnInputs(op, [dy, x], [mean, invstd, w, sums, count]);
  const { n, c, hw } = bnLayout(op, x);
  const dx = empty(x.shape, dtype, x.device, x.memoryFormat);
  const d = inLayoutOf(dy, x); // the kernel walks dy in x's order
  bnKernel(backend, 'bnBackwardElemt', dtype, op)(dx.handle(op), d.handle(op), x.handle(op), mean.handle(op),
    invstd.handle(op), w?.handle(op) ?? null, sums.handle(op), count.handle(op), n, c, hw);
  if (d !== dy) d.dispose();
  disposeCopy(w, weight);
  disposeCopy(dy, dyOrig);
  return dx;
}

export function batchNormInvstd(variance: Tensor, eps: number): Tensor {
  const op = 'batchNormInvstd';
  const backend = floatInputs(op, variance);
  const invstd = empty(variance.shape, 'float32', variance.device);
  backend.bnInvstd(invstd.handle(op), variance.handle(op), variance.numel, eps);
  return invstd;
}

/**
 * PyTorch's F.batch_norm: batch statistics when training or when there are no
 * running statistics, otherwise the running ones. `momentum` is the factor of
 * the running-average update (the module turns null into 1/numBatchesTracked).
 */
export function batchNorm(x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null,
  weight: Tensor | null, bias: Tensor | null, training: boolean, momentum: number, eps: number): Tensor {
  const op = 'batchNorm';
  const { dtype } = bnInputs(op, [x]);
  paramDtypes(op, dtype, [['runningMean', runningMean], ['runningVar', runningVar], ['weight', weight], ['bias', bias]]);
  const { n, c, hw } = bnLayout(op, x);
  finite(op, 'eps', eps, { positive: true });
  finite(op, 'momentum', momentum);
  for (const [name, t] of [['runningMean', runningMean], ['runningVar', runningVar], ['weight', weight],
    ['bias', bias]] as const) channelVector(op, name, t, c);
  const useBatchStats = training || runningMean === null || runningVar === null;

  let mean: Tensor;
  let invstd: Tensor;
  let count: Tensor;
  if (useBatchStats) {
    // PyTorch's rule: exactly one value per channel is an error; an empty batch is not (its running stats stay).
    if (n * hw === 1) {
      throw new Error(`${op}: expected more than 1 value per channel when training, got input of shape ${fmt(x.shape)}`);
    }
    const update = training && runningMean !== null && runningVar !== null;
    const stats = batchNormStats(x);
    ({ mean, invstd, count } = batchNormMergeStats(stats, eps, update ? runningMean : null,
      update ? runningVar : null, momentum));
    stats.dispose();
  } else {
    mean = asFloat32(runningMean)!;
    const rv = asFloat32(runningVar)!;
    invstd = batchNormInvstd(rv, eps);
    disposeCopy(rv, runningVar);
    count = full([1], 1, { device: x.device });
  }
  const y = batchNormElemt(x, mean, invstd, weight, bias);
  const weightDtype = weight?.dtype, biasDtype = bias?.dtype;
  // One node for the whole layer: backward is one reduction and one elementwise pass.
  return recordOp(y, op, [x, weight, bias], [x, weight, mean, invstd, count],
    (dyIn, [sx, sw, smean, sinvstd, scount], needs) => {
      // dy in x's dtype (a float32 seed may reach a half output)
      const dy = inDtypeOf(dyIn, sx!);
      const red = batchNormBackwardReduce(dy, sx!, smean!, sinvstd!, needs[1] || needs[2]);
      // With running statistics the mean and variance are constants: only dy * invstd * w flows back.
      if (!useBatchStats) red.sums.storage(op).backend.fill(red.sums.handle(op), 2 * c, 0);
      const dx = needs[0] ? batchNormBackwardElemt(dy, sx!, smean!, sinvstd!, sw, red.sums, scount!) : null;
      red.sums.dispose();
      if (dy !== dyIn) dy.dispose();
      // the weight's and bias's gradients in their own dtype (float32, or x's)
      return [dx, needs[1] ? bnGradInDtype(red.gradWeight, weightDtype) : null,
        needs[2] ? bnGradInDtype(red.gradBias, biasDtype) : null];
    });
}
