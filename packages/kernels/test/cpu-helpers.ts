/**
 * Comparisons shared by the CPU kernel tests (cpu-*.test.ts): results against
 * double-precision references.
 */
import type { ExecutionContext } from 'ava';

/** |got - want| <= atol + rtol * |want| everywhere (NaN fails). */
export function close(t: ExecutionContext, got: ArrayLike<number>, want: ArrayLike<number>, what: string,
  rtol = 1e-5, atol = 1e-6): void {
  if (got.length !== want.length) {
    t.fail(`${what}: length ${got.length}, expected ${want.length}`);
    return;
  }
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    const tol = atol + rtol * Math.abs(want[i]!);
    if (!(err <= tol)) {
      t.fail(`${what}: element ${i}: got ${got[i]}, expected ${want[i]} (|diff| ${err.toExponential(3)} > ${tol.toExponential(3)})`);
      return;
    }
  }
  t.pass(what);
}

/**
 * For sums of products (GEMM, conv): |got - want| <= rtol * scale, scale = sum of |terms|
 * per element, the natural bound for float32 accumulation (cancellation can make the
 * result itself small while every term is large).
 */
export function closeScaled(t: ExecutionContext, got: ArrayLike<number>, want: ArrayLike<number>, scale: ArrayLike<number>,
  what: string, rtol = 1e-5): void {
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    const tol = rtol * scale[i]! + 1e-30;
    if (!(err <= tol)) {
      t.fail(`${what}: element ${i}: got ${got[i]}, expected ${want[i]} (|diff| ${err.toExponential(3)} > ${tol.toExponential(3)})`);
      return;
    }
  }
  t.is(got.length, want.length, `${what}: length`);
}

export const F = (xs: ArrayLike<number>) => Float32Array.from(xs);
