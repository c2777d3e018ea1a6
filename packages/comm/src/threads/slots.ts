/**
 * The data region of a threads group (layout in ./layout.ts): two parity
 * areas of per-rank slots, seen through one typed view per element type.
 */
import type { HostBuffer } from '../process-group.js';
import { hostDType, type DType } from '../buffers.js';
import { areaBytes, ctrlBytes } from './layout.js';
import type { NumArray } from './reduce.js';

export class SharedSlots {
  readonly f32: Float32Array;
  readonly f64: Float64Array;
  readonly i32: Int32Array;
  readonly i64: BigInt64Array;
  readonly u8: Uint8Array;
  /** Bytes per parity area. */
  readonly area: number;
  private readonly dataOff: number; // byte offset of parity area 0

  constructor(sab: SharedArrayBuffer, size: number, readonly chunkBytes: number) {
    this.dataOff = ctrlBytes(size);
    this.area = areaBytes(size, chunkBytes);
    this.f32 = new Float32Array(sab);
    this.f64 = new Float64Array(sab);
    this.i32 = new Int32Array(sab);
    this.i64 = new BigInt64Array(sab);
    this.u8 = new Uint8Array(sab);
  }

  /** Element index (for elements of `bpe` bytes) of parity area `parity` (0 or 1). */
  areaElem(parity: number, bpe: number): number {
    return (this.dataOff + parity * this.area) / bpe;
  }

  numView(dt: DType): NumArray {
    switch (dt) {
      case 'float32':
        return this.f32;
      case 'float64':
        return this.f64;
      case 'int32':
        return this.i32;
      default:
        return this.u8;
    }
  }

  /** Copies src into shared memory at element index `at`. */
  put(src: HostBuffer, at: number): void {
    if (src instanceof BigInt64Array) this.i64.set(src, at);
    else this.numView(hostDType(src)).set(src, at);
  }

  /** Copies `count` elements from shared memory at `from` into dst[at..]. */
  take(dst: HostBuffer, at: number, from: number, count: number): void {
    if (dst instanceof BigInt64Array) dst.set(this.i64.subarray(from, from + count), at);
    else dst.set(this.numView(hostDType(dst)).subarray(from, from + count), at);
  }
}
