/**
 * The large all-reduce of the threads backend: a reduce-scatter and an
 * all-gather through shared memory, one slot-sized chunk at a time, with one
 * phase per chunk.
 *
 * Chunk j goes through three steps, each in the segment after a phase:
 *   put     every rank copies its chunk j into its slot of area a(j);
 *   reduce  (next segment) every rank reduces its own 64-byte-aligned slice
 *           of chunk j over the n slots, in rank order, into the result slot
 *           of area a(j) (SIMD kernels of ./simd.ts where they apply);
 *   take    (next segment) every rank copies the whole result into its buffer.
 * A segment does take(j-1), reduce(j), put(j+1), so K chunks cost K+1 phases
 * (the old scheme took two per chunk) and every step runs over data a few
 * hundred KiB large that was just written: it stays in cache.
 *
 * Areas alternate with the phase parity: a(j) = (phase at start + j) & 1.
 * Chunk j+2 reuses area a(j): its put writes rank slots while chunk j's
 * result slot is still being taken (disjoint), and its reduce writes the
 * result slot only after the phase that every take of chunk j precedes.
 * The last take runs after the collective's last phase, so the next
 * collective's first writes, into the same area, must avoid result slots
 * (layout.ts).
 */
import type { HostBuffer } from '../process-group.js';
import type { DType } from '../buffers.js';
import { OpCode, REDOP_CODES } from './layout.js';
import type { PhaseBarrier } from './phase.js';
import { reduceBig, reduceNum, type NumArray, type ReduceSpan } from './reduce.js';
import type { SimdKernels } from './simd.js';
import type { SharedSlots } from './slots.js';

export class PipelinedAllReduce {
  // Reused for every JS reduction: no allocation per chunk.
  private readonly span: ReduceSpan = { dstOff: 0, count: 0, base: 0, stride: 0, n: 0, redop: 0, lo: 0, scatter: 1 };

  constructor(
    private readonly sync: PhaseBarrier,
    private readonly s: SharedSlots,
    private readonly rank: number,
    private readonly n: number,
    private readonly simd: SimdKernels | null,
  ) {}

  /** All-reduces h in place (count * bpe above the flat path's limit; dtype and op already checked). */
  run(h: HostBuffer, dt: DType, dcode: number, redop: number): void {
    const { s, sync } = this;
    const bpe = h.BYTES_PER_ELEMENT;
    const stride = s.chunkBytes / bpe;
    const count = h.length;
    const chunks = Math.ceil(count / stride);
    const p0 = sync.phase;
    this.put(h, 0, stride, p0 & 1);
    sync.writeDesc(OpCode.ALL_REDUCE, dcode, count, 0, redop);
    sync.sync('allReduce');
    sync.checkDesc('allReduce');
    for (let j = 0; j < chunks; j++) {
      const area = (p0 + j) & 1;
      this.reduce(dt, redop, area, stride, Math.min(stride, count - j * stride));
      if (j > 0) this.take(h, j - 1, stride, area ^ 1);
      if (j + 1 < chunks) this.put(h, j + 1, stride, area ^ 1);
      sync.sync('allReduce');
    }
    this.take(h, chunks - 1, stride, (p0 + chunks - 1) & 1);
  }

  private put(h: HostBuffer, j: number, stride: number, area: number): void {
    const off = j * stride;
    const end = Math.min(h.length, off + stride);
    this.s.put(h.subarray(off, end) as HostBuffer, this.s.areaElem(area, h.BYTES_PER_ELEMENT) + this.rank * stride);
  }

  private take(h: HostBuffer, j: number, stride: number, area: number): void {
    const off = j * stride;
    const result = this.s.areaElem(area, h.BYTES_PER_ELEMENT) + this.n * stride;
    this.s.take(h, off, result, Math.min(stride, h.length - off));
  }

  /** Reduces this rank's slice of a chunk of c elements in `area` into the area's result slot. */
  private reduce(dt: DType, redop: number, area: number, stride: number, c: number): void {
    const { s, n } = this;
    const bpe = dt === 'uint8' ? 1 : dt === 'float64' || dt === 'int64' ? 8 : 4;
    const unit = 64 / bpe; // slices start on cache lines: no line has two writers
    const per = Math.ceil(c / n / unit) * unit;
    const lo = Math.min(c, this.rank * per);
    const hi = Math.min(c, lo + per);
    if (hi <= lo) return;
    const base = s.areaElem(area, bpe);
    let from = lo; // where the JS loops take over
    const kernel = this.simd?.binary(dt, redop) ?? null;
    if (kernel) {
      const whole = lo + Math.floor(((hi - lo) * bpe) / 16) * (16 / bpe); // whole vectors
      const src = (base + lo) * bpe;
      const dst = src + n * s.chunkBytes;
      const end = dst + (whole - lo) * bpe;
      kernel(dst, src, src + s.chunkBytes, end);
      for (let r = 2; r < n; r++) kernel(dst, dst, src + r * s.chunkBytes, end);
      if (redop === REDOP_CODES.avg) this.simd!.divide(dt)!(dst, end, n);
      from = whole;
    }
    if (from === hi) return;
    const span = this.span;
    span.dstOff = base + n * stride;
    span.count = hi - from;
    span.base = base + from;
    span.stride = stride;
    span.n = n;
    span.redop = redop;
    span.lo = from;
    if (dt === 'int64') reduceBig(s.i64, s.i64, span);
    else {
      const v: NumArray = s.numView(dt);
      reduceNum(v, v, span);
    }
  }
}
