/** Shape arithmetic shared by the ops: sizes, strides, broadcasting, axes. */

export type Shape = readonly number[];

export function fmt(shape: Shape): string {
  return `[${shape.join(',')}]`;
}

export function numelOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function checkShape(op: string, shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`${op}: invalid shape ${fmt(shape)}`);
  }
}

/** Row-major strides of a contiguous tensor. */
export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

/** NumPy broadcasting of two shapes; throws naming the op and both shapes. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`${op}: shapes ${fmt(a)} and ${fmt(b)} cannot be broadcast (dimension ${i}: ${da} vs ${db})`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides that read a contiguous tensor of `shape` as if it had `outShape` (0 on broadcast dims). */
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const own = contiguousStrides(shape);
  const offset = outShape.length - shape.length;
  return outShape.map((_, i) => {
    const j = i - offset;
    return j < 0 || shape[j] === 1 ? 0 : own[j];
  });
}

/** Normalises a possibly negative axis; throws naming the op when out of range. */
export function normAxis(op: string, axis: number, shape: Shape): number {
  const ndim = shape.length;
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= ndim) {
    throw new Error(`${op}: dimension ${axis} out of range for a tensor of shape ${fmt(shape)} (rank ${ndim})`);
  }
  return a;
}

/** Resolves a single -1 in a requested shape against `numel`. */
export function inferShape(op: string, from: Shape, shape: Shape): number[] {
  const numel = numelOf(from);
  const out = [...shape];
  const free = out.indexOf(-1);
  if (free !== out.lastIndexOf(-1)) throw new Error(`${op}: only one dimension can be -1, got ${fmt(shape)}`);
  if (free >= 0) {
    const rest = numelOf(out.filter((_, i) => i !== free));
    if (rest === 0 || numel % rest !== 0) {
      throw new Error(`${op}: shape ${fmt(shape)} is invalid for input of shape ${fmt(from)}`);
    }
    out[free] = numel / rest;
  }
  checkShape(op, out);
  if (numelOf(out) !== numel) {
    throw new Error(`${op}: shape ${fmt(shape)} is invalid for input of shape ${fmt(from)} (${numel} elements)`);
  }
  return out;
}

/** A pair parameter (number or [h, w]) as [h, w]. */
export function pair(op: string, name: string, v: number | readonly number[]): [number, number] {
  const p: [number, number] = typeof v === 'number' ? [v, v] : [v[0], v[1]];
  if (p.length !== 2 || !p.every((x) => Number.isInteger(x))) {
    throw new Error(`${op}: ${name} must be an integer or a pair of integers, got ${JSON.stringify(v)}`);
  }
  return p;
}
