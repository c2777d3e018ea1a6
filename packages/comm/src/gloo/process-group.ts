/**
 * The 'gloo' backend: a ProcessGroup over libbagua_gloo.so (Gloo's TCP
 * transport, rendezvous through the job's store). Collectives are
 * synchronous native calls; device buffers are staged through the host.
 */
import {
  CollectiveError,
  DEFAULT_TIMEOUT_MS,
  type CommBuffer,
  type DeviceBuffer,
  type HostBuffer,
  type ProcessGroup,
  type ReduceOp,
} from '../process-group.js';
import { checkGatherLength, checkRoot, reduceOpCode, subgroupName, subgroupRanks } from '../checks.js';
import { GLOO_DTYPE, GLOO_OP, GlooStatus, loadGlooLibrary, type GlooLibrary } from './library.js';

/** Where the C++ client finds the rendezvous store. */
export interface GlooStoreEndpoint {
  host: string;
  port: number;
  token?: string;
}

export interface GlooGroupOptions {
  /** This process's rank in the group being created (0-based). */
  rank: number;
  size: number;
  store: GlooStoreEndpoint;
  /** Store key prefix, unique per group in the job (e.g. 'job/gloo/world'). */
  prefix: string;
  timeoutMs?: number;
  /** Group name for messages ('world', 'group(0,2)#1'). */
  name?: string;
  /** Global ranks of the members, in group-rank order (default 0..size-1). */
  ranks?: readonly number[];
  /** Network interface to bind (default env BAGUA_GLOO_IFACE). */
  iface?: string;
  /**
   * Host name or address to bind (default env BAGUA_GLOO_HOSTNAME, else the
   * local address this host uses to reach the store: 127.0.0.1 for a store
   * on loopback).
   */
  hostname?: string;
  /**
   * Collectives whose per-rank payload is at most this many bytes take the
   * low-latency path (gloo's synchronous mode, with a signature check that
   * catches ranks calling different collectives). Must be equal on every
   * rank. Default env BAGUA_GLOO_SMALL_BYTES, else 1 MiB; 0 disables it.
   */
  smallBytes?: number;
}

export const DEFAULT_GLOO_SMALL_BYTES = 1 << 20;

const ERR_CAP = 4096;

// Groups still alive when this thread exits are destroyed then, so that
// Gloo's event-loop threads stop before the process (or worker) tears down.
const live = new Set<GlooProcessGroup>();
let exitHookInstalled = false;
function track(g: GlooProcessGroup): void {
  live.add(g);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const x of [...live]) x.destroy();
    });
  }
}
const MAX_TIMEOUT_MS = 0x7fffffff;

function dtypeOf(buf: HostBuffer): number {
  if (buf instanceof Float32Array) return GLOO_DTYPE.float32;
  if (buf instanceof Float64Array) return GLOO_DTYPE.float64;
  if (buf instanceof Int32Array) return GLOO_DTYPE.int32;
  if (buf instanceof BigInt64Array) return GLOO_DTYPE.int64;
  if (buf instanceof Uint8Array) return GLOO_DTYPE.uint8;
  throw new TypeError(`unsupported buffer type ${(buf as object)?.constructor?.name ?? typeof buf}`);
}

function isDevice(buf: CommBuffer): buf is DeviceBuffer {
  return !ArrayBuffer.isView(buf);
}

function clampTimeout(ms: number): number {
  if (!Number.isFinite(ms) || ms <= 0) return MAX_TIMEOUT_MS;
  return Math.min(MAX_TIMEOUT_MS, Math.ceil(ms));
}

/** Splits a native message into its text and the group ranks of its "{ranks:...}" marker. */
export function parseGlooError(message: string): { detail: string; ranks: number[] } {
  const m = /\s*\{ranks:([0-9,]*)\}\s*$/.exec(message);
  if (!m) return { detail: message, ranks: [] };
  const ranks = m[1]!
    .split(',')
    .filter((s) => s.length > 0)
    .map(Number);
  return { detail: message.slice(0, m.index), ranks };
}

function decodeError(buf: Uint8Array): string {
  const end = buf.indexOf(0);
  return new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
}

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

/**
 * Joins (rendezvous + full TCP mesh) a gloo group. The blocking native
 * rendezvous runs on a koffi worker thread, so the event loop stays free.
 */
export async function createGlooProcessGroup(opts: GlooGroupOptions): Promise<GlooProcessGroup> {
  const lib = loadGlooLibrary();
  const { rank, size } = opts;
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`gloo: bad group size ${size}`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= size) {
    throw new RangeError(`gloo: rank ${rank} is outside a group of size ${size}`);
  }
  const ranks = opts.ranks ? [...opts.ranks] : Array.from({ length: size }, (_, i) => i);
  if (ranks.length !== size) throw new RangeError(`gloo: ${ranks.length} ranks given for a group of size ${size}`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const name = opts.name ?? 'world';
  const iface = opts.iface ?? env('BAGUA_GLOO_IFACE') ?? '';
  const hostname = opts.hostname ?? env('BAGUA_GLOO_HOSTNAME') ?? '';
  const smallBytes = opts.smallBytes ?? (env('BAGUA_GLOO_SMALL_BYTES') !== undefined ? Number(env('BAGUA_GLOO_SMALL_BYTES')) : DEFAULT_GLOO_SMALL_BYTES);
  if (!Number.isInteger(smallBytes) || smallBytes < 0 || smallBytes > 1 << 30) {
    throw new RangeError(`gloo: bad small-payload threshold ${smallBytes} (BAGUA_GLOO_SMALL_BYTES)`);
  }
  const err = new Uint8Array(ERR_CAP);
  const handle = await new Promise<unknown>((resolveP, rejectP) => {
    lib.create.async(
      rank,
      size,
      opts.store.host,
      opts.store.port,
      opts.store.token ?? '',
      opts.prefix,
      clampTimeout(timeoutMs),
      iface,
      hostname,
      smallBytes,
      err,
      ERR_CAP,
      (e: unknown, res: unknown) => (e ? rejectP(e) : resolveP(res)),
    );
  });
  if (handle === null || handle === undefined || handle === 0n || handle === 0) {
    const { detail, ranks: missing } = parseGlooError(decodeError(err));
    throw new CollectiveError(
      'init',
      name,
      ranks[rank]!,
      detail,
      missing.map((r) => ranks[r] ?? r),
    );
  }
  const group = new GlooProcessGroup(lib, handle, {
    name,
    rank,
    ranks,
    timeoutMs,
    store: opts.store,
    prefix: opts.prefix,
    iface: opts.iface,
    hostname: opts.hostname,
    smallBytes,
  });
  track(group);
  return group;
}

interface GroupState {
  name: string;
  rank: number;
  ranks: number[];
  timeoutMs: number;
  store: GlooStoreEndpoint;
  prefix: string;
  iface?: string;
  hostname?: string;
  smallBytes: number;
}

export class GlooProcessGroup implements ProcessGroup {
  readonly backend = 'gloo' as const;
  readonly name: string;
  readonly rank: number;
  readonly size: number;
  readonly ranks: readonly number[];
  timeoutMs: number;
  private handle: unknown;
  private subgroups = 0;
  private readonly state: GroupState;

  /** @internal use createGlooProcessGroup */
  constructor(
    private readonly lib: GlooLibrary,
    handle: unknown,
    state: GroupState,
  ) {
    this.handle = handle;
    this.state = state;
    this.name = state.name;
    this.rank = state.rank;
    this.size = state.ranks.length;
    this.ranks = Object.freeze([...state.ranks]);
    this.timeoutMs = state.timeoutMs;
  }

  /** The global rank of this process. */
  get globalRank(): number {
    return this.ranks[this.rank]!;
  }

  private check(op: string, status: number): void {
    if (status === GlooStatus.OK) return;
    const { detail, ranks } = parseGlooError(this.lib.lastError());
    throw new CollectiveError(
      op,
      this.name,
      this.globalRank,
      detail,
      ranks.map((r) => this.ranks[r] ?? r),
    );
  }

  private live(op: string): unknown {
    if (this.handle === null) {
      throw new CollectiveError(op, this.name, this.globalRank, 'the process group is destroyed');
    }
    return this.handle;
  }

  allReduce(buf: CommBuffer, op: ReduceOp = 'sum'): void {
    const h = this.live('allReduce');
    const code = reduceOpCode(GLOO_OP, op);
    if (isDevice(buf)) {
      const host = buf.toHost();
      this.allReduce(host, op);
      buf.fromHost(host);
      return;
    }
    const t = dtypeOf(buf);
    this.check('allReduce', this.lib.allreduce(h, buf, buf.length, t, code, clampTimeout(this.timeoutMs)) as number);
  }

  allGather(output: CommBuffer, input: CommBuffer): void {
    const h = this.live('allGather');
    if (isDevice(output) || isDevice(input)) {
      const hostIn = isDevice(input) ? input.toHost() : input;
      const hostOut = isDevice(output) ? output.toHost() : output;
      this.allGather(hostOut, hostIn);
      if (isDevice(output)) output.fromHost(hostOut);
      return;
    }
    const t = dtypeOf(input);
    if (dtypeOf(output) !== t) {
      throw new TypeError(
        `allGather: output is ${output.constructor.name} but input is ${input.constructor.name}`,
      );
    }
    checkGatherLength(this, output.length, input.length);
    this.check(
      'allGather',
      this.lib.allgather(h, output, input, input.length, t, clampTimeout(this.timeoutMs)) as number,
    );
  }

  broadcast(buf: CommBuffer, root: number): void {
    const h = this.live('broadcast');
    checkRoot(this, root);
    if (isDevice(buf)) {
      const host = buf.toHost();
      this.broadcast(host, root);
      buf.fromHost(host);
      return;
    }
    const t = dtypeOf(buf);
    this.check('broadcast', this.lib.broadcast(h, buf, buf.length, t, root, clampTimeout(this.timeoutMs)) as number);
  }

  barrier(): void {
    const h = this.live('barrier');
    this.check('barrier', this.lib.barrier(h, clampTimeout(this.timeoutMs)) as number);
  }

  async newGroup(ranks: readonly number[]): Promise<ProcessGroup | null> {
    this.live('newGroup');
    const list = subgroupRanks(this, ranks);
    const { base, name } = subgroupName(this, list, ++this.subgroups);
    const me = list.indexOf(this.globalRank);
    if (me < 0) return null;
    return createGlooProcessGroup({
      rank: me,
      size: list.length,
      ranks: list,
      store: this.state.store,
      prefix: `${this.state.prefix}/${base}`,
      timeoutMs: this.timeoutMs,
      name,
      iface: this.state.iface,
      hostname: this.state.hostname,
      smallBytes: this.state.smallBytes,
    });
  }

  destroy(): void {
    if (this.handle === null) return;
    const h = this.handle;
    this.handle = null;
    live.delete(this);
    this.lib.destroy(h);
  }
}
