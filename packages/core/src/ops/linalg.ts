import { fmt } from '../shape.js';
import { recordOp } from '../autograd.js';
import { empty, type Tensor } from '../tensor.js';
import { add } from './elementwise.js';
import { reshape } from './shape.js';
import { floatInputs, hasHalf, viaFloat32 } from './util.js';
import { autocastDtype, castFloat, withoutAutocast } from '../amp/autocast.js';

/** c = op(a) @ op(b) for [batch, m, k] x [batch, k, n] (batch 1 for matrices), one gemm call. */
function gemm(a: Tensor, b: Tensor, transA: boolean, transB: boolean, batch: number,
  m: number, n: number, k: number): Tensor {
  const backend = floatInputs('matmul', a, b);
  const c = empty(batch > 1 ? [batch, m, n] : [m, n], 'float32', a.device);
  backend.gemm(c.handle('matmul'), a.handle('matmul'), b.handle('matmul'), transA, transB, m, n, k, 1, 0,
    transA ? m : k, transB ? k : n, n, batch, m * k, k * n, m * n);
  return c;
}

/** 2D @ 2D, or batched 3D @ 3D with equal batch sizes. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  const low = autocastDtype(a, b); // autocast: in the low-precision dtype
  if (low) return withoutAutocast(() => matmul(castFloat(a, low), castFloat(b, low)));
  // half inputs: the float32 GEMM (float32 accumulation), the result rounded once
  if (hasHalf(a, b)) return viaFloat32('matmul', [a, b], (a32, b32) => matmul(a32, b32));
  const bad = () => new Error(`matmul: shapes ${fmt(a.shape)} and ${fmt(b.shape)} do not match`);
  if (a.ndim === 2 && b.ndim === 2) {
    const [m, k] = a.shape;
    const [k2, n] = b.shape;
    if (k !== k2) throw new Error(`matmul: shapes ${fmt(a.shape)} and ${fmt(b.shape)} do not match (${k} != ${k2})`);
    const out = gemm(a, b, false, false, 1, m, n, k);
    return recordOp(out, 'matmul', [a, b], [a, b], (g, [sa, sb], needs) => [
      needs[0] ? gemm(g, sb, false, true, 1, m, k, n) : null,
      needs[1] ? gemm(sa, g, true, false, 1, k, n, m) : null,
    ]);
  }
  if (a.ndim === 3 && b.ndim === 3) {
    const [batch, m, k] = a.shape;
    const [batch2, k2, n] = b.shape;
    if (batch !== batch2 || k !== k2) throw bad();
    const out = gemm(a, b, false, false, batch, m, n, k);
    return recordOp(out, 'matmul', [a, b], [a, b], (g, [sa, sb], needs) => [
      needs[0] ? reshape(gemm(g, sb, false, true, batch, m, k, n), a.shape) : null,
      needs[1] ? reshape(gemm(sa, g, true, false, batch, k, n, m), b.shape) : null,
    ]);
  }
  throw new Error(`matmul: expected 2D @ 2D or 3D @ 3D, got shapes ${fmt(a.shape)} and ${fmt(b.shape)}`);
}

/** y = x @ w^T + b over the last dimension of x (any leading dims). */
export function linear(x: Tensor, w: Tensor, b?: Tensor | null): Tensor {
  const low = autocastDtype(x, w, b);
  if (low) return withoutAutocast(() => linear(castFloat(x, low), castFloat(w, low), castFloat(b, low)));
  if (hasHalf(x, w, b)) return viaFloat32('linear', [x, w, b], (x32, w32, b32) => linear(x32!, w32!, b32));
  if (w.ndim !== 2 || x.ndim < 1 || x.shape[x.ndim - 1] !== w.shape[1]) {
    throw new Error(`linear: input ${fmt(x.shape)} does not match weight ${fmt(w.shape)} (expected last dim ${w.shape[1]})`);
  }
  if (b && (b.ndim !== 1 || b.shape[0] !== w.shape[0])) {
    throw new Error(`linear: bias ${fmt(b.shape)} does not match weight ${fmt(w.shape)}`);
  }
  const [outF, inF] = w.shape;
  const rows = x.numel / inF;
  const x2 = reshape(x, [rows, inF]);
  const y = gemm(x2, w, false, true, 1, rows, outF, inF);
  // Only what a needed gradient reads is saved: no weight without an input gradient, no input without a weight one.
  const yr = recordOp(y, 'linear', [x2, w], [x.requiresGrad ? w : null, w.requiresGrad ? x2 : null],
    (g, [sw, sx], needs) => [
      needs[0] ? gemm(g, sw!, false, false, 1, rows, inF, outF) : null,
      needs[1] ? gemm(g, sx!, true, false, 1, outF, inF, rows) : null,
    ]);
  const withBias = b ? add(yr, b) : yr;
  return reshape(withBias, [...x.shape.slice(0, -1), outF]);
}

