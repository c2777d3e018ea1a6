/** The collective interface every backend (threads, gloo, nccl) implements. */
import { recordCollectiveError } from './report.js';

export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';
export type BackendName = 'threads' | 'gloo' | 'nccl';

export type HostBuffer = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

/**
 * Memory on a device (e.g. a cuda:N tensor's storage). Backends that cannot
 * use device memory directly stage it through the host with toHost/fromHost.
 */
export interface DeviceBuffer {
  readonly device: string; // 'cuda:N'
  readonly dtype: 'float32' | 'float64' | 'int32' | 'int64' | 'uint8';
  readonly length: number; // elements
  readonly ptr: bigint; // device address
  readonly stream: bigint; // the stream that orders work on this buffer (0n: default)
  toHost(): HostBuffer;
  fromHost(src: HostBuffer): void;
}

export type CommBuffer = HostBuffer | DeviceBuffer;

/**
 * A device a group may be asked about: { type, index } (the shape of core's
 * Device) or its name, 'cpu', 'cuda' (= cuda:0) or 'cuda:N'. A missing index
 * is 0, as in core's Device.parse.
 */
export interface CommDevice {
  readonly type: 'cpu' | 'cuda';
  readonly index?: number;
}
export type CommDeviceLike = CommDevice | string;

/** { type, index } of a device or device name; a TypeError for anything else. */
export function parseCommDevice(device: CommDeviceLike): Required<CommDevice> {
  if (typeof device === 'string') {
    if (device === 'cpu') return { type: 'cpu', index: 0 };
    const m = /^cuda(?::(\d+))?$/.exec(device);
    if (m) return { type: 'cuda', index: m[1] === undefined ? 0 : Number(m[1]) };
  } else if (device && (device.type === 'cpu' || device.type === 'cuda')) {
    const index = device.index ?? 0;
    if (Number.isInteger(index) && index >= 0) return { type: device.type, index };
  }
  throw new TypeError(`unknown device ${JSON.stringify(device)}: expected 'cpu', 'cuda', 'cuda:N' or { type, index }`);
}

/**
 * Collectives are synchronous: they return when the result is in the buffer
 * (or, for device buffers on NCCL, when it is queued on the buffer's stream),
 * so that a module's forward can call them. Every collective is bounded by
 * `timeoutMs` and throws a CollectiveError when it expires.
 */
export interface ProcessGroup {
  readonly backend: BackendName;
  /** A name unique within the job, e.g. 'world' or 'group(0,2)#1'. */
  readonly name: string;
  readonly rank: number;
  readonly size: number;
  /** Global ranks of the members, in group-rank order. */
  readonly ranks: readonly number[];
  timeoutMs: number;

  /** In place: buf = op over all ranks' buf. */
  allReduce(buf: CommBuffer, op?: ReduceOp): void;
  /**
   * allReduce, started: returns at once (where the backend can overlap;
   * elsewhere it runs at the call) and `wait()` completes it. The buffer
   * belongs to the collective until wait() returns: do not read, write or
   * free it before. Calls on a group keep their order on every rank: a
   * synchronous collective issued after it waits for it first. Argument
   * errors throw here; communication errors throw from wait(). Every group
   * of this package has it; it is optional so that wrappers written before
   * it (counting proxies) stay groups: startAllReduce() runs their allReduce.
   */
  allReduceAsync?(buf: CommBuffer, op?: ReduceOp): Work;
  /** output = concatenation of every rank's input, in rank order; output.length = size * input.length. */
  allGather(output: CommBuffer, input: CommBuffer): void;
  /** In place: buf = root's buf (root is a group rank). */
  broadcast(buf: CommBuffer, root: number): void;
  barrier(): void;
  /**
   * A sub-group of the given global ranks. Every rank of this group must call
   * it with the same list (as in PyTorch); non-members get null.
   */
  newGroup(ranks: readonly number[]): Promise<ProcessGroup | null>;
  destroy(): void;
  /**
   * Whether the group moves that device's memory itself (nccl: its own cuda
   * device; threads, gloo: cpu only). Buffers on a device it does not
   * support are staged through the host (toHost/fromHost) where the backend
   * can (threads, gloo) and rejected where it cannot (nccl and host memory).
   */
  supports(device: CommDeviceLike): boolean;
}

/** A started collective (ProcessGroup.allReduceAsync). */
export interface Work {
  /**
   * Blocks until the collective has finished (at most about the group's
   * timeout past its start) and throws its CollectiveError if it failed;
   * again on a later call. After it returns the buffer holds the result.
   */
  wait(): void;
  /** Whether it has finished, successfully or not (never blocks, never throws). */
  done(): boolean;
}

export class CollectiveError extends Error {
  constructor(
    readonly op: string,
    readonly group: string,
    readonly rank: number,
    detail: string,
    readonly missingRanks: readonly number[] = [],
  ) {
    super(
      `${op} on group '${group}' failed at rank ${rank}: ${detail}` +
        (missingRanks.length ? ` (ranks not arrived: ${missingRanks.join(', ')})` : ''),
    );
    this.name = 'CollectiveError';
    // A rank that catches this and exits non-zero still tells its launcher which peers were at fault.
    recordCollectiveError(this);
  }
}

export const DEFAULT_TIMEOUT_MS = 300_000;

/** A Work that ran at creation: `run` now; its CollectiveError is kept for wait(), other errors thrown at once. */
export function completedWork(run: () => void): Work {
  let error: CollectiveError | null = null;
  try {
    run();
  } catch (e) {
    if (!(e instanceof CollectiveError)) throw e;
    error = e;
  }
  return {
    wait() {
      if (error) throw error;
    },
    done: () => true,
  };
}

/** group.allReduceAsync where the group has it, else its allReduce at the call (same order, no overlap). */
export function startAllReduce(group: ProcessGroup, buf: CommBuffer, op: ReduceOp = 'sum'): Work {
  return group.allReduceAsync ? group.allReduceAsync(buf, op) : completedWork(() => group.allReduce(buf, op));
}
