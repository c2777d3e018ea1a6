/**
 * The reduction loops of the threads backend, over the group's shared
 * memory. Ranks are folded in order 0..n-1, and each partial result is
 * rounded to the element type (float32 sums through Math.fround), so every
 * rank, path and size computes bit-identical results: those of a
 * sequential loop in the dtype, and of the SIMD kernels of ./simd.ts.
 */
import { REDOP_CODES } from './layout.js';

export type NumArray = Float32Array | Float64Array | Int32Array | Uint8Array;

/** What one reduction reads and where it writes (shared by reduceNum and reduceBig). */
export interface ReduceSpan {
  /** Where the result starts in `dst` (see `scatter`). */
  dstOff: number;
  /** Elements to reduce. */
  count: number;
  /** Rank 0's first element in the source. */
  base: number;
  /** Elements between one rank's slot and the next. */
  stride: number;
  /** Ranks to fold. */
  n: number;
  /** A REDOP_CODES value. */
  redop: number;
  /** Start of the reduced slice (used with `scatter`). */
  lo: number;
  /** 1: `dst` is the shared result slot, written from dstOff + lo; 0: the caller's buffer. */
  scatter: number;
}

/**
 * dst[dstOff + i] = op over ranks r of v[base + r*stride + i], for i < count
 * (the fields of `span`).
 * With `scatter` = 1, `dstOff` is an element index into `dst` (the shared
 * result slot) and the reduced slice starts at `lo`; otherwise `dst` is the
 * caller's buffer at 0.
 */
export function reduceNum(v: NumArray, dst: NumArray, span: ReduceSpan): void {
  const { dstOff, count, base, stride, n, redop, lo, scatter } = span;
  const out = scatter ? dstOff + lo : dstOff;
  if (redop === REDOP_CODES.sum) {
    if (n === 2) {
      const b = base + stride;
      for (let i = 0; i < count; i++) dst[out + i] = v[base + i]! + v[b + i]!;
    } else if (v instanceof Float32Array) {
      for (let i = 0; i < count; i++) {
        let s = v[base + i]!;
        for (let r = 1; r < n; r++) s = Math.fround(s + v[base + r * stride + i]!);
        dst[out + i] = s;
      }
    } else {
      // float64 sums round as they go; integer ones are exact in a double and wrap on the store.
      for (let i = 0; i < count; i++) {
        let s = v[base + i]!;
        for (let r = 1; r < n; r++) s += v[base + r * stride + i]!;
        dst[out + i] = s;
      }
    }
  } else if (redop === REDOP_CODES.avg) {
    // Averages the exact (double) sum, so integer sums cannot wrap before the division.
    const isInt = !(v instanceof Float32Array || v instanceof Float64Array);
    const f32 = v instanceof Float32Array;
    for (let i = 0; i < count; i++) {
      let s = v[base + i]!;
      for (let r = 1; r < n; r++) s = f32 ? Math.fround(s + v[base + r * stride + i]!) : s + v[base + r * stride + i]!;
      dst[out + i] = isInt ? Math.trunc(s / n) : s / n;
    }
  } else if (redop === REDOP_CODES.max) {
    for (let i = 0; i < count; i++) {
      let s = v[base + i]!;
      for (let r = 1; r < n; r++) s = Math.max(s, v[base + r * stride + i]!);
      dst[out + i] = s;
    }
  } else {
    for (let i = 0; i < count; i++) {
      let s = v[base + i]!;
      for (let r = 1; r < n; r++) s = Math.min(s, v[base + r * stride + i]!);
      dst[out + i] = s;
    }
  }
}

/** reduceNum for int64 (BigInt arithmetic; avg truncates). */
export function reduceBig(v: BigInt64Array, dst: BigInt64Array, span: ReduceSpan): void {
  const { dstOff, count, base, stride, n, redop, lo, scatter } = span;
  const out = scatter ? dstOff + lo : dstOff;
  const bn = BigInt(n);
  for (let i = 0; i < count; i++) {
    let s = v[base + i]!;
    for (let r = 1; r < n; r++) {
      const x = v[base + r * stride + i]!;
      if (redop === REDOP_CODES.max) s = x > s ? x : s;
      else if (redop === REDOP_CODES.min) s = x < s ? x : s;
      else s += x;
    }
    dst[out + i] = redop === REDOP_CODES.avg ? s / bn : s;
  }
}
