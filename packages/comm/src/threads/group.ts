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
 * host by HostStagedGroup; this class sees typed arrays only. Small
 * all-reduces take one phase; large ones are pipelined (./pipeline.ts).
 * allReduceAsync runs on a communication thread of the rank (./async.ts).
 */
import { DEFAULT_TIMEOUT_MS, completedWork, type HostBuffer, type ProcessGroup, type ReduceOp, type Work } from '../process-group.js';
import { DTYPE_CODES, hostDType, type DType } from '../buffers.js';
import { HostStagedGroup } from '../group/host-staging.js';
import type { SubgroupSpec } from '../group/base.js';
import { CHUNK_BYTES, createGroupMemory, ctrlBytes, LINE, MAGIC, MAGIC_VALUE, memoryOf, OpCode, REDOP_CODES, SIZE } from './layout.js';
import type { ThreadsLink } from './link.js';
import { ThreadsAsyncEngine } from './async.js';
import { defaultSpin, PhaseBarrier } from './phase.js';
import { PipelinedAllReduce } from './pipeline.js';
import { reduceBig, reduceNum, type NumArray } from './reduce.js';
import { SimdKernels, type WasmMemory } from './simd.js';
import { SharedSlots } from './slots.js';

/**
 * All-reduces larger than this (bytes) are pipelined (./pipeline.ts): each rank reduces one slice.
 * Up to it, one phase in which every rank reduces everything: measured at 2 and 4 ranks on 2
 * cores, the two meet between 8 and 16 KiB (at 32 KiB the pipeline is 1.3x-2.5x faster); 16 KiB
 * keeps SyncBatchNorm's 2C+1 payloads (float32 up to C = 2047) on the one-phase path.
 */
const FLAT_REDUCE_BYTES = 16 << 10;

export interface ThreadsGroupOptions {
  sab: SharedArrayBuffer;
  /** The wasm Memory whose buffer sab is, if any: large reductions then use SIMD kernels. */
  memory?: WasmMemory | null;
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
  private readonly memory: WasmMemory | null;
  private readonly large: PipelinedAllReduce;
  private readonly spin: number | undefined;
  private readonly sab: SharedArrayBuffer;
  /** The communication thread of allReduceAsync; null until the first call. */
  private engine: ThreadsAsyncEngine | null = null;
  /** Whether large reductions run on the SIMD kernels (else on JS loops). */
  readonly simd: boolean;

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
    this.memory = memoryOf(sab, opts.memory);
    // BAGUA_THREADS_SIMD=0 keeps the JS loops (to compare the two; results are the same bits).
    const simd = this.size > 1 && process.env['BAGUA_THREADS_SIMD'] !== '0' ? SimdKernels.over(this.memory) : null;
    this.large = new PipelinedAllReduce(this.sync, this.slots, opts.rank, this.size, simd);
    this.simd = simd !== null;
    this.spin = opts.spin;
    this.sab = sab;
  }

  /** Started on this rank's communication thread: returns at once (./async.ts). */
  protected override allReduceHostAsync(h: HostBuffer, op: ReduceOp): Work {
    this.ensureOpen('allReduce');
    let dt: DType;
    try {
      dt = hostDType(h);
      this.reduceOpCode(REDOP_CODES, op);
    } catch {
      // Bad arguments fail here, and on the peers too: the synchronous path's invalid phase.
      this.allReduceHost(h, op);
      throw new Error('unreachable: allReduceHost accepted what allReduceAsync rejected');
    }
    if (this.size === 1) return completedWork(() => this.allReduceHost(h, op));
    this.engine ??= new ThreadsAsyncEngine(
      {
        sab: this.sab, memory: this.memory, ranks: this.ranks, rank: this.rank, name: this.name, key: this.key,
        // The communication threads double the busy threads: they spin as if there were twice the ranks,
        // so that one waiting for a descheduled peer gives its core back to computing threads.
        spin: this.spin ?? defaultSpin(2 * this.size),
      },
      this,
    );
    return this.engine.submit(h, dt, op, this.timeoutMs);
  }

  /** @internal the communication thread's group: takes up the phase count the rank's thread left. */
  takeUpPhase(): void {
    this.sync.reload();
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
    let memory: WasmMemory | null = null;
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
      memory = reply.memory;
      // The coordinator's id is unique in the job: the name needs no parent.
      name = `group(${spec.ranks.join(',')})#${reply.gid}`;
    }
    return new ThreadsProcessGroup({ sab, memory, ranks: spec.ranks, rank: spec.rank, name, key, timeoutMs: this.timeoutMs, link: this.link });
  }

  protected release(): void {
    this.engine?.close();
    this.engine = null;
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
    if (count * bpe <= Math.min(FLAT_REDUCE_BYTES, s.chunkBytes)) {
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
    this.large.run(h, dt, dcode, redop);
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
    const n = this.size;
    const chunkElems = (n * s.chunkBytes) / bpe; // the root may use every rank slot (not the result slot: layout.ts)
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
    // Started all-reduces come first (same order on every rank); then this thread's phase count is theirs.
    if (this.engine?.drain()) this.sync.reload();
    this.sync.begin(op);
  }
}
