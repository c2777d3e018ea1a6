import type { Backend, Handle } from '../backend.js';
import { contiguousStrides, fmt } from '../shape.js';
import { recordOp } from '../autograd.js';
import { empty, full, type Tensor } from '../tensor.js';
import { sum } from './reduce.js';
import { finite, floatInputs } from './util.js';

/**
 * LayerNorm and GroupNorm both normalise contiguous rows of the input: `rows`
 * rows of `len` values each. Seen as [1, rows, len], that is batch norm with one
 * "channel" per row, so the batch-norm kernels (Welford statistics, the
 * elementwise pass, the two backward passes) do the work; the per-feature affine
 * is a broadcast multiply-add over `affineShape`, where the weight and bias have
 * strides `affineStrides`.
 */
interface RowNorm {
  op: string;
  rows: number;
  len: number;
  /** x seen as a shape in which weight and bias broadcast with `affineStrides`. */
  affineShape: number[];
  affineStrides: number[];
  /** the axes of affineShape that the weight gradient sums over */
  reduceAxes: number[];
}

function rowNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number, g: RowNorm): Tensor {
  const { op, rows, len } = g;
  const backend = floatInputs(op, x, weight, bias);
  finite(op, 'eps', eps, { positive: true });
  const mean = empty([rows], 'float32', x.device);
  const invstd = empty([rows], 'float32', x.device);
  const count = empty([1], 'float32', x.device);
  const y = empty(x.shape, 'float32', x.device);
  if (x.numel > 0) {
    const stats = empty([2 * rows + 2], 'float32', x.device);
    backend.bnStats(stats.handle(op), x.handle(op), 1, rows, len, 0);
    backend.bnMergeStats(mean.handle(op), invstd.handle(op), count.handle(op), stats.handle(op), 1, rows, 2 * rows + 2,
      eps, null, null, 0);
    stats.dispose();
    backend.bnElemt(y.handle(op), x.handle(op), mean.handle(op), invstd.handle(op), null, null, 1, rows, len);
    applyAffine(backend, op, y.handle(op), weight, bias, g);
  }
  // The rule reads x and the statistics (x-hat is recomputed for the weight gradient), and
  // the weight only for the input gradient.
  const out = recordOp(y, op, [x, weight, bias], [x, x.requiresGrad ? weight : null, mean, invstd, count],
    (dy, [sx, sw, smean, sinvstd, scount], needs) => {
      floatInputs(op, dy, sx, sw); // row-major copies of channels-last ones (the kernels read row-major)
      if (x.numel === 0) {
        // An empty batch: nothing flows back, the parameters get zero gradients (as PyTorch).
        const zero = (t: Tensor | null, need: boolean) => (need && t ? full(t.shape, 0, { device: dy.device }) : null);
        return [needs[0] ? empty(x.shape, 'float32', dy.device) : null, zero(weight, needs[1]), zero(bias, needs[2])];
      }
      let gradWeight: Tensor | null = null;
      let gradBias: Tensor | null = null;
      if (needs[1]) {
        const xhat = empty(x.shape, 'float32', dy.device);
        backend.bnElemt(xhat.handle(op), sx!.handle(op), smean!.handle(op), sinvstd!.handle(op), null, null, 1, rows, len);
        const prod = xhat; // dy * x-hat, in place
        backend.binary('mul', prod.handle(op), xhat.handle(op), [1], dy.handle(op), [1], [x.numel]);
        gradWeight = reduceToAffine(prod, g, weight!.shape);
        prod.dispose();
      }
      if (needs[2]) gradBias = reduceToAffine(dy, g, bias!.shape);
      let dx: Tensor | null = null;
      if (needs[0]) {
        // d(x-hat) = dy * weight, then batch norm's input gradient per row (weight 1).
        let dxhat = dy;
        if (sw) {
          dxhat = empty(x.shape, 'float32', dy.device);
          backend.binary('mul', dxhat.handle(op), dy.handle(op), contiguousStrides(g.affineShape), sw.handle(op),
            g.affineStrides, g.affineShape);
        }
        const sums = empty([2 * rows], 'float32', dy.device);
        backend.bnBackwardReduce(sums.handle(op), null, null, dxhat.handle(op), sx!.handle(op), smean!.handle(op),
          sinvstd!.handle(op), 1, rows, len);
        dx = empty(x.shape, 'float32', dy.device);
        backend.bnBackwardElemt(dx.handle(op), dxhat.handle(op), sx!.handle(op), smean!.handle(op),
          sinvstd!.handle(op), null, sums.handle(op), scount!.handle(op), 1, rows, len);
        sums.dispose();
        if (dxhat !== dy) dxhat.dispose();
      }
      return [dx, gradWeight, gradBias];
    });
  // The node holds its own references to what it saved.
  mean.dispose();
  invstd.dispose();
  count.dispose();
  return out;
}

/** y = y * weight + bias in place, weight and bias broadcast over the affine view. */
function applyAffine(backend: Backend, op: string, y: Handle, weight: Tensor | null, bias: Tensor | null,
  g: RowNorm): void {
  const ys = contiguousStrides(g.affineShape);
  if (weight) backend.binary('mul', y, y, ys, weight.handle(op), g.affineStrides, g.affineShape);
  if (bias) backend.binary('add', y, y, ys, bias.handle(op), g.affineStrides, g.affineShape);
}

/** Sums t (of x's shape) over the axes the affine parameters broadcast along. */
function reduceToAffine(t: Tensor, g: RowNorm, shape: readonly number[]): Tensor {
  const view = t.reshape(g.affineShape);
  const s = sum(view, g.reduceAxes);
  const out = s.reshape(shape);
  view.dispose();
  s.dispose();
  return out;
}

function affineVector(op: string, name: string, t: Tensor | null, shape: readonly number[]): void {
  if (t && (t.ndim !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
    throw new Error(`${op}: ${name} of shape ${fmt(t.shape)} does not match ${fmt(shape)}`);
  }
}

/**
 * PyTorch's F.layer_norm: normalises over the last `normalizedShape.length`
 * dimensions (biased variance), then `* weight + bias` (both of normalizedShape).
 */
export function layerNorm(x: Tensor, normalizedShape: number | readonly number[], weight: Tensor | null = null,
  bias: Tensor | null = null, eps = 1e-5): Tensor {
  const op = 'layerNorm';
  const norm = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
  if (norm.length === 0 || norm.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new Error(`${op}: normalizedShape must be a non-empty list of positive integers, got ${fmt(norm)}`);
  }
  const tail = x.shape.slice(x.ndim - norm.length);
  if (x.ndim < norm.length || tail.some((d, i) => d !== norm[i])) {
    throw new Error(`${op}: input of shape ${fmt(x.shape)} does not end with normalizedShape ${fmt(norm)}`);
  }
  affineVector(op, 'weight', weight, norm);
  affineVector(op, 'bias', bias, norm);
  const len = norm.reduce((a, b) => a * b, 1);
  const rows = x.numel / len;
  return rowNorm(x, weight, bias, eps, {
    op, rows, len, affineShape: [rows, len], affineStrides: [0, 1], reduceAxes: [0],
  });
}

/**
 * PyTorch's F.group_norm: the C channels of [N, C, *] in `numGroups` groups of
 * C / numGroups, each group of each sample normalised over its channels and
 * positions; then `* weight + bias` per channel (both [C]).
 */
export function groupNorm(x: Tensor, numGroups: number, weight: Tensor | null = null, bias: Tensor | null = null,
  eps = 1e-5): Tensor {
  const op = 'groupNorm';
  if (x.ndim < 2) throw new Error(`${op}: expected an input of at least 2 dimensions [N, C, ...], got ${fmt(x.shape)}`);
  const [n, c] = x.shape;
  if (!Number.isInteger(numGroups) || numGroups < 1 || c % numGroups) {
    throw new Error(`${op}: numGroups=${numGroups} must be a positive integer dividing the ${c} channels of input ${fmt(x.shape)}`);
  }
  affineVector(op, 'weight', weight, [c]);
  affineVector(op, 'bias', bias, [c]);
  const hw = x.shape.slice(2).reduce((a, b) => a * b, 1);
  return rowNorm(x, weight, bias, eps, {
    op, rows: n * numGroups, len: (c / numGroups) * hw, affineShape: [n, c, hw], affineStrides: [0, 1, 0],
    reduceAxes: [0, 2],
  });
}
