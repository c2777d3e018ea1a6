/**
 * GEMM cases shared by the oneDNN comparison and the per-ISA check (which runs them in
 * child processes started with BAGUA_CPU_ISA): every transpose, padded leading
 * dimensions, batches, alpha and beta.
 */
import { randn } from '@bagua/testing';
import type { CpuBackend } from '../src/cpu-backend.js';

export interface GemmCase { m: number; n: number; k: number; ta: boolean; tb: boolean; pad: number; batch: number; alpha: number; beta: number }

export const gemmCases: GemmCase[] = [
  { m: 7, n: 5, k: 3, ta: false, tb: false, pad: 0, batch: 1, alpha: 1, beta: 0 },
  { m: 33, n: 17, k: 65, ta: true, tb: false, pad: 3, batch: 1, alpha: 0.5, beta: 1 },
  { m: 64, n: 96, k: 129, ta: false, tb: true, pad: 1, batch: 1, alpha: -2, beta: 0.25 },
  { m: 13, n: 300, k: 31, ta: true, tb: true, pad: 5, batch: 3, alpha: 1, beta: -1 },
  { m: 1, n: 257, k: 1000, ta: false, tb: false, pad: 0, batch: 5, alpha: 1, beta: 0 },
  { m: 200, n: 1, k: 77, ta: false, tb: true, pad: 2, batch: 2, alpha: 1.5, beta: 0 },
  { m: 9, n: 11, k: 4, ta: true, tb: false, pad: 0, batch: 40, alpha: 1, beta: 0.5 },
];

export interface GemmRun {
  /** C before the call. */
  c0: Float32Array;
  /** The product on the given operands. */
  got: Float32Array;
  /** The same product on absolute values: the scale of each element's rounding error. */
  scale: Float32Array;
}

/** Runs case i (inputs seeded by i) on whatever engine the backend uses in this thread. */
export function runGemmCase(be: CpuBackend, i: number): GemmRun {
  const { m, n, k, ta, tb, pad, batch, alpha, beta } = gemmCases[i]!;
  // stored shapes: A is [m, k] or [k, m], B is [k, n] or [n, k], rows padded to the leading dimension
  const [ar, ac] = ta ? [k, m] : [m, k], [br, bc] = tb ? [n, k] : [k, n];
  const lda = ac + pad, ldb = bc + pad, ldc = n + pad;
  const sa = ar * lda + 7, sb = br * ldb + 3, sc = m * ldc + 1;
  const a = randn(batch * sa, 10 + i), b = randn(batch * sb, 20 + i), c0 = randn(batch * sc, 30 + i);
  const run = (av: Float32Array, bv: Float32Array, cv: Float32Array, al: number, bt: number) => {
    const c = cv.slice();
    be.gemm(c, av, bv, ta, tb, m, n, k, al, bt, lda, ldb, ldc, batch, sa, sb, sc);
    return c;
  };
  const abs = (v: Float32Array) => v.map(Math.abs);
  return { c0, got: run(a, b, c0, alpha, beta), scale: run(abs(a), abs(b), abs(c0), Math.abs(alpha), Math.abs(beta)) };
}
