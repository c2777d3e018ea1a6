/**
 * The `threads` backend: ranks are worker threads of one process and every
 * collective goes through a SharedArrayBuffer (layout in ./layout.ts).
 *
 * A collective is a sequence of phases. In each phase every rank copies its
 * part into its slot, announces itself (Atomics.add on ARRIVE) and waits until
 * all ranks of the group have arrived at that phase: it spins briefly with
 * Atomics.load (the common case at small sizes), then sleeps in Atomics.wait
 * on WAKE with the remaining timeout. Phases alternate between two data
 * areas, so a fast rank can fill the next one while slow peers still read the
 * last; reaching phase k+2 requires every rank to have finished phase k.
 *
 * The first phase of a collective also publishes a descriptor (op, dtype,
 * count, root, reduction) that every rank checks against its peers', so a
 * rank that calls a different collective fails on every rank instead of
 * corrupting data or hanging; each rank still spends exactly one phase, so the
 * group stays usable afterwards.
 */
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import {
  CollectiveError,
  DEFAULT_TIMEOUT_MS,
  type CommBuffer,
  type HostBuffer,
  type ProcessGroup,
  type ReduceOp,
} from '../process-group.js';
import { allocHost, DTYPE_CODES, hostDType, isDeviceBuffer, type DType } from '../buffers.js';
import {
  ABORT,
  ABORT_INFO,
  ABORT_RANK,
  abortGroup,
  AbortReason,
  ARRIVE,
  areaBytes,
  CHUNK_BYTES,
  createGroupMemory,
  ctrlBytes,
  DESC0,
  DESC1,
  DESC_COUNT,
  DESC_DTYPE,
  DESC_OP,
  DESC_REDOP,
  DESC_ROOT,
  DTYPE_NAMES,
  EXIT,
  LINE,
  MAGIC,
  MAGIC_VALUE,
  OP_NAMES,
  OpCode,
  PHASE,
  rankLine,
  REDOP_CODES,
  REDOP_NAMES,
  SIZE,
  SLEEPERS,
  WAKE,
} from './layout.js';
import type { ThreadsLink } from './link.js';

type NumArray = Float32Array | Float64Array | Int32Array | Uint8Array;

/** All-reduces larger than this (bytes) are reduce-scattered: each rank reduces one slice. */
const FLAT_REDUCE_BYTES = 32 << 10;
/** Longest single Atomics.wait; a belt for wake-ups lost to a dead coordinator. */
const MAX_SLEEP_MS = 1000;

export interface ThreadsGroupOptions {
  sab: SharedArrayBuffer;
  /** Global ranks of the members, sorted. */
  ranks: readonly number[];
  /** This thread's rank in the group. */
  rank: number;
  name: string;
  /** Identifies the group to the coordinator. */
  key: string;
  timeoutMs?: number;
  link?: ThreadsLink | null;
  /** Atomics.load polls before sleeping (default: 1000, about the cost of a futex sleep and wake-up; 50 when ranks outnumber cores). */
  spin?: number;
}

function defaultSpin(size: number): number {
  const env = process.env['BAGUA_THREADS_SPIN'];
  if (env !== undefined && env !== '' && Number.isFinite(Number(env))) return Math.max(0, Number(env));
  // A poll costs ~6 ns, so 1000 polls last about as long as sleeping and being
  // woken (~5-10 us): spinning longer cannot win much and, on a busy machine,
  // takes the core a descheduled peer needs. With more ranks than cores, barely spin.
  return size <= availableParallelism() ? 1000 : 50;
}

export class ThreadsProcessGroup implements ProcessGroup {
  readonly backend = 'threads' as const;
  readonly name: string;
  readonly rank: number;
  readonly size: number;
  readonly ranks: readonly number[];
  timeoutMs: number;

  private readonly key: string;
  private readonly ctrl: Int32Array;
  private readonly link: ThreadsLink | null;
  private readonly spin: number;
  private readonly me: number; // index of this rank's control line
  private readonly chunkBytes: number;
  private readonly dataOff: number; // byte offset of parity area 0
  private readonly area: number; // bytes per parity area
  private readonly f32: Float32Array;
  private readonly f64: Float64Array;
  private readonly i32: Int32Array;
  private readonly i64: BigInt64Array;
  private readonly u8: Uint8Array;
  private readonly globalRank: number;

  private phase = 0; // phases completed (int32, wraps)
  private deadline = 0; // of the current collective; 0 until it first has to sleep
  private groupSeq = 0; // newGroup calls made on this group
  private destroyed = false;

  constructor(opts: ThreadsGroupOptions) {
    const { sab, ranks, rank } = opts;
    const head = new Int32Array(sab, 0, 2 * LINE);
    if (head[MAGIC] !== MAGIC_VALUE) throw new Error('threads: not a group memory block');
    if (head[SIZE] !== ranks.length) {
      throw new Error(`threads: group memory is for ${head[SIZE]} ranks, not ${ranks.length}`);
    }
    this.ranks = Object.freeze([...ranks]);
    this.rank = rank;
    this.size = ranks.length;
    this.globalRank = ranks[rank]!;
    this.name = opts.name;
    this.key = opts.key;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.link = opts.link ?? null;
    this.spin = opts.spin ?? defaultSpin(this.size);
    this.ctrl = new Int32Array(sab, 0, ctrlBytes(this.size) / 4);
    this.me = rankLine(rank);
    this.chunkBytes = head[CHUNK_BYTES]!;
    this.dataOff = ctrlBytes(this.size);
    this.area = areaBytes(this.size, this.chunkBytes);
    this.f32 = new Float32Array(sab);
    this.f64 = new Float64Array(sab);
    this.i32 = new Int32Array(sab);
    this.i64 = new BigInt64Array(sab);
    this.u8 = new Uint8Array(sab);
    // Resume at the phase this rank last reached (non-zero only when a group object is rebuilt).
    this.phase = Atomics.load(this.ctrl, this.me + PHASE);
  }

  // ---------------------------------------------------------------- collectives

  allReduce(buf: CommBuffer, op: ReduceOp = 'sum'): void {
    if (isDeviceBuffer(buf)) {
      const h = buf.toHost();
      this.allReduceHost(h, op);
      buf.fromHost(h);
    } else {
      this.allReduceHost(buf, op);
    }
  }

  allGather(output: CommBuffer, input: CommBuffer): void {
    const hin = isDeviceBuffer(input) ? input.toHost() : input;
    if (isDeviceBuffer(output)) {
      const hout = allocHost(output.dtype, output.length);
      this.allGatherHost(hout, hin);
      output.fromHost(hout);
    } else {
      this.allGatherHost(output, hin);
    }
  }

  broadcast(buf: CommBuffer, root: number): void {
    if (isDeviceBuffer(buf)) {
      // Only the root's contents matter; the others receive into a fresh host array.
      const h = root === this.rank ? buf.toHost() : allocHost(buf.dtype, buf.length);
      this.broadcastHost(h, root);
      if (root !== this.rank) buf.fromHost(h);
    } else {
      this.broadcastHost(buf, root);
    }
  }

  barrier(): void {
    this.begin('barrier');
    if (this.size === 1) return;
    this.writeDesc(OpCode.BARRIER, 0, 0, 0, 0);
    this.sync('barrier');
    this.checkDesc('barrier');
  }

  async newGroup(ranks: readonly number[]): Promise<ProcessGroup | null> {
    this.ensureOpen('newGroup');
    const sorted = [...ranks].sort((a, b) => a - b);
    for (let i = 0; i < sorted.length; i++) {
      const r = sorted[i]!;
      if (!Number.isInteger(r) || !this.ranks.includes(r)) {
        throw new RangeError(`newGroup: rank ${r} is not a member of group '${this.name}' (ranks ${this.ranks.join(', ')})`);
      }
      if (i > 0 && sorted[i - 1] === r) throw new RangeError(`newGroup: rank ${r} listed twice`);
    }
    if (sorted.length === 0) throw new RangeError('newGroup: empty rank list');
    // Every member calls newGroup in the same order (as in PyTorch), so the
    // sequence number names the same group on every rank.
    const key = `${this.key}/${++this.groupSeq}`;
    const mine = sorted.indexOf(this.globalRank);
    if (mine < 0) return null;
    let sab: SharedArrayBuffer;
    let name: string;
    if (sorted.length === 1) {
      sab = createGroupMemory(1, 64);
      name = `group(${sorted[0]})@${key}`;
    } else {
      if (!this.link) {
        throw new Error(
          `newGroup: group '${this.name}' has no coordinator; start the ranks with bagua-launch or runThreads()`,
        );
      }
      const reply = await this.link.request(
        { t: 'newGroup', key, ranks: sorted, rank: this.globalRank, chunkBytes: this.chunkBytes },
        this.timeoutMs,
      );
      sab = reply.sab;
      name = `group(${sorted.join(',')})#${reply.gid}`;
    }
    return new ThreadsProcessGroup({
      sab,
      ranks: sorted,
      rank: mine,
      name,
      key,
      timeoutMs: this.timeoutMs,
      link: this.link,
    });
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.size > 1) this.link?.send({ t: 'release', key: this.key, rank: this.globalRank });
  }

  // ---------------------------------------------------------------- host implementations

  private allReduceHost(h: HostBuffer, op: ReduceOp): void {
    this.begin('allReduce');
    let dt: DType;
    try {
      dt = hostDType(h);
    } catch (e) {
      return this.invalid('allReduce', (e as Error).message);
    }
    const redop = REDOP_CODES[op];
    if (redop === undefined) return this.invalid('allReduce', `unknown reduction '${op}' (sum, avg, max, min)`);
    const count = h.length;
    if (this.size === 1) return; // every reduction of one buffer is the buffer
    const dcode = DTYPE_CODES[dt];
    const bpe = h.BYTES_PER_ELEMENT;
    const n = this.size;
    if (count * bpe <= FLAT_REDUCE_BYTES) {
      // One phase: everyone publishes, everyone reduces all slots (same order on all ranks).
      const base = this.areaElem(bpe);
      const stride = this.chunkBytes / bpe;
      this.put(h, base + this.rank * stride);
      this.writeDesc(OpCode.ALL_REDUCE, dcode, count, 0, redop);
      this.sync('allReduce');
      this.checkDesc('allReduce');
      if (dt === 'int64') reduceBig(this.i64, h as BigInt64Array, 0, count, base, stride, n, redop, 0, 0);
      else reduceNum(this.numView(dt), h as NumArray, 0, count, base, stride, n, redop, 0, 0);
      return;
    }
    // Reduce-scatter then gather, one slot-sized chunk at a time: two phases per chunk.
    const chunkElems = this.chunkBytes / bpe;
    const stride = chunkElems;
    let first = true;
    for (let off = 0; off < count; off += chunkElems) {
      const c = Math.min(chunkElems, count - off);
      const base = this.areaElem(bpe);
      const result = base + n * stride;
      this.put(h.subarray(off, off + c) as HostBuffer, base + this.rank * stride);
      if (first) this.writeDesc(OpCode.ALL_REDUCE, dcode, count, 0, redop);
      this.sync('allReduce');
      if (first) this.checkDesc('allReduce');
      first = false;
      const lo = Math.floor((c * this.rank) / n);
      const hi = Math.floor((c * (this.rank + 1)) / n);
      if (dt === 'int64') reduceBig(this.i64, this.i64, result, hi - lo, base + lo, stride, n, redop, lo, 1);
      else {
        const v = this.numView(dt);
        reduceNum(v, v, result, hi - lo, base + lo, stride, n, redop, lo, 1);
      }
      this.sync('allReduce');
      this.take(h, off, result, c);
    }
  }

  private allGatherHost(out: HostBuffer, input: HostBuffer): void {
    this.begin('allGather');
    let dt: DType;
    try {
      dt = hostDType(input);
      const odt = hostDType(out);
      if (odt !== dt) throw new TypeError(`output is ${odt} but input is ${dt}`);
      if (out.length !== input.length * this.size) {
        throw new RangeError(
          `output has ${out.length} elements, expected size * input = ${this.size} * ${input.length} = ${this.size * input.length}`,
        );
      }
    } catch (e) {
      return this.invalid('allGather', (e as Error).message);
    }
    const count = input.length;
    if (this.size === 1) {
      (out as Float32Array).set(input as Float32Array);
      return;
    }
    const bpe = input.BYTES_PER_ELEMENT;
    const chunkElems = this.chunkBytes / bpe;
    const dcode = DTYPE_CODES[dt];
    let first = true;
    let off = 0;
    do {
      const c = Math.min(chunkElems, count - off);
      const base = this.areaElem(bpe);
      this.put(input.subarray(off, off + c) as HostBuffer, base + this.rank * chunkElems);
      if (first) this.writeDesc(OpCode.ALL_GATHER, dcode, count, 0, 0);
      this.sync('allGather');
      if (first) this.checkDesc('allGather');
      first = false;
      for (let r = 0; r < this.size; r++) {
        if (r === this.rank) (out as Float32Array).set((input as Float32Array).subarray(off, off + c), r * count + off);
        else this.take(out, r * count + off, base + r * chunkElems, c);
      }
      off += c;
    } while (off < count);
  }

  private broadcastHost(h: HostBuffer, root: number): void {
    this.begin('broadcast');
    let dt: DType;
    try {
      dt = hostDType(h);
      if (!Number.isInteger(root) || root < 0 || root >= this.size) {
        throw new RangeError(`root ${root} is not a rank of this group (0..${this.size - 1})`);
      }
    } catch (e) {
      return this.invalid('broadcast', (e as Error).message);
    }
    if (this.size === 1) return;
    const count = h.length;
    const bpe = h.BYTES_PER_ELEMENT;
    const chunkElems = this.area / bpe; // the root may use the whole area
    const dcode = DTYPE_CODES[dt];
    const isRoot = root === this.rank;
    let first = true;
    let off = 0;
    do {
      const c = Math.min(chunkElems, count - off);
      const base = this.areaElem(bpe);
      if (isRoot) this.put(h.subarray(off, off + c) as HostBuffer, base);
      if (first) this.writeDesc(OpCode.BROADCAST, dcode, count, root, 0);
      this.sync('broadcast');
      if (first) this.checkDesc('broadcast');
      first = false;
      if (!isRoot) this.take(h, off, base, c);
      off += c;
    } while (off < count);
  }

  // ---------------------------------------------------------------- data movement

  /** Element index (for elements of `bpe` bytes) of the parity area used by the current phase. */
  private areaElem(bpe: number): number {
    return (this.dataOff + (this.phase & 1) * this.area) / bpe;
  }

  private numView(dt: DType): NumArray {
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
  private put(src: HostBuffer, at: number): void {
    if (src instanceof BigInt64Array) this.i64.set(src, at);
    else this.numView(hostDType(src)).set(src, at);
  }

  /** Copies `count` elements from shared memory at `from` into dst[at..]. */
  private take(dst: HostBuffer, at: number, from: number, count: number): void {
    if (dst instanceof BigInt64Array) dst.set(this.i64.subarray(from, from + count), at);
    else dst.set(this.numView(hostDType(dst)).subarray(from, from + count), at);
  }

  // ---------------------------------------------------------------- synchronisation

  private ensureOpen(op: string): void {
    if (this.destroyed) throw new CollectiveError(op, this.name, this.globalRank, 'the group was destroyed');
  }

  private begin(op: string): void {
    this.ensureOpen(op);
    if (Atomics.load(this.ctrl, ABORT) !== AbortReason.NONE) throw this.abortError(op);
    this.deadline = 0;
  }

  private writeDesc(op: number, dtype: number, count: number, root: number, redop: number): void {
    const d = this.me + ((this.phase & 1) === 0 ? DESC0 : DESC1);
    const c = this.ctrl;
    // Plain stores: the Atomics.add in arrive() publishes them.
    c[d + DESC_OP] = op;
    c[d + DESC_DTYPE] = dtype;
    c[d + DESC_COUNT] = count;
    c[d + DESC_ROOT] = root;
    c[d + DESC_REDOP] = redop;
  }

  /** Arrives at the current phase and waits for every member. */
  private sync(op: string): void {
    const c = this.ctrl;
    const n = this.size;
    const ph = (this.phase + 1) | 0;
    const target = Math.imul(ph, n);
    Atomics.store(c, this.me + PHASE, ph);
    const old = Atomics.add(c, ARRIVE, 1);
    if (((old + 1) | 0) === target) {
      // Last to arrive: wake the sleepers (the notify syscall only when someone sleeps).
      Atomics.add(c, WAKE, 1);
      if (Atomics.load(c, SLEEPERS) !== 0) Atomics.notify(c, WAKE);
    } else {
      let spins = this.spin;
      while (((Atomics.load(c, ARRIVE) - target) | 0) < 0) {
        if (--spins < 0) {
          this.sleep(op, target, ph);
          break;
        }
      }
    }
    this.phase = ph;
  }

  private sleep(op: string, target: number, ph: number): void {
    const c = this.ctrl;
    if (this.deadline === 0) this.deadline = performance.now() + this.timeoutMs;
    Atomics.add(c, SLEEPERS, 1);
    try {
      for (;;) {
        // Read WAKE before testing: any event after this read changes it, so the wait cannot miss it.
        const w = Atomics.load(c, WAKE);
        if (((Atomics.load(c, ARRIVE) - target) | 0) >= 0) return;
        if (Atomics.load(c, ABORT) !== AbortReason.NONE) throw this.abortError(op, ph);
        const exited = this.exitedMissing(ph);
        if (exited) {
          abortGroup(c, AbortReason.EXITED, exited.rank, exited.code);
          throw new CollectiveError(
            op,
            this.name,
            this.globalRank,
            `rank ${exited.rank} exited (code ${exited.code}) without joining`,
            this.missing(ph),
          );
        }
        const left = this.deadline - performance.now();
        if (left <= 0) {
          const missing = this.missing(ph);
          // The phase counters no longer agree: fail the peers now rather than at their own timeouts.
          abortGroup(c, AbortReason.TIMEOUT, this.globalRank, ph);
          throw new CollectiveError(op, this.name, this.globalRank, `timed out after ${this.timeoutMs} ms`, missing);
        }
        Atomics.wait(c, WAKE, w, Math.min(left, MAX_SLEEP_MS));
      }
    } finally {
      Atomics.sub(c, SLEEPERS, 1);
    }
  }

  /** Global ranks that have not arrived at phase `ph`. */
  private missing(ph: number): number[] {
    const out: number[] = [];
    for (let r = 0; r < this.size; r++) {
      if (((Atomics.load(this.ctrl, rankLine(r) + PHASE) - ph) | 0) < 0) out.push(this.ranks[r]!);
    }
    return out;
  }

  private exitedMissing(ph: number): { rank: number; code: number } | null {
    for (let r = 0; r < this.size; r++) {
      const line = rankLine(r);
      const ex = Atomics.load(this.ctrl, line + EXIT);
      if (ex !== 0 && ((Atomics.load(this.ctrl, line + PHASE) - ph) | 0) < 0) {
        return { rank: this.ranks[r]!, code: ex - 1 };
      }
    }
    return null;
  }

  private abortError(op: string, ph?: number): CollectiveError {
    const c = this.ctrl;
    const reason = Atomics.load(c, ABORT) as AbortReason;
    const who = Atomics.load(c, ABORT_RANK);
    const info = Atomics.load(c, ABORT_INFO);
    let why: string;
    switch (reason) {
      case AbortReason.RANK_FAILED:
        why = `rank ${who} failed (exit code ${info})`;
        break;
      case AbortReason.TIMEOUT:
        why = `rank ${who} timed out waiting for its peers; the group is unusable`;
        break;
      case AbortReason.EXITED:
        why = `rank ${who} exited (code ${info}) while its peers waited for it`;
        break;
      case AbortReason.STOPPED:
        why = 'the job is being stopped';
        break;
      default:
        why = `aborted (reason ${reason})`;
    }
    return new CollectiveError(op, this.name, this.globalRank, `group aborted: ${why}`, ph === undefined ? [] : this.missing(ph));
  }

  /** Compares every rank's descriptor of the phase just completed with group rank 0's. */
  private checkDesc(op: string): void {
    const c = this.ctrl;
    const d = (this.phase - 1) & 1 ? DESC1 : DESC0;
    const ref = rankLine(0) + d;
    for (let r = 1; r < this.size; r++) {
      const o = rankLine(r) + d;
      if (
        c[o + DESC_OP] !== c[ref + DESC_OP] ||
        c[o + DESC_DTYPE] !== c[ref + DESC_DTYPE] ||
        c[o + DESC_COUNT] !== c[ref + DESC_COUNT] ||
        c[o + DESC_ROOT] !== c[ref + DESC_ROOT] ||
        c[o + DESC_REDOP] !== c[ref + DESC_REDOP]
      ) {
        this.mismatch(op, d);
      }
    }
    if (c[ref + DESC_OP] === OpCode.INVALID) this.mismatch(op, d);
  }

  private mismatch(op: string, d: number): never {
    const c = this.ctrl;
    const describe = (r: number): string => {
      const o = rankLine(r) + d;
      const code = c[o + DESC_OP]!;
      if (code === OpCode.INVALID) return `rank ${this.ranks[r]} rejected its own arguments`;
      let s = `rank ${this.ranks[r]} called ${OP_NAMES[code] ?? `op ${code}`}`;
      if (code !== OpCode.BARRIER) s += `(${DTYPE_NAMES[c[o + DESC_DTYPE]!]} x ${c[o + DESC_COUNT]}`;
      if (code === OpCode.ALL_REDUCE) s += `, ${REDOP_NAMES[c[o + DESC_REDOP]!]})`;
      else if (code === OpCode.BROADCAST) s += `, root ${c[o + DESC_ROOT]})`;
      else if (code !== OpCode.BARRIER) s += ')';
      return s;
    };
    // Name rank 0's call and the first that disagrees with it: the same text on every rank.
    let other = -1;
    const ref = rankLine(0) + d;
    for (let r = 1; r < this.size && other < 0; r++) {
      const o = rankLine(r) + d;
      for (let k = 0; k < 5; k++) if (c[o + k] !== c[ref + k]) other = r;
    }
    if (other < 0) other = 0; // all agree, but rank 0's call was invalid
    const detail =
      other === 0
        ? `collective mismatch: ${describe(0)}`
        : `collective mismatch: ${describe(0)} but ${describe(other)}`;
    throw new CollectiveError(op, this.name, this.globalRank, detail);
  }

  /** Takes part in one phase with an INVALID descriptor, then throws: peers fail at once instead of timing out. */
  private invalid(op: string, reason: string): never {
    if (this.size > 1) {
      this.writeDesc(OpCode.INVALID, 0, 0, 0, 0);
      this.sync(op);
    }
    throw new CollectiveError(op, this.name, this.globalRank, `invalid arguments: ${reason}`);
  }
}

/**
 * dst[dstOff + i] = op over ranks r of v[base + r*stride + i], for i < count.
 * With `scatter` = 1, `dstOff` is an element index into `dst` (the shared
 * result slot) and the reduced slice starts at `lo`; otherwise `dst` is the
 * caller's buffer at 0. Ranks are folded in order 0..n-1 so that every rank
 * computes bit-identical results.
 */
function reduceNum(
  v: NumArray,
  dst: NumArray,
  dstOff: number,
  count: number,
  base: number,
  stride: number,
  n: number,
  redop: number,
  lo: number,
  scatter: number,
): void {
  const out = scatter ? dstOff + lo : dstOff;
  if (redop === REDOP_CODES.sum) {
    if (n === 2) {
      const b = base + stride;
      for (let i = 0; i < count; i++) dst[out + i] = v[base + i]! + v[b + i]!;
    } else {
      for (let i = 0; i < count; i++) {
        let s = v[base + i]!;
        for (let r = 1; r < n; r++) s += v[base + r * stride + i]!;
        dst[out + i] = s;
      }
    }
  } else if (redop === REDOP_CODES.avg) {
    // Averages the exact (double) sum, so integer sums cannot wrap before the division.
    const isInt = !(v instanceof Float32Array || v instanceof Float64Array);
    for (let i = 0; i < count; i++) {
      let s = v[base + i]!;
      for (let r = 1; r < n; r++) s += v[base + r * stride + i]!;
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

function reduceBig(
  v: BigInt64Array,
  dst: BigInt64Array,
  dstOff: number,
  count: number,
  base: number,
  stride: number,
  n: number,
  redop: number,
  lo: number,
  scatter: number,
): void {
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
