/**
 * GradientAllReduce's reducer, after PyTorch DDP's: trainable parameters are
 * laid out in buckets (reverse registration order at first, the order their
 * gradients arrived after the first step); a gradient-ready hook copies each
 * final gradient into its bucket's flat buffer, and a full bucket's
 * all-reduce starts at once, while backward goes on. Buckets start strictly
 * in index order, so every rank issues the same collectives in the same
 * order whatever the timing. The optimizer step waits for them and copies
 * the averages back into the gradients.
 */
import { empty, onBackwardStart, registerGradReadyHook, tensor, zeros, type HookHandle, type Tensor } from '@bagua/core';
import { startAllReduce, type CommBuffer, type ProcessGroup, type Work } from '@bagua/comm';
import { commBuffer, movesDeviceMemory } from './comm-buffer.js';

/** nccl's: a bucket of device buffers reduced in place as one NCCL group. */
type CoalescingGroup = ProcessGroup & { allReduceCoalescedAsync?(bufs: readonly CommBuffer[], op?: 'avg'): Work };

export interface ReducerOptions {
  bucketBytes: number;
  overlap: boolean;
  findUnusedParameters: boolean;
}

interface Bucket {
  readonly params: Tensor[];
  readonly offsets: number[];
  /** Owned by the reducer, allocated with the layout: the collective's buffer. */
  readonly flat: Float32Array;
  /** Parameters not yet ready this step. */
  pending: number;
  work: Work | null;
}

export class BucketReducer {
  private layout: Bucket[] = [];
  private readonly where = new Map<Tensor, { bucket: Bucket; offset: number }>();
  private readonly handles: HookHandle[] = [];
  /** Parameters whose gradient is in their bucket this step. */
  private readonly ready = new Set<Tensor>();
  /** The next bucket to start: buckets start in index order only. */
  private next = 0;
  /** Whether a backward since the last step reduces (outside noSync). */
  private syncing = false;
  private noSyncDepth = 0;
  /** Arrival order in the first reduced step; null once the buckets were rebuilt. */
  private arrival: Tensor[] | null = [];
  /**
   * A group that moves the gradients' device memory (nccl): each bucket's
   * gradients are reduced where they are, on the group's communication stream
   * (no flat host buffer, nothing to write back).
   */
  private readonly inPlace: boolean;

  constructor(
    private readonly params: readonly Tensor[],
    private readonly names: ReadonlyMap<Tensor, string>,
    private readonly group: ProcessGroup,
    private readonly opts: ReducerOptions,
  ) {
    this.inPlace = params.length > 0 && movesDeviceMemory(group, params[0]!);
    this.build([...params].reverse());
    for (const p of params) this.handles.push(registerGradReadyHook(p, (leaf) => this.onReady(leaf)));
    this.handles.push(onBackwardStart((info) => {
      if (params.some((p) => info.reaches(p))) this.onBackward((p) => info.reaches(p));
    }));
  }

  /** The parameters of each bucket, in bucket order. */
  buckets(): Tensor[][] {
    return this.layout.map((b) => [...b.params]);
  }

  /** Runs fn with reduction off: backward passes in it only accumulate local gradients (DDP's no_sync). */
  noSync<T>(fn: () => T): T {
    this.noSyncDepth++;
    try {
      return fn();
    } finally {
      this.noSyncDepth--;
    }
  }

  remove(): void {
    for (const h of this.handles) h.remove();
    this.handles.length = 0;
  }

  private build(order: readonly Tensor[]): void {
    this.layout = [];
    this.where.clear();
    let group: Tensor[] = [];
    let bytes = 0;
    const close = () => {
      if (!group.length) return;
      const offsets: number[] = [];
      let n = 0;
      for (const p of group) offsets.push(n), (n += p.numel);
      const bucket: Bucket = { params: group, offsets, flat: this.flatBuffer(n), pending: group.length, work: null };
      group.forEach((p, i) => this.where.set(p, { bucket, offset: offsets[i]! }));
      this.layout.push(bucket);
      group = [];
      bytes = 0;
    };
    for (const p of order) {
      if (group.length && bytes + p.numel * 4 > this.opts.bucketBytes) close();
      group.push(p);
      bytes += p.numel * 4;
    }
    close();
  }

  /**
   * A bucket's buffer. On threads groups it lives in a SharedArrayBuffer: the
   * rank's communication thread then reduces it in place while backward goes
   * on (elsewhere a started all-reduce would stage it through a copy).
   */
  private flatBuffer(n: number): Float32Array {
    if (this.inPlace) return new Float32Array(0);
    if (this.group.backend !== 'threads') return new Float32Array(n);
    return new Float32Array(new SharedArrayBuffer(n * 4) as unknown as ArrayBuffer);
  }

  private onBackward(reaches: (p: Tensor) => boolean): void {
    if (this.noSyncDepth > 0) return;
    // A second backward before the step: the gradients now hold both; start over from them.
    if (this.ready.size) this.reset(true);
    this.syncing = true;
    // Parameters this pass cannot reach will get no gradient: ready now, as DDP's find_unused_parameters.
    if (this.opts.findUnusedParameters) for (const p of this.params) if (!reaches(p)) this.markReady(p);
  }

  private onReady(p: Tensor): void {
    if (this.syncing && this.noSyncDepth === 0 && !this.ready.has(p)) this.markReady(p);
  }

  private markReady(p: Tensor): void {
    const slot = this.where.get(p)!;
    if (this.inPlace) {
      p.grad ??= zeros(p.shape, { device: p.device }); // no gradient here: this rank adds nothing
    } else {
      const part = slot.bucket.flat.subarray(slot.offset, slot.offset + p.numel);
      if (p.grad) part.set(hostData(p.grad));
      else part.fill(0); // no gradient here: this rank adds nothing
    }
    this.ready.add(p);
    this.arrival?.push(p);
    if (--slot.bucket.pending === 0 && this.opts.overlap) this.startReady();
  }

  private startReady(): void {
    while (this.next < this.layout.length && this.layout[this.next]!.pending === 0) {
      const b = this.layout[this.next++]!;
      b.work = this.start(b);
    }
  }

  /** A bucket's all-reduce, started: the flat buffer, or (inPlace) the gradients themselves as one call. */
  private start(b: Bucket): Work {
    if (!this.inPlace) return startAllReduce(this.group, b.flat, 'avg');
    const bufs = b.params.map((p) => commBuffer(p.grad!));
    const g = this.group as CoalescingGroup;
    if (g.allReduceCoalescedAsync) return g.allReduceCoalescedAsync(bufs, 'avg');
    const works = bufs.map((buf) => startAllReduce(this.group, buf, 'avg'));
    return { wait: () => works.forEach((w) => w.wait()), done: () => works.every((w) => w.done()) };
  }

  /** Before the optimizers step: the remaining buckets, every wait, the averages into the gradients. */
  finish(): void {
    if (!this.syncing) return; // only noSync backwards since the last step: a local step
    if (this.opts.findUnusedParameters) {
      for (const p of this.params) if (!this.ready.has(p)) this.markReady(p);
    }
    const missing = this.params.filter((p) => !this.ready.has(p));
    if (missing.length) {
      this.reset(true);
      const list = missing.map((p) => this.names.get(p) ?? `#${this.params.indexOf(p)}`);
      throw new Error(`GradientAllReduce: ${missing.length} parameter(s) got no gradient in this step, so their ` +
        `buckets cannot be reduced: ${list.join(', ')}. Pass findUnusedParameters: true to treat them as zero ` +
        'gradients, or set requiresGrad = false on parameters that are never used');
    }
    try {
      if (this.opts.overlap) this.startReady();
      for (const b of this.layout) {
        if (b.work) b.work.wait();
        else if (this.inPlace) this.start(b).wait(); // overlap off: each bucket now
        else this.group.allReduce(b.flat, 'avg'); // overlap off: each bucket now, blocking
        if (!this.inPlace) b.params.forEach((p, i) => writeBack(p, b.flat.subarray(b.offsets[i]!, b.offsets[i]! + p.numel)));
      }
    } catch (e) {
      this.reset(true);
      throw e;
    }
    this.reset(false);
    if (this.arrival) this.rebuild(this.arrival);
  }

  /**
   * Back to "nothing ready". A started bucket still running is waited for
   * first (its buffer is the collective's until then); its error, if any,
   * is the one the caller already has, or gets from the step.
   */
  private reset(failed: boolean): void {
    for (const b of this.layout) {
      const w = b.work;
      b.work = null;
      b.pending = b.params.length;
      try {
        w?.wait();
      } catch {
        // reported by the step that waits for it, or already thrown
      }
    }
    this.ready.clear();
    this.next = 0;
    this.syncing = false;
    // The first step's arrival order counts only from a complete step.
    if (failed && this.arrival) this.arrival.length = 0;
  }

  /**
   * After the first reduced step, as DDP: buckets in the order gradients
   * arrived, so the first bucket fills first. Rank 0's order is broadcast: the
   * layout must be one on every rank.
   */
  private rebuild(arrival: readonly Tensor[]): void {
    this.arrival = null;
    const seen = new Set(arrival);
    const order = [...arrival, ...[...this.params].reverse().filter((p) => !seen.has(p))];
    let index = Int32Array.from(order, (p) => this.params.indexOf(p));
    if (this.inPlace) {
      // nccl moves device memory only: the order travels as float32 on the device (exact below 2^24)
      const t = tensor(Float32Array.from(index), { device: this.params[0]!.device });
      this.group.broadcast(commBuffer(t), 0);
      index = Int32Array.from(t.toArray('float32'));
      t.dispose();
    } else {
      this.group.broadcast(index, 0);
    }
    this.build(Array.from(index, (i) => this.params[i]!));
  }
}

/**
 * The averaged values into the gradient's own storage when nothing shares it; else a new gradient.
 * `part` is in the gradient's storage order (hostData), which is its parameter's memory format.
 */
function writeBack(p: Tensor, part: Float32Array): void {
  const g = p.grad;
  let s = g?.storage('GradientAllReduce');
  if (!s || s.isShared) {
    const fresh = empty(p.shape, 'float32', p.device, p.memoryFormat);
    p.grad = fresh;
    s = fresh.storage('GradientAllReduce');
  }
  s.backend.upload(s.handle, part);
}

/** A gradient's values on the host: its own storage on the CPU, a copy from a device. */
export function hostData(t: Tensor): Float32Array {
  const b = commBuffer(t);
  if (b instanceof Float32Array) return b;
  if (ArrayBuffer.isView(b)) throw new Error(`GradientAllReduce: expected a float32 gradient, got ${b.constructor.name}`);
  return b.toHost() as Float32Array;
}
