/**
 * allReduceAsync of the threads backend: the collective runs on a
 * communication thread of the calling rank (one worker thread per group and
 * rank, spawned at the first call), so the rank's own thread goes on (e.g.
 * with backward) while it runs. The communication threads of all ranks run
 * the collective among themselves over the group's own shared memory and
 * phase counters (./comm-worker.ts); only one thread of a rank is ever
 * inside a collective of the group, because every synchronous collective on
 * the rank's thread first settles the started ones (drain), then takes up
 * the phase count they left (PhaseBarrier.reload).
 *
 * Buffers: one on a SharedArrayBuffer is reduced in place by the
 * communication thread; any other is copied into a pooled shared staging
 * buffer at the start and back at wait().
 *
 * Control words (Int32 in a small SharedArrayBuffer): SUBMITTED by the
 * rank's thread; STARTED, DONE and STATE by the communication thread, which
 * notifies DONE. A failure travels as a message on a MessagePort that the
 * waiting thread reads synchronously (receiveMessageOnPort) once DONE says
 * the job ended; the communication thread never lets an exception escape.
 * If it stops making progress (it died, or was never scheduled) for longer
 * than the group's timeout plus a grace period, wait() throws instead of
 * hanging. The worker is unreferenced (it never keeps a process or rank
 * alive) and terminated by destroy().
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { CollectiveError, type HostBuffer, type ReduceOp, type Work } from '../process-group.js';
import type { DType } from '../buffers.js';
import type { WasmMemory } from './simd.js';

// Control words.
export const SUBMITTED = 0;
export const STARTED = 1;
export const DONE = 2;
export const STATE = 3; // CommState
export const CONTROL_WORDS = 4;

export const enum CommState {
  STARTING = 0,
  READY = 1,
  FAILED = 2, // could not set up; the reason is posted as the failure of job 0
}

/** How long past the group's timeout a silent communication thread is given before wait() gives up on it. */
const GRACE_MS = 10_000;
/** Free staging buffers kept for reuse. */
const POOL_MAX = 4;

/** What the communication thread is started with (its workerData). */
export interface CommThreadData {
  sab: SharedArrayBuffer;
  memory: WasmMemory | null;
  ranks: readonly number[];
  rank: number;
  name: string;
  key: string;
  spin?: number;
  control: SharedArrayBuffer;
  port: MessagePort;
}

/** One started all-reduce, as posted to the communication thread. */
export interface CommJob {
  seq: number;
  sab: SharedArrayBuffer;
  byteOffset: number;
  length: number;
  dtype: DType;
  op: ReduceOp;
  timeoutMs: number;
}

/** The communication thread's report of a failed job (posted before DONE is stored). */
export interface CommFailure {
  seq: number;
  op: string;
  detail: string;
  missing: number[];
}

/** The fields of the group a failure names. */
export interface AsyncGroupInfo {
  readonly name: string;
  readonly globalRank: number;
  readonly timeoutMs: number;
}

const VIEWS = {
  float32: Float32Array,
  float64: Float64Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
} as const;

/** A typed view of dtype over `sab`. */
export function viewOf(dtype: DType, sab: SharedArrayBuffer, byteOffset: number, length: number): HostBuffer {
  const View = VIEWS[dtype] as unknown as new (b: SharedArrayBuffer, o: number, n: number) => HostBuffer;
  return new View(sab, byteOffset, length);
}

export class ThreadsWork implements Work {
  private outcome: { error: CollectiveError | null } | null = null;

  constructor(
    private readonly engine: ThreadsAsyncEngine,
    readonly seq: number,
    private buffer: HostBuffer | null,
    private staging: HostBuffer | null,
  ) {}

  done(): boolean {
    return this.outcome !== null || this.engine.finished(this.seq);
  }

  wait(): void {
    const error = this.settle();
    if (error) throw error;
  }

  /** Waits for the outcome once; copies a staged result back; returns the failure. */
  settle(): CollectiveError | null {
    if (!this.outcome) {
      const error = this.engine.waitFor(this.seq);
      if (this.staging) {
        if (!error) (this.buffer as Float32Array).set(this.staging as Float32Array);
        this.engine.recycle(this.staging);
      }
      this.staging = null;
      this.buffer = null;
      this.outcome = { error };
      this.engine.settled(this);
    }
    return this.outcome.error;
  }
}

export class ThreadsAsyncEngine {
  private worker: Worker | null = null;
  private port: MessagePort | null = null;
  private readonly ctl = new Int32Array(new SharedArrayBuffer(CONTROL_WORDS * 4));
  private seq = 0;
  /** The last seq whose phases the rank's thread has taken up (see drain). */
  private drained = 0;
  private readonly failures = new Map<number, CommFailure>();
  /** Started works not settled yet, in start order. */
  private readonly pending = new Set<ThreadsWork>();
  private readonly pool: SharedArrayBuffer[] = [];
  private closed = false;

  constructor(
    private readonly data: Omit<CommThreadData, 'control' | 'port'>,
    private readonly g: AsyncGroupInfo,
  ) {}

  /** Starts an all-reduce of buf (dtype and op already checked) on the communication thread. */
  submit(buf: HostBuffer, dtype: DType, op: ReduceOp, timeoutMs: number): ThreadsWork {
    const port = this.start();
    let target = buf;
    let staging: HostBuffer | null = null;
    if (!(buf.buffer instanceof SharedArrayBuffer)) {
      staging = this.stage(dtype, buf.length);
      (staging as Float32Array).set(buf as Float32Array);
      target = staging;
    }
    const seq = ++this.seq;
    Atomics.store(this.ctl, SUBMITTED, seq);
    const job: CommJob = {
      seq,
      sab: target.buffer as SharedArrayBuffer,
      byteOffset: target.byteOffset,
      length: target.length,
      dtype,
      op,
      timeoutMs,
    };
    port.postMessage(job);
    const work = new ThreadsWork(this, seq, buf, staging);
    this.pending.add(work);
    return work;
  }

  /**
   * Settles every started work, in order (their outcomes are kept for their
   * wait()). True when jobs ran since the last drain: the caller must then
   * reload its phase count.
   */
  drain(): boolean {
    if (this.pending.size) for (const w of [...this.pending]) w.settle(); // settle() removes w: iterate a copy
    if (this.drained === this.seq) return false;
    this.drained = this.seq;
    return true;
  }

  /** Settles everything, then stops the communication thread. */
  close(): void {
    this.drain();
    this.closed = true;
    void this.worker?.terminate();
    this.port?.close();
    this.worker = null;
    this.port = null;
    this.pool.length = 0;
  }

  finished(seq: number): boolean {
    return ((Atomics.load(this.ctl, DONE) - seq) | 0) >= 0;
  }

  /** @internal by ThreadsWork */
  settled(w: ThreadsWork): void {
    this.pending.delete(w);
  }

  /** @internal by ThreadsWork: a staging buffer back to the pool. */
  recycle(h: HostBuffer): void {
    if (this.closed) return;
    this.pool.push(h.buffer as SharedArrayBuffer);
    if (this.pool.length > POOL_MAX) {
      this.pool.sort((a, b) => b.byteLength - a.byteLength);
      this.pool.length = POOL_MAX; // keep the largest
    }
  }

  /**
   * Blocks until job `seq` has ended; its failure, or null. Bounded: a
   * communication thread that shows no progress for the timeout plus
   * GRACE_MS fails the wait, naming this rank's own thread as the cause.
   */
  waitFor(seq: number): CollectiveError | null {
    const c = this.ctl;
    let seen = -1;
    let since = performance.now();
    for (;;) {
      const done = Atomics.load(c, DONE);
      if (((done - seq) | 0) >= 0) break;
      if (Atomics.load(c, STATE) === CommState.FAILED) {
        this.readFailures();
        const f = this.failures.get(0);
        return new CollectiveError('allReduce', this.g.name, this.g.globalRank, f?.detail ?? 'the communication thread failed to start');
      }
      const progress = done + Atomics.load(c, STARTED) + Atomics.load(c, STATE);
      const now = performance.now();
      if (progress !== seen) {
        seen = progress;
        since = now;
      }
      const left = since + this.g.timeoutMs + GRACE_MS - now;
      if (left <= 0) {
        const state = Atomics.load(c, STATE) === CommState.READY ? 'made no progress' : 'did not start';
        return new CollectiveError(
          'allReduce',
          this.g.name,
          this.g.globalRank,
          `the communication thread of rank ${this.g.globalRank} ${state} within ${this.g.timeoutMs + GRACE_MS} ms ` +
            `(started all-reduce #${seq}; it last finished #${done})`,
        );
      }
      Atomics.wait(c, DONE, done, Math.min(left, 1000));
    }
    this.readFailures();
    const f = this.failures.get(seq);
    if (!f) return null;
    this.failures.delete(seq);
    return new CollectiveError(f.op, this.g.name, this.g.globalRank, f.detail, f.missing);
  }

  private readFailures(): void {
    if (!this.port) return;
    for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
      const f = m.message as CommFailure;
      this.failures.set(f.seq, f);
    }
  }

  private stage(dtype: DType, length: number): HostBuffer {
    const bytes = length * VIEWS[dtype].BYTES_PER_ELEMENT;
    let best = -1;
    for (let i = 0; i < this.pool.length; i++) {
      const b = this.pool[i]!.byteLength;
      if (b >= bytes && (best < 0 || b < this.pool[best]!.byteLength)) best = i;
    }
    const sab = best >= 0 ? this.pool.splice(best, 1)[0]! : new SharedArrayBuffer(Math.max(8, Math.ceil(bytes / 8) * 8));
    return viewOf(dtype, sab, 0, length);
  }

  /** The communication thread, spawned at the first call. */
  private start(): MessagePort {
    if (this.port) return this.port;
    if (this.closed) throw new Error('threads: the communication thread was closed');
    const { port1, port2 } = new MessageChannel();
    const data: CommThreadData = { ...this.data, control: this.ctl.buffer as SharedArrayBuffer, port: port2 };
    const w = new Worker(new URL('./comm-worker.js', import.meta.url), { workerData: data, transferList: [port2] });
    w.unref(); // never keeps a rank or process alive
    // Its failures reach wait() through the control words; this keeps an
    // unexpected one from becoming the rank's uncaught error.
    w.on('error', () => {});
    port1.unref();
    this.worker = w;
    this.port = port1;
    return port1;
  }
}
