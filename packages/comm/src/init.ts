/**
 * initProcessGroup and the default-group helpers (the facade re-exports them).
 *
 * threads: the world comes from workerData (runThreads / bagua-launch), or is
 *   a single rank when the script runs on its own.
 * gloo, nccl: ranks meet through the TCP store (env:// or tcp://), then the
 *   backend's factory, registered by its module, builds the group.
 */
import { CollectiveError, DEFAULT_TIMEOUT_MS, type BackendName, type ProcessGroup } from './process-group.js';
import { StoreClient, StoreTimeoutError } from './store/client.js';
import { startStore, type StoreHandle } from './store/host.js';
import { createSingleRankWorld, createThreadsWorld, threadsWorkerInfo } from './threads/bootstrap.js';

export interface InitOptions {
  /** Default: env BAGUA_BACKEND; else 'threads' under runThreads or with one rank, else 'gloo'. */
  backend?: BackendName;
  /** 'env://' (default) or 'tcp://host:port?rank=R&world_size=W'. Ignored by threads. */
  initMethod?: string;
  rank?: number;
  worldSize?: number;
  /** Default timeout of every collective of the group (env BAGUA_TIMEOUT_MS, else 300 s). Also bounds the rendezvous. */
  timeoutMs?: number;
}

export interface BackendFactoryOptions {
  rank: number;
  worldSize: number;
  /** Connected to the job's store; the factory may use it and read host/port/token for a native client. */
  store: StoreClient;
  timeoutMs: number;
  /** Key prefix reserved for this group (e.g. 'bagua/pg0/'); keys under it are free for the backend. */
  prefix: string;
  localRank: number;
  localWorldSize: number;
}

export type BackendFactory = (options: BackendFactoryOptions) => Promise<ProcessGroup>;

const factories = new Map<string, BackendFactory>();
/** Modules that register a backend when imported (written by the backend's authors). */
const BACKEND_MODULES: Readonly<Record<string, string>> = {
  gloo: './gloo/index.js',
  nccl: './nccl/index.js',
};

/** Called by a backend module when it is imported; the last registration wins. */
export function registerBackendFactory(name: BackendName, factory: BackendFactory): void {
  factories.set(name, factory);
}

export function hasBackendFactory(name: BackendName): boolean {
  return factories.has(name);
}

async function findFactory(name: BackendName): Promise<BackendFactory> {
  let f = factories.get(name);
  if (f) return f;
  const spec = BACKEND_MODULES[name];
  let cause = '';
  if (spec) {
    try {
      // A computed specifier: the module may not exist in this build.
      await import(new URL(spec, import.meta.url).href);
    } catch (e) {
      cause = `: loading ${spec} failed: ${(e as Error).message}`;
    }
    f = factories.get(name);
    if (f) return f;
  }
  throw new Error(
    `backend '${name}' is not available: no factory is registered${cause || ` (importing ${spec ?? 'its module'} registered none)`}`,
  );
}

// ------------------------------------------------------------------ environment

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new Error(`environment variable ${name} must be a non-negative integer, got '${v}'`);
  return Number(v);
}

function requireInt(what: string, v: number | undefined, min: number): number {
  if (v === undefined) throw new Error(`initProcessGroup: ${what} is not set`);
  if (!Number.isInteger(v) || v < min) throw new Error(`initProcessGroup: ${what} must be an integer >= ${min}, got ${v}`);
  return v;
}

export interface Rendezvous {
  host: string;
  port: number;
  rank: number | undefined;
  worldSize: number | undefined;
}

/** Parses 'env://' (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE) or 'tcp://host:port?rank=&world_size='. */
export function parseInitMethod(method: string): Rendezvous {
  if (method === 'env://' || method === 'env:') {
    const port = envInt('MASTER_PORT');
    if (port === undefined) throw new Error('initProcessGroup: env:// needs MASTER_PORT (and MASTER_ADDR, RANK, WORLD_SIZE)');
    return {
      host: process.env['MASTER_ADDR'] || '127.0.0.1',
      port,
      rank: envInt('RANK'),
      worldSize: envInt('WORLD_SIZE'),
    };
  }
  if (method.startsWith('tcp://')) {
    const u = new URL(method);
    if (!u.port) throw new Error(`initProcessGroup: ${method} has no port`);
    const q = (k: string): number | undefined => {
      const v = u.searchParams.get(k);
      if (v === null) return undefined;
      if (!/^\d+$/.test(v)) throw new Error(`initProcessGroup: ${k} in ${method} must be a non-negative integer`);
      return Number(v);
    };
    return {
      host: u.hostname.replace(/^\[(.*)\]$/, '$1'), // IPv6 literals come bracketed
      port: Number(u.port),
      rank: q('rank'),
      worldSize: q('world_size') ?? q('worldSize'),
    };
  }
  throw new Error(`initProcessGroup: unsupported init method '${method}' (use env:// or tcp://host:port?rank=&world_size=)`);
}

/**
 * 'bagua/<BAGUA_JOB_ID>/' (set by bagua-launch): every rendezvous key of the
 * job, and so every gloo/nccl group's, lives under it, so that two jobs (or a
 * rerun) sharing a store never read each other's keys. 'bagua/' without one.
 */
export function jobPrefix(): string {
  const job = process.env['BAGUA_JOB_ID'];
  if (job === undefined || job === '') return 'bagua/';
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(job)) throw new Error(`environment variable BAGUA_JOB_ID must be 1-64 characters from [A-Za-z0-9_.-], got '${job}'`);
  return `bagua/${job}/`;
}

// ------------------------------------------------------------------ the default group

interface DefaultState {
  group: ProcessGroup;
  store: StoreClient | null;
  hosted: StoreHandle | null;
  prefix: string;
  localRank: number;
  localWorldSize: number;
}

let state: DefaultState | null = null;
let initCount = 0; // every rank initialises in the same order, so this names the same keys everywhere

export async function initProcessGroup(options: InitOptions = {}): Promise<ProcessGroup> {
  if (state) throw new Error('initProcessGroup: the default process group is already initialised (destroyProcessGroup() first)');
  const timeoutMs = options.timeoutMs ?? envInt('BAGUA_TIMEOUT_MS') ?? undefined;
  const info = threadsWorkerInfo();
  const envBackend = process.env['BAGUA_BACKEND'] as BackendName | undefined;
  const envWorld = options.worldSize ?? envInt('WORLD_SIZE');
  const backend: BackendName =
    options.backend ?? (envBackend || (info ? 'threads' : envWorld !== undefined && envWorld > 1 ? 'gloo' : 'threads'));
  if (!['threads', 'gloo', 'nccl'].includes(backend)) {
    throw new Error(`initProcessGroup: unknown backend '${backend}' (threads, gloo, nccl)`);
  }

  if (backend === 'threads') {
    let group: ProcessGroup;
    if (info) {
      if (options.worldSize !== undefined && options.worldSize !== info.worldSize) {
        throw new Error(`initProcessGroup: worldSize ${options.worldSize} disagrees with the ${info.worldSize} threads started`);
      }
      if (options.rank !== undefined && options.rank !== info.rank) {
        throw new Error(`initProcessGroup: rank ${options.rank} disagrees with this thread's rank ${info.rank}`);
      }
      group = createThreadsWorld(info, timeoutMs ?? info.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    } else {
      if ((envWorld ?? 1) > 1) {
        throw new Error(
          `initProcessGroup: the threads backend runs ranks as worker threads of one process, but this is a ` +
            `separate process (WORLD_SIZE=${envWorld}); start the script with \`bagua-launch --backend threads\` ` +
            `or runThreads(), or use the gloo backend for processes`,
        );
      }
      group = createSingleRankWorld(timeoutMs ?? DEFAULT_TIMEOUT_MS);
    }
    initCount++;
    state = {
      group,
      store: null,
      hosted: null,
      prefix: '',
      localRank: info?.localRank ?? 0,
      localWorldSize: info?.localWorldSize ?? 1,
    };
    return group;
  }

  const rdzv = parseInitMethod(options.initMethod ?? 'env://');
  const rank = requireInt('rank (RANK)', options.rank ?? rdzv.rank, 0);
  const worldSize = requireInt('world size (WORLD_SIZE)', options.worldSize ?? rdzv.worldSize, 1);
  if (rank >= worldSize) throw new Error(`initProcessGroup: rank ${rank} is out of range for world size ${worldSize}`);
  const limit = timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const token = process.env['BAGUA_STORE_TOKEN'] || undefined;

  // Without a launcher, rank 0 serves the store, on its own thread so this one may block.
  let hosted: StoreHandle | null = null;
  if (rank === 0 && process.env['BAGUA_STORE_SERVED'] !== '1') {
    hosted = await startStore({ host: rdzv.host, port: rdzv.port, ...(token ? { token } : {}) });
    hosted.unref(); // the process may end; destroyProcessGroup() waits for the others first
  }
  let store: StoreClient | null = null;
  try {
    store = await StoreClient.connect({ host: rdzv.host, port: rdzv.port, ...(token ? { token } : {}), connectTimeoutMs: limit });
    const prefix = `${jobPrefix()}pg${initCount++}/`;
    await store.set(`${prefix}join/${rank}`, '1');
    const keys = Array.from({ length: worldSize }, (_, r) => `${prefix}join/${r}`);
    try {
      await store.wait(keys, limit);
    } catch (e) {
      if (!(e instanceof StoreTimeoutError)) throw e;
      const missing = e.missingKeys.map((k) => Number(k.slice(k.lastIndexOf('/') + 1)));
      throw new CollectiveError(
        'initProcessGroup',
        'world',
        rank,
        `rendezvous through the store at ${rdzv.host}:${rdzv.port} timed out after ${limit} ms`,
        missing,
      );
    }
    const localRank = envInt('LOCAL_RANK') ?? rank;
    const localWorldSize = envInt('LOCAL_WORLD_SIZE') ?? worldSize;
    const factory = await findFactory(backend);
    const group = await factory({ rank, worldSize, store, timeoutMs: limit, prefix, localRank, localWorldSize });
    state = { group, store, hosted, prefix, localRank, localWorldSize };
    return group;
  } catch (e) {
    store?.close();
    await hosted?.close();
    throw e;
  }
}

export function isInitialized(): boolean {
  return state !== null;
}

/** The group made by initProcessGroup(); throws when there is none. */
export function defaultGroup(): ProcessGroup {
  if (!state) throw new Error('the default process group is not initialised: call initProcessGroup() first');
  return state.group;
}

/** This rank in `group` (default: the default group). */
export function getRank(group?: ProcessGroup): number {
  return (group ?? defaultGroup()).rank;
}

export function getWorldSize(group?: ProcessGroup): number {
  return (group ?? defaultGroup()).size;
}

/** Rank on this node: LOCAL_RANK, else the rank given by the thread launcher, else 0. */
export function getLocalRank(): number {
  if (state) return state.localRank;
  return envInt('LOCAL_RANK') ?? threadsWorkerInfo()?.localRank ?? 0;
}

export function getLocalWorldSize(): number {
  if (state) return state.localWorldSize;
  return envInt('LOCAL_WORLD_SIZE') ?? threadsWorkerInfo()?.localWorldSize ?? 1;
}

/** The store client of the default group (process backends), or null. */
export function defaultStore(): StoreClient | null {
  return state?.store ?? null;
}

/**
 * Destroys the default group. With a store, the ranks first meet there (bounded
 * by the group's timeout, at most 30 s) so that rank 0, which may host the
 * store, does not take it away from ranks still using it.
 */
export async function destroyProcessGroup(): Promise<void> {
  const s = state;
  if (!s) return;
  state = null;
  try {
    if (s.store) {
      const { rank, size } = s.group;
      await s.store.set(`${s.prefix}exit/${rank}`, '1').catch(() => undefined);
      if (s.hosted) {
        const keys = Array.from({ length: size }, (_, r) => `${s.prefix}exit/${r}`);
        await s.store.wait(keys, Math.min(s.group.timeoutMs, 30_000)).catch(() => undefined);
      }
    }
  } finally {
    s.group.destroy();
    s.store?.close();
    await s.hosted?.close();
  }
}

/**
 * Connects to the job's store as the launcher described it (MASTER_ADDR,
 * MASTER_PORT, BAGUA_STORE_TOKEN), for scripts that coordinate through it.
 */
export async function connectStore(options: { host?: string; port?: number; token?: string; connectTimeoutMs?: number } = {}): Promise<StoreClient> {
  const port = options.port ?? envInt('MASTER_PORT');
  if (port === undefined) throw new Error('connectStore: no port given and MASTER_PORT is not set');
  const token = options.token ?? (process.env['BAGUA_STORE_TOKEN'] || undefined);
  return StoreClient.connect({
    host: options.host ?? (process.env['MASTER_ADDR'] || '127.0.0.1'),
    port,
    ...(token ? { token } : {}),
    ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
  });
}
