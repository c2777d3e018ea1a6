import type { Backend } from '../backend.js';
import { noGrad } from '../autograd.js';
import { layoutAware, type MemoryFormat } from '../memory-format.js';
import { cast, contiguous } from './shape.js';
import { fmt } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { type DType, isFloatDType, isHalfDType } from '../dtype.js';

/**
 * Checks that every tensor is float32 and on one device; returns that device's backend.
 * The memory-format guard: an op that does not read channels-last storage itself
 * (memory-format.ts, layoutAware) is lent a row-major copy of each channels-last
 * input, which its handle() calls then return (Tensor.handle refuses the raw one).
 */
export function floatInputs(op: string, ...ts: (Tensor | null | undefined)[]): Backend {
  let first: Tensor | null = null;
  const aware = layoutAware(op);
  for (const t of ts) {
    if (!t) continue;
    const s = t.storage(op);
    if (!aware && t.ndim >= 4 && !t.isContiguous()) t._lendRowMajor(op);
    if (s.dtype !== 'float32') throw new Error(`${op}: expected a float32 tensor, got ${s.dtype} of shape ${fmt(t.shape)}`);
    if (first && !first.device.equals(s.device)) {
      throw new Error(`${op}: tensors are on different devices (${first.device} and ${s.device})`);
    }
    first ??= t;
  }
  if (!first) throw new Error(`${op}: no tensor input`);
  return first.storage(op).backend;
}

export function expectRank(op: string, t: Tensor, ranks: readonly number[], what = 'input'): void {
  if (!ranks.includes(t.ndim)) {
    const want = ranks.length === 1 ? `${ranks[0]}D` : `${ranks.join('D, ')}D`;
    throw new Error(`${op}: expected ${want} ${what}, got ${t.ndim}D ${what} of shape ${fmt(t.shape)}`);
  }
}

export function finite(op: string, name: string, v: number, { positive = false } = {}): number {
  if (!Number.isFinite(v) || (positive && v <= 0)) {
    throw new Error(`${op}: ${name} must be a finite${positive ? ' positive' : ''} number, got ${v}`);
  }
  return v;
}

/**
 * `t` in the storage order of `ref` (a gradient for its tensor, or dy for a
 * kernel that walks x and dy together): `t` itself when it already is, else a
 * copy the caller disposes.
 */
export function inLayoutOf(t: Tensor, ref: Tensor): Tensor {
  return inFormat(t, ref.memoryFormat);
}

/** `t` in `format` (itself when it already is); backward rules pass a format read at forward. */
export function inFormat(t: Tensor, format: MemoryFormat): Tensor {
  if (t.ndim < 4 || t.isContiguous(format)) return t;
  return noGrad(() => contiguous(t, format));
}

/**
 * Batch norm's operands (PyTorch's mixed rule): `big` (x, dy) share one float dtype,
 * float32, float16 or bfloat16; `small` (statistics, records, weight, bias) are float32.
 * All on one device. Returns the backend and the big operands' dtype.
 */
export function bnInputs(op: string, big: readonly (Tensor | null | undefined)[],
  small: readonly (Tensor | null | undefined)[] = []): { backend: Backend; dtype: DType } {
  let dtype: DType | null = null;
  let first: Tensor | null = null;
  for (const t of big) {
    if (!t) continue;
    const d = t.storage(op).dtype;
    if (!isFloatDType(d)) throw new Error(`${op}: expected a float32, float16 or bfloat16 tensor, got ${d} of shape ${fmt(t.shape)}`);
    if (dtype !== null && d !== dtype) {
      throw new Error(`${op}: the input and its gradient must have one dtype, got ${dtype} and ${d}`);
    }
    dtype = d;
    first ??= t;
  }
  for (const t of small) {
    if (!t) continue;
    const d = t.storage(op).dtype;
    if (d !== 'float32') throw new Error(`${op}: expected a float32 tensor (statistics, weight, bias), got ${d} of shape ${fmt(t.shape)}`);
  }
  for (const t of [...big, ...small]) {
    if (!t) continue;
    if (first && !first.device.equals(t.device)) {
      throw new Error(`${op}: tensors are on different devices (${first.device} and ${t.device})`);
    }
    first ??= t;
  }
  if (!first || dtype === null) throw new Error(`${op}: no tensor input`);
  return { backend: first.storage(op).backend, dtype };
}

/** The batch-norm kernels that have float16 / bfloat16 variants (Backend's bnXxxBf16 / bnXxxF16). */
type BnKernelName = 'bnStats' | 'bnStatsSums' | 'bnElemt' | 'bnBackwardReduce' | 'bnBackwardElemt';

/** `name`'s kernel for x of `dtype`, bound to the backend; a backend without it is told by name. */
export function bnKernel<K extends BnKernelName>(backend: Backend, name: K, dtype: DType, op: string):
  NonNullable<Backend[K]> {
  const key = dtype === 'float32' ? name : `${name}${dtype === 'bfloat16' ? 'Bf16' : 'F16'}`;
  const fn = (backend as unknown as Record<string, unknown>)[key] as ((...a: unknown[]) => void) | undefined;
  if (typeof fn !== 'function') {
    throw new Error(`${op}: the ${backend.deviceType} backend has no ${dtype} batch-norm kernels (${key})`);
  }
  return fn.bind(backend) as NonNullable<Backend[K]>;
}

/** Whether any of the tensors is float16 or bfloat16. */
export function hasHalf(...ts: readonly (Tensor | null | undefined)[]): boolean {
  // a released tensor is left to the op's own checks, which name the op
  for (const t of ts) if (t && !t.isReleased && isHalfDType(t.dtype)) return true;
  return false;
}

/**
 * An op on float16 / bfloat16 inputs with no half kernel of its own: the inputs cast to
 * float32 (recorded casts, so each input's gradient comes back in its dtype), the float32
 * op, and its result rounded once to the inputs' dtype (PyTorch's promotion: one half type
 * when every float input has it, float32 when they are mixed). Sums and products therefore
 * accumulate in float32, as PyTorch's CPU kernels do for bfloat16 in many paths. Costs a
 * float32 copy of each half input; batch norm and the casts have real half kernels.
 */
export function viaFloat32<A extends readonly (Tensor | null | undefined)[]>(op: string, inputs: A,
  fn: (...f32: { [K in keyof A]: A[K] }) => Tensor): Tensor {
  let dtype: DType | null = null;
  for (const t of inputs) {
    if (!t) continue;
    const d = t.dtype;
    if (!isFloatDType(d)) continue; // integer operands (class targets) pass through
    dtype = dtype === null || dtype === d ? d : 'float32';
  }
  const casted = inputs.map((t) => (t && isHalfDType(t.dtype) ? cast(t, 'float32') : t)) as unknown as { [K in keyof A]: A[K] };
  const y = fn(...casted);
  const out = dtype && dtype !== 'float32' && y.dtype === 'float32' ? cast(y, dtype) : y;
  // the float32 copies and result are intermediates like any op's: released with the step
  // (a gradient rule may still read an input it did not save)
  void op;
  return out;
}

