import type { Backend } from '../backend.js';
import { noGrad } from '../autograd.js';
import { layoutAware } from '../memory-format.js';
import { contiguous } from './shape.js';
import { fmt } from '../shape.js';
import type { Tensor } from '../tensor.js';

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
  if (t.ndim < 4 || t.isContiguous(ref.memoryFormat)) return t;
  return noGrad(() => contiguous(t, ref.memoryFormat));
}
