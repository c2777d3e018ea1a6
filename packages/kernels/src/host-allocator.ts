/**
 * The CPU's caching allocator. A released storage's buffer goes back to a free
 * list of its size class and the next request of that class reuses it: a
 * training loop's steady state touches no fresh pages and makes no garbage.
 * Buffers start on a 64-byte boundary (a cache line, an AVX-512 vector).
 */
import os from 'node:os';
import koffi from 'koffi';
import { bytesPerElement, type DType, type HostArray } from '@bagua/core';

const ALIGN = 64;

/** Size classes: 64-byte steps up to 1 KiB, then four per power of two (at most 25% slack). */
export function sizeClass(bytes: number): number {
  if (bytes <= 1024) return Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 2);
  return Math.ceil(bytes / step) * step;
}

function view(dtype: DType, buffer: ArrayBuffer, offset: number, numel: number): HostArray {
  switch (dtype) {
    case 'float32': return new Float32Array(buffer, offset, numel);
    case 'int32': return new Int32Array(buffer, offset, numel);
    case 'int64': return new BigInt64Array(buffer, offset, numel);
    case 'uint8': return new Uint8Array(buffer, offset, numel);
    case 'float16':
    case 'bfloat16': return new Uint16Array(buffer, offset, numel);
  }
}

export class HostAllocator {
  /** Free buffers by size class. */
  private readonly cache = new Map<number, ArrayBuffer[]>();
  /** Bytes of every buffer obtained and not yet collected or emptied (live + cached). */
  private reservedBytes = 0;
  private cachedBytes = 0;
  private systemAllocs = 0;
  /** Where each buffer's 64-byte aligned start lies (found once, when the buffer is made). */
  private readonly alignedStart = new WeakMap<ArrayBuffer, number>();

  alloc(dtype: DType, numel: number): HostArray {
    if (!Number.isSafeInteger(numel) || numel < 0) throw new Error(`alloc: numel must be an integer >= 0 (got ${numel})`);
    const bytes = numel * bytesPerElement(dtype);
    const cls = sizeClass(bytes);
    let buffer = this.cache.get(cls)?.pop();
    if (buffer) {
      this.cachedBytes -= buffer.byteLength;
    } else {
      buffer = this.fresh(dtype, numel, cls);
    }
    return view(dtype, buffer, this.alignedStart.get(buffer)!, numel);
  }

  private fresh(dtype: DType, numel: number, cls: number): ArrayBuffer {
    const need = cls + ALIGN;
    const total = os.totalmem();
    // Refused before allocating: an attempt can get the process killed instead of an error.
    if (need > total || need > os.freemem() + this.cachedBytes) {
      if (need <= total) this.emptyCache(); // the cache may be what stands in the way
      if (need > total || need > os.freemem()) {
        throw new Error(`alloc: ${numel} ${dtype} elements (${gib(need)}) do not fit this machine's memory ` +
          `(${gib(os.freemem())} free of ${gib(total)})`);
      }
    }
    try {
      const buffer = new ArrayBuffer(need);
      const misalign = Number(koffi.address(new Uint8Array(buffer, 0, 1)) % BigInt(ALIGN));
      this.alignedStart.set(buffer, misalign === 0 ? 0 : ALIGN - misalign);
      this.reservedBytes += need;
      this.systemAllocs++;
      return buffer;
    } catch (e) {
      throw new Error(`alloc: ${numel} ${dtype} elements (${gib(need)}) could not be allocated: ${(e as Error).message}`);
    }
  }

  free(array: HostArray): void {
    const buffer = array.buffer as ArrayBuffer;
    const cls = buffer.byteLength - ALIGN;
    let list = this.cache.get(cls);
    if (!list) this.cache.set(cls, (list = []));
    list.push(buffer);
    this.cachedBytes += buffer.byteLength;
  }

  /** The safety net's token: the class, not the buffer (collected with its tensors). */
  token(array: HostArray): number {
    return array.buffer.byteLength;
  }

  reclaim(bufferBytes: number): void {
    this.reservedBytes -= bufferBytes;
  }

  stats(): { reserved: number; systemAllocs: number; cached: number } {
    return { reserved: this.reservedBytes, systemAllocs: this.systemAllocs, cached: this.cachedBytes };
  }

  emptyCache(): void {
    this.reservedBytes -= this.cachedBytes;
    this.cache.clear();
    this.cachedBytes = 0;
  }
}

function gib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

