import { fmt, normAxis, numelOf, type Shape } from '../shape.js';
import { recordOp } from '../autograd.js';
import { empty, type Tensor } from '../tensor.js';
import { affine, expand } from './elementwise.js';
import { reshape } from './shape.js';
import { floatInputs, hasHalf, viaFloat32 } from './util.js';

function normDims(op: string, x: Tensor, dims?: number | readonly number[]): number[] {
  const list = dims === undefined ? x.shape.map((_, i) => i) : typeof dims === 'number' ? [dims] : [...dims];
  const axes = [...new Set(list.map((d) => normAxis(op, d, x.shape)))].sort((a, b) => a - b);
  if (axes.length !== list.length) throw new Error(`${op}: repeated dimension in ${JSON.stringify(dims)}`);
  return axes;
}

/** Sums over `axes` (sorted, unique), keeping them as size-1 dimensions. */
function sumKeep(x: Tensor, axes: readonly number[]): Tensor {
  const backend = floatInputs('sum', x);
  let cur = x;
  let shape = [...x.shape];
  // Consecutive axes reduce in one kernel call; other runs follow, last run first.
  let i = axes.length - 1;
  while (i >= 0) {
    let j = i;
    while (j > 0 && axes[j - 1] === axes[j] - 1) j--;
    const first = axes[j];
    const last = axes[i];
    const outer = numelOf(shape.slice(0, first));
    const reduce = numelOf(shape.slice(first, last + 1));
    const inner = numelOf(shape.slice(last + 1));
    const next = [...shape.slice(0, first), ...shape.slice(first, last + 1).map(() => 1), ...shape.slice(last + 1)];
    const out = empty(next, 'float32', x.device);
    backend.sum(out.handle('sum'), cur.handle('sum'), outer, reduce, inner);
    if (cur !== x) cur.dispose();
    cur = out;
    shape = next;
    i = j - 1;
  }
  return cur === x ? reshape(x, x.shape) : cur;
}

export function sum(x: Tensor, dims?: number | readonly number[], keepDim = false): Tensor {
  // half inputs: summed in float32, the result rounded once
  if (hasHalf(x)) return viaFloat32('sum', [x], (x32) => sum(x32, dims, keepDim));
  const axes = normDims('sum', x, dims);
  const kept = sumKeep(x, axes);
  const shape = keepDim ? kept.shape : x.shape.filter((_, i) => !axes.includes(i));
  const out = keepDim ? kept : reshape(kept, shape);
  const keptShape = kept.shape;
  return recordOp(out, 'sum', [x], [], (g) => [expand(reshape(g, keptShape), x.shape)]);
}

export function mean(x: Tensor, dims?: number | readonly number[], keepDim = false): Tensor {
  if (hasHalf(x)) return viaFloat32('mean', [x], (x32) => mean(x32, dims, keepDim));
  const axes = normDims('mean', x, dims);
  const count = numelOf(axes.map((a) => x.shape[a]));
  if (count === 0) throw new Error(`mean: reducing over an empty dimension of shape ${fmt(x.shape)}`);
  return affine(sum(x, axes, keepDim), 1 / count, 0, 'mean');
}

/** Sums a broadcast gradient back down to `shape` (the reverse of broadcasting). */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const offset = g.ndim - shape.length;
  const axes: number[] = [];
  g.shape.forEach((d, i) => {
    if (i < offset || (shape[i - offset] === 1 && d !== 1)) axes.push(i);
  });
  return reshape(axes.length ? sumKeep(g, axes) : g, shape);
}
