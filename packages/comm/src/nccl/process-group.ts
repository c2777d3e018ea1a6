/**
 * The 'nccl' backend: koffi bindings to libnccl.so.2. Collectives take
 * device buffers only and return once queued (set `blocking` /
 * BAGUA_NCCL_BLOCKING=1 to wait for completion, bounded by timeoutMs,
 * aborting the communicator on expiry). barrier() always waits, with the
 * same timeout and abort.
 *
 * Streams (as PyTorch's ProcessGroupNCCL): with the CUDA runtime at hand,
 * every collective of a group runs on the group's own communication stream
 * (non-blocking, made at the first collective), ordered after the work
 * already queued on the buffer's stream by an event that stream records and
 * the communication stream waits for. A synchronous collective then makes the
 * buffer's stream wait for an event recorded after it; allReduceAsync leaves
 * that to its Work's wait(), so the buffer's stream (backward's kernels) goes
 * on while the all-reduce runs. One stream for all of them keeps the GPU's
 * order of the communicator's collectives that of the calls, as NCCL needs.
 * Events come from a pool and are destroyed with the group. Without the
 * runtime, collectives are queued on the buffer's stream and allReduceAsync
 * runs at the call.
 */
import {
  CollectiveError,
  DEFAULT_TIMEOUT_MS,
  completedWork,
  type CommBuffer,
  type CommDevice,
  type DeviceBuffer,
  type ProcessGroup,
  type ReduceOp,
  type Work,
} from '../process-group.js';
import { isDeviceBuffer } from '../buffers.js';
import { ProcessGroupBase, type SubgroupSpec } from '../group/base.js';
import {
  NCCL_DTYPE,
  NCCL_IN_PROGRESS,
  NCCL_OP,
  NCCL_SUCCESS,
  NCCL_UNIQUE_ID_BYTES,
  loadNccl,
  tryLoadCudaRuntime,
  type CudaRuntime,
  type NcclLibrary,
} from './library.js';

/** The part of the store client the nccl backend uses (packages/comm/src/store/client.ts). */
export interface NcclStore {
  set(key: string, value: Uint8Array): Promise<void>;
  get(key: string): Promise<Uint8Array | null>;
  wait(keys: string | readonly string[], timeoutMs?: number): Promise<void>;
  check?(keys: string | readonly string[]): Promise<boolean>;
}

export interface NcclGroupOptions {
  rank: number;
  size: number;
  store: NcclStore;
  /** Store key prefix, unique per group in the job. */
  prefix: string;
  timeoutMs?: number;
  name?: string;
  /** Global ranks of the members in group-rank order (default 0..size-1). */
  ranks?: readonly number[];
  /** CUDA device ordinal (default env BAGUA_NCCL_DEVICE, else the calling thread's current device). */
  device?: number;
  /** Wait for every collective to complete (default env BAGUA_NCCL_BLOCKING=1). */
  blocking?: boolean;
}

const CUDA_ERROR_NOT_READY = 600;
/** cudaStreamNonBlocking: the communication stream does not wait for the legacy default stream. */
const CUDA_STREAM_NON_BLOCKING = 1;
/** cudaEventDisableTiming: the cheapest events, for ordering only. */
const CUDA_EVENT_DISABLE_TIMING = 2;

/** A pointer koffi gave back through an `_Out_ void **`. */
function pointerValue(p: unknown): bigint {
  return typeof p === 'bigint' ? p : BigInt(p as number);
}
const sleepCell = new Int32Array(new SharedArrayBuffer(4));

function sleepMs(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  return Number.isInteger(n) ? n : undefined;
}

function versionText(v: number): string {
  if (v >= 10000) return `${Math.floor(v / 10000)}.${Math.floor(v / 100) % 100}.${v % 100}`;
  return `${Math.floor(v / 1000)}.${Math.floor(v / 100) % 10}.${v % 100}`;
}

/**
 * Creates a communicator: group rank 0 makes the unique id and publishes it
 * through the store; everyone calls ncclCommInitRank off the event loop
 * (koffi .async) when the device is 0 (a koffi worker thread's current
 * device), or on this thread after cudaSetDevice otherwise.
 */
export async function createNcclProcessGroup(opts: NcclGroupOptions): Promise<NcclProcessGroup> {
  const lib = loadNccl();
  const rt = tryLoadCudaRuntime();
  const { rank, size, store } = opts;
  const ranks = opts.ranks ? [...opts.ranks] : Array.from({ length: size }, (_, i) => i);
  const name = opts.name ?? 'world';
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const globalRank = ranks[rank] ?? rank;
  const fail = (detail: string, missing: number[] = []) =>
    new CollectiveError('init', name, globalRank, detail, missing);
  if (!Number.isInteger(size) || size < 1 || !Number.isInteger(rank) || rank < 0 || rank >= size) {
    throw fail(`bad rank ${rank} / size ${size}`);
  }
  let device = opts.device ?? envInt('BAGUA_NCCL_DEVICE');
  if (device === undefined) {
    if (rt) {
      const d = [0];
      const rc = rt.getDevice(d) as number;
      if (rc !== 0) throw fail(`cudaGetDevice failed: ${rt.errorString(rc)}`);
      device = d[0] as number;
    } else {
      device = 0;
    }
  }
  if (rt) {
    const rc = rt.setDevice(device) as number;
    if (rc !== 0) throw fail(`cudaSetDevice(${device}) failed: ${rt.errorString(rc)}`);
  } else if (device !== 0) {
    throw fail(`device cuda:${device} needs the CUDA runtime to select it, and it was not found (set BAGUA_CUDART_LIB)`);
  }

  const idKey = `${opts.prefix}nccl/uniqueId`;
  let idBytes: Uint8Array;
  if (rank === 0) {
    const id: { internal?: Uint8Array } = {};
    const rc = lib.getUniqueId(id) as number;
    if (rc !== NCCL_SUCCESS || !id.internal) throw fail(`ncclGetUniqueId failed: ${lib.errorString(rc)}`);
    idBytes = new Uint8Array(id.internal);
    await store.set(idKey, idBytes);
  } else {
    try {
      await store.wait([idKey], timeoutMs);
    } catch (e) {
      throw fail(`rank ${ranks[0]} did not publish the NCCL unique id: ${(e as Error).message}`, [ranks[0]!]);
    }
    const v = await store.get(idKey);
    if (!v || v.length !== NCCL_UNIQUE_ID_BYTES) {
      throw fail(`the NCCL unique id in the store has ${v?.length ?? 0} bytes, expected ${NCCL_UNIQUE_ID_BYTES}`);
    }
    idBytes = v;
  }
  // Arrival marks let a timed-out init name the ranks that never came.
  await store.set(`${opts.prefix}nccl/arrived/${rank}`, new Uint8Array([1]));

  const out: unknown[] = [null];
  const id = { internal: idBytes };
  let rc: number;
  if (device === 0) {
    let timer: NodeJS.Timeout | undefined;
    const init = new Promise<number>((resolveP, rejectP) => {
      lib.commInitRank.async(out, size, id, rank, (e: unknown, r: number) => (e ? rejectP(e) : resolveP(r)));
    });
    const timeout = new Promise<'timeout'>((resolveP) => {
      timer = setTimeout(() => resolveP('timeout'), timeoutMs);
    });
    const r = await Promise.race([init, timeout]);
    clearTimeout(timer);
    if (r === 'timeout') {
      const missing: number[] = [];
      for (let i = 0; i < size; i++) {
        const k = `${opts.prefix}nccl/arrived/${i}`;
        const there = store.check ? await store.check(k) : (await store.get(k)) !== null;
        if (!there) missing.push(ranks[i] ?? i);
      }
      throw fail(`ncclCommInitRank did not complete within ${timeoutMs} ms`, missing);
    }
    rc = r;
  } else {
    rc = lib.commInitRank(out, size, id, rank) as number;
  }
  if (rc !== NCCL_SUCCESS) throw fail(`ncclCommInitRank failed: ${lib.errorString(rc)}`);
  const comm = out[0];
  if (comm === null || comm === undefined || comm === 0n) throw fail('ncclCommInitRank returned no communicator');
  const blocking = opts.blocking ?? process.env.BAGUA_NCCL_BLOCKING === '1';
  return new NcclProcessGroup(lib, rt, comm, {
    name,
    rank,
    ranks,
    timeoutMs,
    device,
    blocking,
    store,
    prefix: opts.prefix,
  });
}

interface NcclState {
  name: string;
  rank: number;
  ranks: number[];
  timeoutMs: number;
  device: number;
  blocking: boolean;
  store: NcclStore;
  prefix: string;
}

export class NcclProcessGroup extends ProcessGroupBase {
  readonly backend = 'nccl' as const;
  /** The CUDA device ordinal of the communicator. */
  readonly device: number;
  /** Wait for each collective to finish (bounded by timeoutMs) instead of returning once queued. */
  blocking: boolean;
  private comm: unknown;
  private aborted = '';
  private scratch: bigint | null = null;
  /** The communication stream (made at the first collective that needs it). */
  private commStream: bigint | null = null;
  /** Events not in use, and every event made (destroyed with the group). */
  private readonly idleEvents: bigint[] = [];
  private readonly events = new Set<bigint>();

  /** @internal use createNcclProcessGroup */
  constructor(
    private readonly lib: NcclLibrary,
    private readonly rt: CudaRuntime | null,
    comm: unknown,
    private readonly state: NcclState,
  ) {
    super(state);
    this.comm = comm;
    this.device = state.device;
    this.blocking = state.blocking;
    this.closeAtThreadExit();
  }

  /** NCCL moves the memory of its communicator's device only. */
  protected movesMemoryOf(device: Required<CommDevice>): boolean {
    return device.type === 'cuda' && device.index === this.device;
  }

  /** Communicators still alive when this thread exits are aborted (no waiting on peers), so that NCCL's threads stop before the library unloads. */
  protected override onThreadExit(): void {
    this.abortAndDestroy('process exit');
  }

  /** NCCL's version as text, e.g. '2.21.5'. */
  get ncclVersion(): string {
    return versionText(this.lib.version);
  }

  private live(op: string): unknown {
    this.ensureOpen(op);
    if (this.aborted) throw this.error(op, `the communicator was aborted after an earlier failure (${this.aborted})`);
    const e = [0];
    const rc = this.lib.commGetAsyncError(this.comm, e) as number;
    const async = e[0] as number;
    if (rc === NCCL_SUCCESS && async !== NCCL_SUCCESS && async !== NCCL_IN_PROGRESS) {
      this.abort(`asynchronous error ${this.lib.errorString(async)}`);
      throw this.error(op, `NCCL reported an asynchronous error: ${this.describe(async)}`);
    }
    return this.comm;
  }

  private describe(rc: number): string {
    const last = this.comm !== null ? this.lib.lastError(this.comm) : '';
    return this.lib.errorString(rc) + (last ? ` (${last})` : '');
  }

  private check(op: string, rc: number): void {
    if (rc === NCCL_SUCCESS) return;
    throw this.error(op, this.describe(rc));
  }

  private device_(op: string, buf: CommBuffer, what = 'buffer'): DeviceBuffer {
    if (!isDeviceBuffer(buf)) {
      throw new TypeError(
        `${op} on nccl group '${this.name}': the ${what} is host memory (${buf.constructor.name}); ` +
          'NCCL needs device memory (a cuda tensor\'s DeviceBuffer). Use the gloo or threads backend for CPU tensors.',
      );
    }
    let ours = false;
    try {
      ours = this.supports(buf.device);
    } catch {
      /* not a device name: not ours */
    }
    if (!ours) {
      throw new TypeError(
        `${op} on nccl group '${this.name}': the ${what} is on ${buf.device}, the communicator on cuda:${this.device}`,
      );
    }
    return buf;
  }

  private dtype(op: string, buf: DeviceBuffer): number {
    const t = NCCL_DTYPE[buf.dtype];
    if (t === undefined) throw new TypeError(`${op}: unsupported dtype ${buf.dtype}`);
    return t;
  }

  private abort(reason: string): void {
    if (this.comm === null || this.aborted) return;
    this.aborted = reason;
    try {
      this.lib.commAbort(this.comm);
    } catch {
      /* already reported */
    }
  }

  /**
   * Waits until `stream` has drained, polling NCCL's async error; after
   * timeoutMs, aborts the communicator and throws. Needs the CUDA runtime.
   */
  synchronize(stream: bigint = 0n, op = 'synchronize'): void {
    const rt = this.rt;
    if (!rt) {
      throw this.error(
        op,
        'waiting for completion needs the CUDA runtime (libcudart), which was not found: set BAGUA_CUDART_LIB ' +
          'or synchronize the stream yourself',
      );
    }
    const start = performance.now();
    let pause = 0.02;
    for (;;) {
      const q = rt.streamQuery(stream) as number;
      if (q === 0) return;
      if (q !== CUDA_ERROR_NOT_READY) throw this.error(op, `cudaStreamQuery failed: ${rt.errorString(q)}`);
      this.checkAsyncError(op);
      const elapsed = performance.now() - start;
      if (elapsed > this.timeoutMs) {
        this.abort(`${op} timed out`);
        throw this.error(op, `did not complete within ${this.timeoutMs} ms; the communicator was aborted`);
      }
      sleepMs(pause);
      pause = Math.min(pause * 2, 1);
    }
  }

  allReduce(buf: CommBuffer, op: ReduceOp = 'sum'): void {
    const comm = this.live('allReduce');
    const b = this.device_('allReduce', buf);
    const code = this.reduceOpCode(NCCL_OP, op);
    if (op === 'avg' && this.lib.version < 21000) {
      throw this.error('allReduce', `op 'avg' needs NCCL >= 2.10 (this is ${this.ncclVersion})`);
    }
    const dtype = this.dtype('allReduce', b);
    this.run('allReduce', b.stream, (s) => this.lib.allReduce(b.ptr, b.ptr, b.length, dtype, code, comm, s) as number);
  }

  /**
   * The all-reduce queued on the communication stream after the work queued
   * so far on the buffer's stream; returns at once. The Work's wait() makes
   * the buffer's stream wait for it (the host does not block unless the
   * group is `blocking`: then it waits for completion, bounded by timeoutMs),
   * so kernels queued after wait() on that stream see the result; done()
   * says whether it has completed on the device. Argument errors throw here;
   * an NCCL or CUDA error, or NCCL's asynchronous error, from wait().
   */
  override allReduceAsync(buf: CommBuffer, op: ReduceOp = 'sum'): Work {
    this.ensureOpen('allReduceAsync');
    const b = this.device_('allReduceAsync', buf);
    const code = this.reduceOpCode(NCCL_OP, op);
    if (op === 'avg' && this.lib.version < 21000) {
      throw new TypeError(`allReduceAsync: op 'avg' needs NCCL >= 2.10 (this is ${this.ncclVersion})`);
    }
    const dtype = this.dtype('allReduceAsync', b);
    // No runtime, no communication stream: it runs at the call on the buffer's stream (same order, no overlap).
    if (!this.rt) return completedWork(() => this.allReduce(buf, op));
    return this.started('allReduceAsync', [b.stream], (comm, s) => this.lib.allReduce(b.ptr, b.ptr, b.length, dtype, code, comm, s) as number);
  }

  /**
   * Several in-place all-reduces started as one (a bucket of gradients
   * reduced where they are, with no flat copy): one NCCL group
   * (ncclGroupStart/End, one launch) on the communication stream, after the
   * work queued on every buffer's stream; the Work's wait() orders each of
   * those streams after all of them. Otherwise as allReduceAsync. Every rank
   * passes the same number of buffers with the same lengths, in one order.
   */
  allReduceCoalescedAsync(bufs: readonly CommBuffer[], op: ReduceOp = 'sum'): Work {
    const what = 'allReduceCoalescedAsync';
    this.ensureOpen(what);
    const code = this.reduceOpCode(NCCL_OP, op);
    if (op === 'avg' && this.lib.version < 21000) {
      throw new TypeError(`${what}: op 'avg' needs NCCL >= 2.10 (this is ${this.ncclVersion})`);
    }
    const list = bufs.map((buf, i) => {
      const b = this.device_(what, buf, `buffer #${i}`);
      return { b, dtype: this.dtype(what, b) };
    });
    if (!list.length) return completedWork(() => {});
    if (!this.rt) return completedWork(() => bufs.forEach((buf) => this.allReduce(buf, op)));
    const streams = [...new Set(list.map(({ b }) => b.stream))];
    return this.started(what, streams, (comm, s) => {
      this.check(what, this.lib.groupStart() as number);
      let rc: number = NCCL_SUCCESS;
      for (const { b, dtype } of list) {
        rc = this.lib.allReduce(b.ptr, b.ptr, b.length, dtype, code, comm, s) as number;
        if (rc !== NCCL_SUCCESS) break;
      }
      // The group is closed whatever happened inside it; the first error is the one reported.
      const end = this.lib.groupEnd() as number;
      return rc !== NCCL_SUCCESS ? rc : end;
    });
  }

  /** A started collective's Work (allReduceAsync, allReduceCoalescedAsync): errors before the launch go to wait(). */
  private started(op: string, streams: readonly bigint[], issue: (comm: unknown, stream: bigint) => number): Work {
    const start = performance.now();
    let done: bigint;
    try {
      const comm = this.live(op);
      done = this.enqueue(op, streams, (s) => issue(comm, s))!;
    } catch (e) {
      return completedWork(() => {
        throw e;
      });
    }
    let finished = false;
    let error: CollectiveError | null = null;
    return {
      wait: () => {
        if (error) throw error;
        if (finished) return;
        try {
          this.join(op, streams, done, start);
        } catch (e) {
          if (e instanceof CollectiveError) error = e;
          throw e;
        }
        finished = true;
      },
      done: () => finished || error !== null || this.eventDone(done),
    };
  }

  allGather(output: CommBuffer, input: CommBuffer): void {
    const comm = this.live('allGather');
    const o = this.device_('allGather', output, 'output');
    const i = this.device_('allGather', input, 'input');
    this.checkGather(o, i);
    const dtype = this.dtype('allGather', i);
    // after the work on both buffers' streams (the input may be written on another one)
    this.run('allGather', o.stream, (s) => this.lib.allGather(i.ptr, o.ptr, i.length, dtype, comm, s) as number,
      [...new Set([o.stream, i.stream])]);
  }

  broadcast(buf: CommBuffer, root: number): void {
    const comm = this.live('broadcast');
    const b = this.device_('broadcast', buf);
    this.checkRoot(root);
    const dtype = this.dtype('broadcast', b);
    this.run('broadcast', b.stream, (s) => this.lib.broadcast(b.ptr, b.ptr, b.length, dtype, root, comm, s) as number);
  }

  /** An all-reduce of one int on the default stream, waited for (needs the CUDA runtime). */
  barrier(): void {
    const comm = this.live('barrier');
    const rt = this.rt;
    if (!rt) throw this.error('barrier', 'nccl barrier needs the CUDA runtime (libcudart), which was not found');
    if (this.scratch === null) {
      const p: unknown[] = [null];
      const rc = rt.malloc(p, 4) as number;
      if (rc !== 0) throw this.error('barrier', `cudaMalloc failed: ${rt.errorString(rc)}`);
      this.scratch = BigInt(p[0] as bigint | number);
    }
    const scratch = this.scratch;
    const done = this.enqueue('barrier', [0n], (s) => this.lib.allReduce(scratch, scratch, 1, NCCL_DTYPE.int32, NCCL_OP.sum, comm, s) as number);
    if (done !== null) this.join('barrier', [0n], done, performance.now(), false);
    this.synchronize(0n, 'barrier');
  }

  // ---------------------------------------------------------------- streams and events

  /**
   * A synchronous collective: queued (enqueue) after the work on the `after`
   * streams, the output buffer's stream ordered after it, waited for when blocking.
   */
  private run(op: string, stream: bigint, issue: (stream: bigint) => number, after: readonly bigint[] = [stream]): void {
    const done = this.enqueue(op, after, issue);
    if (done !== null) this.join(op, [stream], done, performance.now(), false);
    if (this.blocking) this.synchronize(stream, op);
  }

  /**
   * Issues an NCCL call on the communication stream after the work queued so
   * far on each of `streams` (the buffers'), and records an event after it:
   * returns that event (the caller gives it back through join). Without the
   * CUDA runtime, issues on the (first) buffer's stream itself and returns null. A CUDA failure that leaves this rank
   * without the collective its peers issue aborts the communicator: a later
   * collective would otherwise pair with the wrong one of theirs.
   */
  private enqueue(op: string, streams: readonly bigint[], issue: (stream: bigint) => number): bigint | null {
    const rt = this.rt;
    if (!rt) {
      this.check(op, issue(streams[0]!));
      return null;
    }
    const fatal = (what: string, rc: number): CollectiveError => {
      const detail = `${what} failed: ${rt.errorString(rc)}`;
      this.abort(detail);
      return this.error(op, `${detail}; the communicator was aborted`);
    };
    const comm = this.communicationStream(op);
    const ready = this.takeEvent(op);
    let rc = 0;
    for (const stream of streams) {
      rc = rt.eventRecord(ready, stream) as number;
      if (rc === 0) rc = rt.streamWaitEvent(comm, ready, 0) as number;
      if (rc !== 0) break;
      // The wait took the event's state at the call: it can be recorded again at once.
    }
    this.idleEvents.push(ready);
    if (rc !== 0) throw fatal('ordering the communication stream after the buffer\'s stream (cudaEventRecord, cudaStreamWaitEvent)', rc);
    this.check(op, issue(comm));
    const done = this.takeEvent(op);
    rc = rt.eventRecord(done, comm) as number;
    if (rc !== 0) {
      this.idleEvents.push(done);
      throw fatal('cudaEventRecord after the collective on the communication stream', rc);
    }
    return done;
  }

  /**
   * Orders each of `streams` after the collective that ended with `done`, and
   * gives the event back. With `poll` (allReduceAsync's wait() on a blocking group),
   * first waits on the host for it to complete, within timeoutMs of `start`.
   */
  private join(op: string, streams: readonly bigint[], done: bigint, start: number, poll = this.blocking): void {
    const rt = this.rt!;
    if (this.isDestroyed) throw this.error(op, 'the process group was destroyed before wait(): the result is lost');
    if (this.aborted) throw this.error(op, `the communicator was aborted (${this.aborted}) before wait()`);
    this.checkAsyncError(op);
    if (poll) {
      let pause = 0.02;
      for (;;) {
        const q = rt.eventQuery(done) as number;
        if (q === 0) break;
        if (q !== CUDA_ERROR_NOT_READY) throw this.error(op, `cudaEventQuery failed: ${rt.errorString(q)}`);
        this.checkAsyncError(op);
        if (performance.now() - start > this.timeoutMs) {
          this.abort(`${op} timed out`);
          throw this.error(op, `did not complete within ${this.timeoutMs} ms; the communicator was aborted`);
        }
        sleepMs(pause);
        pause = Math.min(pause * 2, 1);
      }
    }
    let rc = 0;
    for (const stream of streams) if (rc === 0) rc = rt.streamWaitEvent(stream, done, 0) as number;
    this.idleEvents.push(done);
    if (rc !== 0) throw this.error(op, `cudaStreamWaitEvent (the buffer's stream after the collective) failed: ${rt.errorString(rc)}`);
  }

  /** Whether the collective that ends with `done` has completed on the device (never throws). */
  private eventDone(done: bigint): boolean {
    if (this.isDestroyed || this.aborted || !this.rt) return true;
    try {
      return (this.rt.eventQuery(done) as number) !== CUDA_ERROR_NOT_READY;
    } catch {
      return true;
    }
  }

  /** NCCL's asynchronous error, if any: the communicator is aborted and the error thrown. */
  private checkAsyncError(op: string): void {
    const e = [0];
    const rc = this.lib.commGetAsyncError(this.comm, e) as number;
    const async = e[0] as number;
    if (rc === NCCL_SUCCESS && async !== NCCL_SUCCESS && async !== NCCL_IN_PROGRESS) {
      const d = this.describe(async);
      this.abort(`asynchronous error ${d}`);
      throw this.error(op, `NCCL reported an asynchronous error: ${d}`);
    }
  }

  private communicationStream(op: string): bigint {
    if (this.commStream !== null) return this.commStream;
    const out: unknown[] = [null];
    const rc = this.onDevice(() => this.rt!.streamCreateWithFlags(out, CUDA_STREAM_NON_BLOCKING) as number);
    if (rc !== 0) {
      this.abort('no communication stream');
      throw this.error(op, `cudaStreamCreateWithFlags (the communication stream) failed: ${this.rt!.errorString(rc)}; ` +
        'the communicator was aborted');
    }
    this.commStream = pointerValue(out[0]);
    return this.commStream;
  }

  private takeEvent(op: string): bigint {
    const idle = this.idleEvents.pop();
    if (idle !== undefined) return idle;
    const out: unknown[] = [null];
    const rc = this.onDevice(() => this.rt!.eventCreateWithFlags(out, CUDA_EVENT_DISABLE_TIMING) as number);
    if (rc !== 0) {
      this.abort('no CUDA event');
      throw this.error(op, `cudaEventCreateWithFlags failed: ${this.rt!.errorString(rc)}; the communicator was aborted`);
    }
    const e = pointerValue(out[0]);
    this.events.add(e);
    return e;
  }

  /** Streams and events belong to the device current when they are made: the communicator's. */
  private onDevice<T>(fn: () => T): T {
    const rt = this.rt!;
    const d = [0];
    if ((rt.getDevice(d) as number) !== 0 || d[0] === this.device) return fn();
    rt.setDevice(this.device);
    try {
      return fn();
    } finally {
      rt.setDevice(d[0]!);
    }
  }

  protected createSubgroup(spec: SubgroupSpec): Promise<ProcessGroup> {
    return createNcclProcessGroup({
      ...this.subgroupFields(spec),
      store: this.state.store,
      prefix: `${this.state.prefix}${spec.base}/`,
      device: this.device,
      blocking: this.blocking,
    });
  }

  /** Aborts the communicator (no waiting for peers or queued work) and releases it. */
  abortAndDestroy(reason = 'aborted by the caller'): void {
    if (this.comm === null) return;
    this.abort(reason);
    this.destroy();
  }

  protected release(): void {
    const comm = this.comm;
    this.comm = null;
    if (!this.aborted) this.lib.commDestroy(comm); // else ncclCommAbort already freed it
    if (this.rt) {
      if (this.scratch !== null) this.rt.free(this.scratch);
      // Work still queued keeps them alive on the device until it is done (CUDA's rule).
      for (const e of this.events) this.rt.eventDestroy(e);
      if (this.commStream !== null) this.rt.streamDestroy(this.commStream);
    }
    this.scratch = null;
    this.events.clear();
    this.idleEvents.length = 0;
    this.commStream = null;
  }
}
