import { fmt } from '../shape.js';
import { noGrad, recordOp } from '../autograd.js';
import { empty, type Tensor } from '../tensor.js';
import { affine, expand, mul, neg, sub } from './elementwise.js';
import { mean, sum } from './reduce.js';
import { expectRank, floatInputs, hasHalf, viaFloat32 } from './util.js';
import { autocastDtype, castFloat, withoutAutocast } from '../amp/autocast.js';

export type Reduction = 'mean' | 'sum' | 'none';

function reduce(op: string, t: Tensor, reduction: Reduction): Tensor {
  switch (reduction) {
    case 'mean': return mean(t);
    case 'sum': return sum(t);
    case 'none': return t;
    default: throw new Error(`${op}: unknown reduction '${reduction as string}' (expected 'mean', 'sum' or 'none')`);
  }
}

/** Mean squared error as one autograd node, which keeps only the difference. */
export function mseLoss(input: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  // autocast: losses in float32
  if (autocastDtype(input, target)) return withoutAutocast(() => mseLoss(castFloat(input, 'float32'), castFloat(target, 'float32'), opts));
  // half inputs: computed in float32, the loss rounded once to the input's dtype
  if (hasHalf(input, target)) return viaFloat32('mseLoss', [input, target], (i32, t32) => mseLoss(i32, t32, opts));
  const op = 'mseLoss';
  if (input.ndim !== target.ndim || input.shape.some((d, i) => d !== target.shape[i])) {
    throw new Error(`${op}: input ${fmt(input.shape)} and target ${fmt(target.shape)} differ in shape`);
  }
  const reduction = opts.reduction ?? 'mean';
  const { diff, out } = noGrad(() => {
    const diff = sub(input, target);
    return { diff, out: reduce(op, mul(diff, diff), reduction) };
  });
  return recordOp(out, op, [input, target], [diff], (g, [d], needs) => {
    // d(loss)/d(input) = 2 (input - target) g, over N elements for the mean.
    const scale = reduction === 'mean' ? 2 / d.numel : 2;
    const dInput = mul(d, affine(g, scale, 0));
    return [needs[0] ? dInput : null, needs[1] ? neg(dInput) : null];
  });
}

/** Checks [N, C] scores against int32 class targets [N]; returns the backend, rows and columns. */
function classTargets(op: string, scores: Tensor, target: Tensor) {
  const backend = floatInputs(op, scores);
  expectRank(op, scores, [2]);
  const [rows, cols] = scores.shape;
  if (target.dtype !== 'int32') throw new Error(`${op}: expected int32 class targets, got ${target.dtype}`);
  if (target.ndim !== 1 || target.shape[0] !== rows) {
    throw new Error(`${op}: target ${fmt(target.shape)} does not match input ${fmt(scores.shape)} (expected [${rows}])`);
  }
  if (!target.device.equals(scores.device)) throw new Error(`${op}: target is on ${target.device}, input on ${scores.device}`);
  return { backend, rows, cols };
}

/** Negative log-likelihood per row of [N, C] log-probabilities, for int32 class targets. */
export function nllLoss(logp: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  if (autocastDtype(logp)) return withoutAutocast(() => nllLoss(castFloat(logp, 'float32'), target, opts));
  if (hasHalf(logp)) return viaFloat32('nllLoss', [logp, target], (l32, t) => nllLoss(l32, t, opts));
  const op = 'nllLoss';
  const { backend, rows, cols } = classTargets(op, logp, target);
  const out = empty([rows], 'float32', logp.device);
  backend.nllLoss(out.handle(op), logp.handle(op), target.handle(op), rows, cols);
  const perRow = recordOp(out, op, [logp], [target], (g, [t]) => {
    const d = empty(logp.shape, 'float32', g.device);
    backend.nllLossBackward(d.handle(op), g.handle(op), t!.handle(op), rows, cols);
    return [d];
  });
  return reduce(op, perRow, opts.reduction ?? 'mean');
}

/**
 * log-softmax and NLL as one autograd node: backward is one NLL scatter and
 * one softmax backward, with no intermediate gradient between them.
 */
export function crossEntropy(logits: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  if (autocastDtype(logits)) return withoutAutocast(() => crossEntropy(castFloat(logits, 'float32'), target, opts));
  if (hasHalf(logits)) return viaFloat32('crossEntropy', [logits, target], (l32, t) => crossEntropy(l32, t, opts));
  const op = 'crossEntropy';
  const reduction = opts.reduction ?? 'mean';
  const { backend, rows, cols } = classTargets(op, logits, target);
  const logp = empty(logits.shape, 'float32', logits.device);
  if (logp.numel) backend.softmax(logp.handle(op), logits.handle(op), rows, cols, true);
  const perRow = empty([rows], 'float32', logits.device);
  backend.nllLoss(perRow.handle(op), logp.handle(op), target.handle(op), rows, cols);
  const out = noGrad(() => reduce(op, perRow, reduction));
  return recordOp(out, op, [logits], [logp, target], (g, [lp, t]) => {
    // The gradient of each row's loss: g itself, or g spread over the rows (sum), scaled by 1/N (mean).
    const perRowGrad = reduction === 'none' ? g : expand(affine(g.reshape([1]), reduction === 'mean' ? 1 / rows : 1, 0), [rows]);
    const dlogp = empty(logits.shape, 'float32', g.device);
    backend.nllLossBackward(dlogp.handle(op), perRowGrad.handle(op), t!.handle(op), rows, cols);
    const dx = empty(logits.shape, 'float32', g.device);
    if (dx.numel) backend.softmaxBackward(dx.handle(op), dlogp.handle(op), lp!.handle(op), rows, cols, true);
    return [dx];
  });
}
