/**
 * The `threads` backend: ranks are worker threads of one process and every
 * collective goes through a SharedArrayBuffer (layout in ./layout.ts).
 *
 * A collective is a sequence of phases of the group's PhaseBarrier
 * (./phase.ts): in each, every rank copies its part into its slot of the
 * data area (./slots.ts), arrives, and waits for the others. Phases
 * alternate between two data areas, so a fast rank can fill the next one
 * while slow peers still read the last; reaching phase k+2 requires every
 * rank to have finished phase k. The first phase carries the call's
 * descriptor, checked on every rank. Device buffers are staged through the
 * host by HostStagedGroup; this class sees typed arrays only.
 */
import { DEFAULT_TIMEOUT_MS, type HostBuffer, type ProcessGroup, type ReduceOp } from '../process-group.js';
import { DTYPE_CODES, hostDType, type DType } from '../buffers.js';
import { HostStagedGroup } from '../group/host-staging.js';
import type { SubgroupSpec } from '../group/base.js';
import { CHUNK_BYTES, createGroupMemory, ctrlBytes, LINE, MAGIC, MAGIC_VALUE, OpCode, REDOP_CODES, SIZE } from './layout.js';
import type { ThreadsLink } from './link.js';
import { defaultSpin, PhaseBarrier } from './phase.js';
import { reduceBig, reduceNum, type NumArray } from './reduce.js';
import { SharedSlots } from './slots.js';

/** All-reduces larger than this (bytes) are reduce-scattered: each rank reduces one slice. */
const FLAT_REDUCE_BYTES = 32 << 10;

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

/** The reason of a check's error, without the '<op>: ' its message starts with. */
function reason(e: unknown, op: string): string {
  const m = (e as Error).message;
  return m.startsWith(`${op}: `) ? m.slice(op.length + 2) : m;
}

export class ThreadsProcessGroup extends HostStagedGroup {
  readonly backend = 'threads' as const;

  private readonly key: string;
  private readonly link: ThreadsLink | null;
  private readonly sync: PhaseBarrier;
  private readonly slots: SharedSlots;

  constructor(opts: ThreadsGroupOptions) {
    const { sab, ranks } = opts;
    const head = new Int32Array(sab, 0, 2 * LINE);
    if (head[MAGIC] !== MAGIC_VALUE) throw new Error('threads: not a group memory block');
    if (head[SIZE] !== ranks.length) {
      throw new Error(`threads: group memory is for ${head[SIZE]} ranks, not ${ranks.length}`);
    }
    super({ name: opts.name, rank: opts.rank, ranks, timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS });
    this.key = opts.key;
    this.link = opts.link ?? null;
    const ctrl = new Int32Array(sab, 0, ctrlBytes(this.size) / 4);
    this.sync = new PhaseBarrier(ctrl, this, opts.rank, opts.spin ?? defaultSpin(this.size));
    this.slots = new SharedSlots(sab, this.size, head[CHUNK_BYTES]!);
  }

  barrier(): void {
    this.begin('barrier');
    if (this.size === 1) return;
    this.sync.writeDesc(OpCode.BARRIER, 0, 0, 0, 0);
    this.sync.sync('barrier');
    this.sync.checkDesc('barrier');
  }

  protected async createSubgroup(spec: SubgroupSpec): Promise<ProcessGroup> {
    const key = `${this.key}/${spec.seq}`;
    let sab: SharedArrayBuffer;
    let name: string;
    if (spec.ranks.length === 1) {
      sab = createGroupMemory(1, 64);
      name = `group(${spec.ranks[0]})@${key}`;
    } else {
      if (!this.link) {
        throw new Error(
          `newGroup: group '${this.name}' has no coordinator; start the ranks with bagua-launch or runThreads()`,
        );
      }
      const reply = await this.link.request(
        { t: 'newGroup', key, ranks: spec.ranks, rank: this.globalRank, chunkBytes: this.slots.chunkBytes },
        this.timeoutMs,
      );
      sab = reply.sab;
      // The coordinator's id is unique in the job: the name needs no parent.
      name = `group(${spec.ranks.join(',')})#${reply.gid}`;
    }
    return new ThreadsProcessGroup({ sab, ranks: spec.ranks, rank: spec.rank, name, key, timeoutMs: this.timeoutMs, link: this.link });
  }

  protected release(): void {
    if (this.size > 1) this.link?.send({ t: 'release', key: this.key, rank: this.globalRank });
  }

  // ---------------------------------------------------------------- collectives over host memory

  protected allReduceHost(h: HostBuffer, op: ReduceOp): void {
    this.begin('allReduce');
    let dt: DType;
    let redop: number;
    try {
      dt = hostDType(h);
      redop = this.reduceOpCode(REDOP_CODES, op);
    } catch (e) {
      return this.sync.invalid('allReduce', reason(e, 'allReduce'));
    }
    const count = h.length;
    if (this.size === 1) return; // every reduction of one buffer is the buffer
    const dcode = DTYPE_CODES[dt];
    const bpe = h.BYTES_PER_ELEMENT;
    const n = this.size;
    const s = this.slots;
    const stride = s.chunkBytes / bpe;
    if (count * bpe <= FLAT_REDUCE_BYTES) {
      // One phase: everyone publishes, everyone reduces all slots (same order on all ranks).
      const base = s.areaElem(this.sync.phase & 1, bpe);
      s.put(h, base + this.rank * stride);
      this.sync.writeDesc(OpCode.ALL_REDUCE, dcode, count, 0, redop);
      this.sync.sync('allReduce');
      this.sync.checkDesc('allReduce');
      const span = { dstOff: 0, count, base, stride, n, redop, lo: 0, scatter: 0 };
      if (dt === 'int64') reduceBig(s.i64, h as BigInt64Array, span);
      else reduceNum(s.numView(dt), h as NumArray, span);
      return;
    }
    // Reduce-scatter then gather, one slot-sized chunk at a time: two phases per chunk.
    let first = true;
    for (let off = 0; off < count; off += stride) {
      const c = Math.min(stride, count - off);
      const base = s.areaElem(this.sync.phase & 1, bpe);
      const result = base + n * stride;
      s.put(h.subarray(off, off + c) as HostBuffer, base + this.rank * stride);
      if (first) this.sync.writeDesc(OpCode.ALL_REDUCE, dcode, count, 0, redop);
      this.sync.sync('allReduce');
      if (first) this.sync.checkDesc('allReduce');
      first = false;
      const lo = Math.floor((c * this.rank) / n);
      const hi = Math.floor((c * (this.rank + 1)) / n);
      const span = { dstOff: result, count: hi - lo, base: base + lo, stride, n, redop, lo, scatter: 1 };
      if (dt === 'int64') reduceBig(s.i64, s.i64, span);
      else {
        const v = s.numView(dt);
        reduceNum(v, v, span);
      }
      this.sync.sync('allReduce');
      s.take(h, off, result, c);
    }
  }

  protected allGatherHost(out: HostBuffer, input: HostBuffer): void {
    this.begin('allGather');
    let dt: DType;
    try {
      dt = hostDType(input);
      this.checkGather({ dtype: hostDType(out), length: out.length }, { dtype: dt, length: input.length });
    } catch (e) {
      return this.sync.invalid('allGather', reason(e, 'allGather'));
    }
    const count = input.length;
    if (this.size === 1) {
      (out as Float32Array).set(input as Float32Array);
      return;
    }
    const bpe = input.BYTES_PER_ELEMENT;
    const s = this.slots;
    const chunkElems = s.chunkBytes / bpe;
    const dcode = DTYPE_CODES[dt];
    let first = true;
    let off = 0;
    do {
      const c = Math.min(chunkElems, count - off);
      const base = s.areaElem(this.sync.phase & 1, bpe);
      s.put(input.subarray(off, off + c) as HostBuffer, base + this.rank * chunkElems);
      if (first) this.sync.writeDesc(OpCode.ALL_GATHER, dcode, count, 0, 0);
      this.sync.sync('allGather');
      if (first) this.sync.checkDesc('allGather');
      first = false;
      for (let r = 0; r < this.size; r++) {
        if (r === this.rank) (out as Float32Array).set((input as Float32Array).subarray(off, off + c), r * count + off);
        else s.take(out, r * count + off, base + r * chunkElems, c);
      }
      off += c;
    } while (off < count);
  }

  protected broadcastHost(h: HostBuffer, root: number): void {
    this.begin('broadcast');
    let dt: DType;
    try {
      dt = hostDType(h);
      this.checkRoot(root);
    } catch (e) {
      return this.sync.invalid('broadcast', reason(e, 'broadcast'));
    }
    if (this.size === 1) return;
    const count = h.length;
    const bpe = h.BYTES_PER_ELEMENT;
    const s = this.slots;
    const chunkElems = s.area / bpe; // the root may use the whole area
    const dcode = DTYPE_CODES[dt];
    const isRoot = root === this.rank;
    let first = true;
    let off = 0;
    do {
      const c = Math.min(chunkElems, count - off);
      const base = s.areaElem(this.sync.phase & 1, bpe);
      if (isRoot) s.put(h.subarray(off, off + c) as HostBuffer, base);
      if (first) this.sync.writeDesc(OpCode.BROADCAST, dcode, count, root, 0);
      this.sync.sync('broadcast');
      if (first) this.sync.checkDesc('broadcast');
      first = false;
      if (!isRoot) s.take(h, off, base, c);
      off += c;
    } while (off < count);
  }

  private begin(op: string): void {
    this.ensureOpen(op);
    this.sync.begin(op);
  }
}
