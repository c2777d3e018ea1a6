import { fmt } from '../shape.js';
import { recordOp } from '../autograd.js';
import { empty, type Tensor } from '../tensor.js';
import { mul, sub } from './elementwise.js';
import { mean, sum } from './reduce.js';
import { logSoftmax } from './softmax.js';
import { expectRank, floatInputs } from './util.js';

export type Reduction = 'mean' | 'sum' | 'none';

function reduce(op: string, t: Tensor, reduction: Reduction): Tensor {
  switch (reduction) {
    case 'mean': return mean(t);
    case 'sum': return sum(t);
    case 'none': return t;
    default: throw new Error(`${op}: unknown reduction '${reduction as string}' (expected 'mean', 'sum' or 'none')`);
  }
}

export function mseLoss(input: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  if (input.ndim !== target.ndim || input.shape.some((d, i) => d !== target.shape[i])) {
    throw new Error(`mseLoss: input ${fmt(input.shape)} and target ${fmt(target.shape)} differ in shape`);
  }
  const d = sub(input, target);
  return reduce('mseLoss', mul(d, d), opts.reduction ?? 'mean');
}

/** Negative log-likelihood per row of [N, C] log-probabilities, for int32 class targets. */
export function nllLoss(logp: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  const op = 'nllLoss';
  const backend = floatInputs(op, logp);
  expectRank(op, logp, [2]);
  const [rows, cols] = logp.shape;
  if (target.dtype !== 'int32') throw new Error(`${op}: expected int32 class targets, got ${target.dtype}`);
  if (target.ndim !== 1 || target.shape[0] !== rows) {
    throw new Error(`${op}: target ${fmt(target.shape)} does not match input ${fmt(logp.shape)} (expected [${rows}])`);
  }
  if (!target.device.equals(logp.device)) throw new Error(`${op}: target is on ${target.device}, input on ${logp.device}`);
  const out = empty([rows], 'float32', logp.device);
  backend.nllLoss(out.handle(op), logp.handle(op), target.handle(op), rows, cols);
  const perRow = recordOp(out, op, [logp], [target], (g, [t]) => {
    const d = empty(logp.shape, 'float32', g.device);
    backend.nllLossBackward(d.handle(op), g.handle(op), t!.handle(op), rows, cols);
    return [d];
  });
  return reduce(op, perRow, opts.reduction ?? 'mean');
}

export function crossEntropy(logits: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  expectRank('crossEntropy', logits, [2]);
  return nllLoss(logSoftmax(logits, 1), target, opts);
}
