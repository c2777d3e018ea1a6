/**
 * The 'gloo' backend: a ProcessGroup over libbagua_gloo.so (Gloo's TCP
 * transport, rendezvous through the job's store). Collectives are
 * synchronous native calls over host memory; HostStagedGroup stages device
 * buffers through the host. allReduceAsync queues the call on the shim's
 * communication thread (one per group), which overlaps it with the caller's
 * work (./async-work.ts).
 */
import { CollectiveError, DEFAULT_TIMEOUT_MS, type HostBuffer, type ProcessGroup, type ReduceOp, type Work } from '../process-group.js';
import { hostDType } from '../buffers.js';
import { HostStagedGroup } from '../group/host-staging.js';
import type { SubgroupSpec } from '../group/base.js';
import { GLOO_DTYPE, GLOO_OP, GlooStatus, loadGlooLibrary, type GlooLibrary } from './library.js';
import { GlooWork } from './async-work.js';

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
   * All-gathers and broadcasts whose per-rank payload is at most this many
   * bytes take the low-latency path (gloo's synchronous mode); all-reduces
   * of any size take the shim's synchronous ring (payloads up to 32 KiB
   * travel in the call's header) unless it is 0. 0 sends every payload
   * through gloo's own algorithms. Must be equal on every rank. Default env
   * BAGUA_GLOO_SMALL_BYTES, else 1 MiB.
   * Whatever it is, every collective first exchanges its descriptor with
   * every peer, so ranks calling different collectives fail at once.
   */
  smallBytes?: number;
}

export const DEFAULT_GLOO_SMALL_BYTES = 1 << 20;

const ERR_CAP = 4096;
/** Most peers at fault a failed rendezvous reports (group ranks, filled by the shim). */
const FAULT_CAP = 1024;
const MAX_TIMEOUT_MS = 0x7fffffff;

function clampTimeout(ms: number): number {
  if (!Number.isFinite(ms) || ms <= 0) return MAX_TIMEOUT_MS;
  return Math.min(MAX_TIMEOUT_MS, Math.ceil(ms));
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
  const faults = new Int32Array(FAULT_CAP);
  const nfaults = new Int32Array(1);
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
      faults,
      FAULT_CAP,
      nfaults,
      (e: unknown, res: unknown) => (e ? rejectP(e) : resolveP(res)),
    );
  });
  if (handle === null || handle === undefined || handle === 0n || handle === 0) {
    const missing = [...faults.subarray(0, Math.min(nfaults[0]!, FAULT_CAP))].map((r) => ranks[r] ?? r);
    throw new CollectiveError('init', name, ranks[rank]!, decodeError(err), missing);
  }
  return new GlooProcessGroup(lib, handle, {
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

export class GlooProcessGroup extends HostStagedGroup {
  readonly backend = 'gloo' as const;
  private handle: unknown;

  /** @internal use createGlooProcessGroup */
  constructor(
    private readonly lib: GlooLibrary,
    handle: unknown,
    private readonly state: GroupState,
  ) {
    super(state);
    this.handle = handle;
    this.closeAtThreadExit();
  }

  /** Throws the last native failure on this thread as a CollectiveError naming the peers at fault. */
  private check(op: string, status: number): void {
    if (status === GlooStatus.OK) return;
    const detail = this.lib.lastError();
    throw this.error(op, detail, this.lib.lastErrorRanks().map((r) => this.ranks[r] ?? r));
  }

  private live(op: string): unknown {
    this.ensureOpen(op);
    return this.handle;
  }

  protected allReduceHost(buf: HostBuffer, op: ReduceOp): void {
    const h = this.live('allReduce');
    const code = this.reduceOpCode(GLOO_OP, op);
    const t = GLOO_DTYPE[hostDType(buf)];
    this.check('allReduce', this.lib.allreduce(h, buf, buf.length, t, code, clampTimeout(this.timeoutMs)) as number);
  }

  /** Started works not yet waited for: settled before destroy frees the context. */
  private readonly started = new Set<GlooWork>();

  protected override allReduceHostAsync(buf: HostBuffer, op: ReduceOp): Work {
    const h = this.live('allReduce');
    const code = this.reduceOpCode(GLOO_OP, op);
    const t = GLOO_DTYPE[hostDType(buf)];
    const ticket = [0n];
    this.check('allReduce', this.lib.allreduceStart(h, buf, buf.length, t, code, clampTimeout(this.timeoutMs), ticket) as number);
    const work = new GlooWork(BigInt(ticket[0]!), buf, {
      test: (id) => (this.handle === null ? 1 : (this.lib.test(this.handle, id) as number)),
      wait: (id) => {
        if (this.handle === null) return this.error('allReduce', 'the process group was destroyed before wait()');
        const status = this.lib.wait(this.handle, id, 0) as number;
        if (status === GlooStatus.OK) return null;
        return this.error('allReduce', this.lib.lastError(), this.lib.lastErrorRanks().map((r) => this.ranks[r] ?? r));
      },
      settled: (w) => this.started.delete(w),
    });
    this.started.add(work);
    return work;
  }

  protected allGatherHost(output: HostBuffer, input: HostBuffer): void {
    const h = this.live('allGather');
    const dtype = hostDType(input);
    this.checkGather({ dtype: hostDType(output), length: output.length }, { dtype, length: input.length });
    const t = GLOO_DTYPE[dtype];
    this.check('allGather', this.lib.allgather(h, output, input, input.length, t, clampTimeout(this.timeoutMs)) as number);
  }

  protected broadcastHost(buf: HostBuffer, root: number): void {
    const h = this.live('broadcast');
    this.checkRoot(root);
    const t = GLOO_DTYPE[hostDType(buf)];
    this.check('broadcast', this.lib.broadcast(h, buf, buf.length, t, root, clampTimeout(this.timeoutMs)) as number);
  }

  barrier(): void {
    const h = this.live('barrier');
    this.check('barrier', this.lib.barrier(h, clampTimeout(this.timeoutMs)) as number);
  }

  protected createSubgroup(spec: SubgroupSpec): Promise<ProcessGroup> {
    return createGlooProcessGroup({
      ...this.subgroupFields(spec),
      store: this.state.store,
      prefix: `${this.state.prefix}/${spec.base}`,
      iface: this.state.iface,
      hostname: this.state.hostname,
      smallBytes: this.state.smallBytes,
    });
  }

  protected release(): void {
    // Each started call finishes (or fails) before the context goes: its
    // buffer is the caller's again, and a later wait() reports its outcome.
    for (const w of [...this.started]) w.settle();
    const h = this.handle;
    this.handle = null;
    this.lib.destroy(h);
    this.started.clear();
  }
}
