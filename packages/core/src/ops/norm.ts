import { fmt } from '../shape.js';
import { recordOp } from '../autograd.js';
import { empty, type Tensor } from '../tensor.js';
import { finite, floatInputs, hasHalf, viaFloat32 } from './util.js';

/**
 * LayerNorm and GroupNorm both normalise contiguous rows of the input: `rows` rows
 * of `len` values each, and the affine parameter of element p of row r is
 * a = (r % groups) * (len / inner) + p / inner (LayerNorm: groups 1, inner 1; GroupNorm:
 * the channel). One fused kernel each way (bk_row_norm_f32 and its backward): the
 * forward reads x twice and writes y; the backward reads dy and x and writes dx, with
 * the weight and bias gradients in the same pass.
 */
interface RowNorm {
  op: string;
  rows: number;
  len: number;
  groups: number;
  inner: number;
}

function rowNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number, g: RowNorm): Tensor {
  const { op, rows, len, groups, inner } = g;
  const backend = floatInputs(op, x, weight, bias);
  finite(op, 'eps', eps, { positive: true });
  const mean = empty([rows], 'float32', x.device);
  const rstd = empty([rows], 'float32', x.device);
  const y = empty(x.shape, 'float32', x.device);
  if (x.numel > 0) {
    backend.rowNorm(y.handle(op), mean.handle(op), rstd.handle(op), x.handle(op), weight?.handle(op) ?? null,
      bias?.handle(op) ?? null, rows, len, groups, inner, eps);
  }
  // The rule reads x and the statistics, and the weight only for the input gradient.
  const out = recordOp(y, op, [x, weight, bias], [x, x.requiresGrad ? weight : null, mean, rstd],
    (dy, [sx, sw, smean, srstd], needs) => {
      floatInputs(op, dy, sx, sw); // row-major copies of channels-last ones (the kernel reads row-major)
      const dx = needs[0] ? empty(x.shape, 'float32', dy.device) : null;
      const dw = needs[1] ? empty(weight!.shape, 'float32', dy.device) : null;
      const db = needs[2] ? empty(bias!.shape, 'float32', dy.device) : null;
      if (x.numel > 0) {
        backend.rowNormBackward(dx?.handle(op) ?? null, dw?.handle(op) ?? null, db?.handle(op) ?? null, dy.handle(op),
          sx!.handle(op), smean!.handle(op), srstd!.handle(op), sw?.handle(op) ?? null, rows, len, groups, inner);
      } else {
        // An empty batch: the parameters get zero gradients (as PyTorch).
        for (const t of [dw, db]) if (t) backend.fill(t.handle(op), t.numel, 0);
      }
      return [dx, dw, db];
    });
  // The node holds its own references to what it saved.
  mean.dispose();
  rstd.dispose();
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
  if (hasHalf(x, weight, bias)) { // float32 kernel, rounded once
    return viaFloat32(op, [x, weight, bias], (x32, w32, b32) => layerNorm(x32!, normalizedShape, w32, b32, eps));
  }
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
  return rowNorm(x, weight, bias, eps, { op, rows, len, groups: 1, inner: 1 });
}

/**
 * PyTorch's F.group_norm: the C channels of [N, C, *] in `numGroups` groups of
 * C / numGroups, each group of each sample normalised over its channels and
 * positions; then `* weight + bias` per channel (both [C]).
 */
export function groupNorm(x: Tensor, numGroups: number, weight: Tensor | null = null, bias: Tensor | null = null,
  eps = 1e-5): Tensor {
  const op = 'groupNorm';
  if (hasHalf(x, weight, bias)) { // float32 kernel, rounded once
    return viaFloat32(op, [x, weight, bias], (x32, w32, b32) => groupNorm(x32!, numGroups, w32, b32, eps));
  }
  if (x.ndim < 2) throw new Error(`${op}: expected an input of at least 2 dimensions [N, C, ...], got ${fmt(x.shape)}`);
  const [n, c] = x.shape;
  if (!Number.isInteger(numGroups) || numGroups < 1 || c % numGroups) {
    throw new Error(`${op}: numGroups=${numGroups} must be a positive integer dividing the ${c} channels of input ${fmt(x.shape)}`);
  }
  affineVector(op, 'weight', weight, [c]);
  affineVector(op, 'bias', bias, [c]);
  const hw = x.shape.slice(2).reduce((a, b) => a * b, 1);
  return rowNorm(x, weight, bias, eps, { op, rows: n * numGroups, len: (c / numGroups) * hw, groups: numGroups, inner: hw });
}
