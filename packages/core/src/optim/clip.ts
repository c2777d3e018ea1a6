import { noGrad } from '../autograd.js';
import { scope } from '../lifetime.js';
import { Tensor } from '../tensor.js';
import { mul, neg, relu } from '../ops/elementwise.js';
import { sum } from '../ops/reduce.js';

const f = Math.fround;

/** sum(|g|^p) of one gradient: p = 2 and 1 by float32 kernels on its device, others on the host in double. */
function powerSum(g: Tensor, p: number): number {
  if (p === 2) return noGrad(() => scope(() => sum(mul(g, g)).item()));
  if (p === 1) return noGrad(() => scope(() => sum(relu(g)).item() + sum(relu(neg(g))).item()));
  // No |x|^p or max kernel: read it back (one copy from a device) and reduce in double.
  const host = g.toArray() as Float32Array;
  let acc = 0;
  if (p === Infinity) for (const x of host) acc = Number.isNaN(x) || Number.isNaN(acc) ? NaN : Math.max(acc, Math.abs(x));
  else if (p === 0) for (const x of host) acc += x !== 0 ? 1 : 0;
  else for (const x of host) acc += Math.abs(x) ** p;
  return acc;
}

/** A norm from its power sum, rounded to float32 (PyTorch's per-tensor norms are float32 tensors). */
const rootOf = (s: number, p: number): number => f(p === Infinity || p === 0 ? s : p === 1 ? s : s ** (1 / p));

/**
 * torch.nn.utils.clip_grad_norm_ (PyTorch 1.13): the norm of every gradient together (as one
 * vector), then each gradient scaled in place by min(1, maxNorm / (total + 1e-6)), in float32 as
 * PyTorch. Returns the total norm (before clipping). Parameters without a gradient are skipped;
 * none at all gives 0. `normType`: any p >= 0 or Infinity. A non-finite total is an error with
 * `errorIfNonfinite`, else every gradient is scaled by it (NaN), as in PyTorch.
 */
export function clipGradNorm(params: Iterable<Tensor> | Tensor, maxNorm: number, normType = 2,
  opts: { errorIfNonfinite?: boolean } = {}): number {
  if (!Number.isFinite(maxNorm) && maxNorm !== Infinity) throw new Error(`clipGradNorm: maxNorm must be a number, got ${maxNorm}`);
  if (!(normType >= 0)) throw new Error(`clipGradNorm: normType must be >= 0 or Infinity, got ${normType}`);
  const list = params instanceof Tensor ? [params] : [...params];
  const grads = list.map((p) => p.grad).filter((g): g is Tensor => g !== null);
  if (grads.length === 0) return 0;
  // Each gradient's norm (a float32 value), then the norm of those norms.
  const norms = grads.map((g) => rootOf(powerSum(g, normType), normType));
  let total: number;
  if (normType === Infinity) total = norms.reduce((a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b)));
  else total = rootOf(norms.reduce((a, n) => a + (normType === 0 ? (n !== 0 ? 1 : 0) : Math.abs(n) ** normType), 0), normType);
  if (opts.errorIfNonfinite && !Number.isFinite(total)) {
    throw new Error(`clipGradNorm: the total norm of order ${normType} of the gradients is non-finite (${total}), ` +
      'so it cannot be clipped; pass errorIfNonfinite: false to scale the gradients by it anyway');
  }
  // PyTorch: max_norm / (total + 1e-6) is reciprocal(total + 1e-6) * max_norm, in float32, clamped to 1
  // (Math.min keeps NaN, as torch.clamp).
  const coef = Math.min(f(f(1 / f(total + f(1e-6))) * f(maxNorm)), 1);
  for (const g of grads) {
    const s = g.storage('clipGradNorm');
    s.backend.affine(s.handle, s.handle, g.numel, coef, 0);
  }
  return total;
}
