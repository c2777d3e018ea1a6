/**
 * launch(): what `bagua-launch` does for one node. Starts the store (node 0,
 * on a worker thread of the launcher, with a token and a per-job key
 * namespace), runs the ranks as threads or child processes with the
 * torchrun-style environment, blames the rank that failed first on its own
 * (blame.ts, from the ranks' reports), and across nodes relays a failure and
 * each node's finding through the store so every node stops and names the same rank.
 */
import { randomBytes } from 'node:crypto';
import type { BackendName } from '../process-group.js';
import { startStore, type StoreHandle } from '../store/host.js';
import { StoreClient, StoreTimeoutError } from '../store/client.js';
import type { OutputMode } from './output.js';
import { describeBlame } from './blame.js';
import { runProcesses } from './processes.js';
import { runThreads, stopExitCode, type RunResult } from './threads.js';

export interface LaunchOptions {
  nprocPerNode: number;
  /** Default 'threads'. */
  backend?: BackendName;
  nnodes?: number;
  nodeRank?: number;
  /** Address of node 0's store; node 0 binds exactly this address (default 127.0.0.1). */
  masterAddr?: string;
  /** Port of node 0's store; 0 lets node 0 pick a free one (default 0 on one node, 29500 on several). */
  masterPort?: number;
  script: string;
  args?: readonly string[];
  /**
   * Store secret (default env BAGUA_STORE_TOKEN; on one node, else a random one
   * per job). Several nodes cannot share a token node 0 made up, so a
   * multi-node job needs one given, or noToken.
   */
  token?: string;
  /** Serve and use the store without a token (--no-token). */
  noToken?: boolean;
  /** Key namespace of this job in the store (default env BAGUA_JOB_ID, else random; node 0's on other nodes). */
  jobId?: string;
  /** Collective timeout handed to the ranks (BAGUA_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Time the surviving ranks get to exit after a failure before they are stopped (default 2000 ms). */
  graceMs?: number;
  /** Default 'prefix'. */
  output?: OutputMode;
  /** Aborting it stops the job; signal.reason may be the signal name to forward. */
  signal?: AbortSignal;
  /** Launcher diagnostics (default: stderr). */
  log?: (message: string) => void;
}

export class LaunchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LaunchError';
  }
}

const BACKENDS: readonly BackendName[] = ['threads', 'gloo', 'nccl'];
/** Where node 0 publishes the job id for the other nodes (outside any job's namespace: the store is the job's own). */
const JOB_KEY = 'bagua/launch/job';
const JOB_ID = /^[A-Za-z0-9_.-]{1,64}$/;

function checkInt(name: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new LaunchError(`${name} must be an integer ${max < Number.MAX_SAFE_INTEGER ? `from ${min} to ${max}` : `>= ${min}`}, got ${v}`);
  }
}

/** Environment the ranks would read, checked here so a bad value fails once, at start, not in every rank. */
const ENV_INTS: readonly [name: string, min: number, max: number][] = [
  ['BAGUA_TIMEOUT_MS', 1, 0x7fffffff],
  ['BAGUA_THREADS_CHUNK_BYTES', 1, 2 ** 31 - 1],
  ['BAGUA_GLOO_SMALL_BYTES', 0, 2 ** 30],
];

function checkEnv(env: NodeJS.ProcessEnv, o: LaunchOptions): void {
  for (const [name, min, max] of ENV_INTS) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    if (name === 'BAGUA_TIMEOUT_MS' && o.timeoutMs !== undefined) continue; // --timeout-ms replaces it
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      throw new LaunchError(`environment variable ${name} must be an integer from ${min} to ${max}, got '${v}'`);
    }
  }
  const job = o.jobId ?? env['BAGUA_JOB_ID'];
  if (job !== undefined && job !== '' && !JOB_ID.test(job)) {
    throw new LaunchError(`BAGUA_JOB_ID must be 1-64 characters from [A-Za-z0-9_.-], got '${job}'`);
  }
}

export function validateLaunchOptions(o: LaunchOptions): Required<Pick<LaunchOptions, 'backend' | 'nnodes' | 'nodeRank' | 'masterAddr' | 'masterPort'>> {
  const backend = o.backend ?? 'threads';
  const nnodes = o.nnodes ?? 1;
  const nodeRank = o.nodeRank ?? 0;
  const masterAddr = o.masterAddr ?? '127.0.0.1';
  const masterPort = o.masterPort ?? (nnodes > 1 ? 29500 : 0);
  checkInt('--nproc-per-node', o.nprocPerNode, 1);
  checkInt('--nnodes', nnodes, 1);
  checkInt('--node-rank', nodeRank, 0);
  checkInt('--master-port', masterPort, 0, 65535);
  if (o.timeoutMs !== undefined) checkInt('--timeout-ms', o.timeoutMs, 1, 0x7fffffff);
  if (o.graceMs !== undefined) checkInt('--grace-ms', o.graceMs, 0, 0x7fffffff);
  checkEnv(process.env, o);
  if (!BACKENDS.includes(backend)) throw new LaunchError(`--backend must be one of ${BACKENDS.join(', ')}, got '${backend}'`);
  if (nodeRank >= nnodes) throw new LaunchError(`--node-rank ${nodeRank} is out of range for --nnodes ${nnodes}`);
  if (backend === 'threads' && nnodes > 1) {
    throw new LaunchError(
      'the threads backend runs every rank as a thread of one process and cannot span nodes; ' +
        'use --backend gloo (CPU) or nccl (GPU) with --nnodes > 1',
    );
  }
  if (nodeRank > 0 && masterPort === 0) {
    throw new LaunchError('--master-port is required on nodes other than 0 (node 0 prints the port it picked)');
  }
  const token = o.token ?? process.env['BAGUA_STORE_TOKEN'];
  if (o.noToken && token) throw new LaunchError('--no-token conflicts with the store token given (BAGUA_STORE_TOKEN or token)');
  if (nnodes > 1 && !token && !o.noToken) {
    // A token made up by node 0 cannot reach the other launchers, and an open store on a network address is what the token is for.
    throw new LaunchError(
      'a multi-node job needs the same store token on every node: set BAGUA_STORE_TOKEN (e.g. `openssl rand -hex 16`) ' +
        'for every launcher, or pass --no-token to run with an unauthenticated store',
    );
  }
  if (!o.script) throw new LaunchError('no script given');
  return { backend, nnodes, nodeRank, masterAddr, masterPort };
}

/** What a node's launcher found: the rank it blames (see blame.ts). */
interface NodeOutcome {
  node: number;
  rank: number;
  code: number;
  own: boolean;
  time: number;
}

/** The node outcome to blame across nodes: one that failed on its own first, else the first (clocks of different hosts). */
async function firstOutcome(ctl: StoreClient, nnodes: number, key: (node: number) => string,
  mine: NodeOutcome | null): Promise<NodeOutcome | null> {
  const all: NodeOutcome[] = [];
  for (let i = 0; i < nnodes; i++) {
    const text = await ctl.getString(key(i)).catch(() => null);
    if (text) all.push(JSON.parse(text) as NodeOutcome);
  }
  // This node's own outcome counts even when writing it to the store failed (a busy store).
  if (mine && !all.some((o) => o.node === mine.node)) all.push(mine);
  const pool = all.some((o) => o.own) ? all.filter((o) => o.own) : all;
  return pool.reduce<NodeOutcome | null>((a, b) => (!a || b.time < a.time ? b : a), null);
}

/** Runs this node's share of the job; resolves with the exit code the launcher should exit with. */
export async function launch(options: LaunchOptions): Promise<number> {
  const { backend, nnodes, nodeRank, masterAddr, masterPort } = validateLaunchOptions(options);
  const log = options.log ?? ((m: string) => process.stderr.write(`bagua-launch: ${m}\n`));
  // Without a given token, a single-node job makes one up: only its own ranks can then reach its store.
  const token = options.noToken ? undefined : options.token || process.env['BAGUA_STORE_TOKEN'] || randomBytes(16).toString('hex');
  const n = options.nprocPerNode;
  const multi = nnodes > 1;

  let store: StoreHandle | null = null;
  let port = masterPort;
  if (nodeRank === 0) {
    store = await startStore({ host: masterAddr, port: masterPort, ...(token ? { token } : {}), log });
    port = store.port;
    if (multi) log(`store listening on ${masterAddr}:${port} (start the other nodes with --master-port ${port})`);
  }

  const stop = new AbortController();
  const onOuterAbort = () => stop.abort(options.signal?.reason ?? 'SIGTERM');
  if (options.signal?.aborted) onOuterAbort();
  else options.signal?.addEventListener('abort', onOuterAbort, { once: true });

  let ctl: StoreClient | null = null;
  let watch: StoreClient | null = null;
  let remoteFailure: { node: number; rank: number; code: number } | null = null;
  let running = true;
  const given = options.jobId || process.env['BAGUA_JOB_ID'] || undefined;
  let jobId = given ?? randomBytes(8).toString('hex');
  try {
    const connect = (ms = options.timeoutMs ?? 300_000) =>
      StoreClient.connect({ host: masterAddr, port, ...(token ? { token } : {}), connectTimeoutMs: ms });
    if (multi) {
      ctl = await connect();
      watch = await connect();
      // Every node's ranks must use node 0's job id: node 0 publishes it.
      if (nodeRank === 0) await ctl.set(JOB_KEY, jobId);
      else {
        await ctl.wait(JOB_KEY, options.timeoutMs ?? 300_000);
        const published = (await ctl.getString(JOB_KEY)) ?? jobId;
        if (given && given !== published) throw new LaunchError(`BAGUA_JOB_ID '${given}' differs from node 0's job id '${published}'`);
        jobId = published;
      }
    }
    const FAILED_KEY = `bagua/${jobId}/launch/failed`;
    const doneKey = (node: number) => `bagua/${jobId}/launch/done/${node}`;
    const resultKey = (node: number) => `bagua/${jobId}/launch/result/${node}`;
    if (multi) {
      // Another node's failure stops ours; so does losing node 0 (the store) while ranks
      // run: no answer and no new connection within the job's timeout. A store slowed by
      // load, or a network blip, is not taken for a dead node 0; and where the network is
      // really gone, this node's ranks fail on their own first, naming their peers.
      const watchMs = Math.min(options.timeoutMs ?? 300_000, 0xfffffff0);
      void (async () => {
        let lostAt: number | null = null;
        for (;;) {
          try {
            if (lostAt !== null) {
              const left = watchMs - (Date.now() - lostAt);
              if (left <= 0) throw new Error('no new connection');
              watch?.close();
              watch = await connect(left);
              lostAt = null;
            }
            await watch!.wait(FAILED_KEY, watchMs);
          } catch (e) {
            if (!running) return;
            if (e instanceof StoreTimeoutError) continue;
            if (lostAt === null) {
              lostAt = Date.now();
              log(`lost the connection to the store at ${masterAddr}:${port} (${(e as Error).message}); ` +
                `reconnecting for up to ${watchMs} ms`);
              continue;
            }
            if (Date.now() - lostAt < watchMs) {
              await new Promise((r) => setTimeout(r, 200));
              continue;
            }
            log(`lost the store at ${masterAddr}:${port} (node 0 is gone): stopping this node's ranks`);
            remoteFailure ??= { node: 0, rank: -1, code: 1 };
            stop.abort('SIGTERM');
            return;
          }
          if (!running) return;
          const text = await ctl!.getString(FAILED_KEY).catch(() => null);
          const f = text ? (JSON.parse(text) as { node: number; rank: number; code: number }) : { node: -1, rank: -1, code: 1 };
          if (f.node !== nodeRank) {
            const what = f.rank >= 0 ? `rank ${f.rank} on node ${f.node} failed with exit code ${f.code}` : `node ${f.node} was stopped`;
            log(`${what}: stopping this node's ranks`);
            remoteFailure = f;
            stop.abort('SIGTERM');
          }
          return;
        }
      })();
    }

    const env: Record<string, string> = {
      MASTER_ADDR: masterAddr,
      MASTER_PORT: String(port),
      BAGUA_STORE_SERVED: '1', // rank 0 must not start a second store
      BAGUA_NNODES: String(nnodes),
      BAGUA_NODE_RANK: String(nodeRank),
      BAGUA_JOB_ID: jobId,
    };
    if (token) env['BAGUA_STORE_TOKEN'] = token;
    if (options.timeoutMs !== undefined) env['BAGUA_TIMEOUT_MS'] = String(options.timeoutMs);
    const common = {
      env,
      output: options.output ?? 'prefix',
      signal: stop.signal,
      ...(options.graceMs !== undefined ? { graceMs: options.graceMs } : {}),
    };
    let result: RunResult;
    if (backend === 'threads') {
      result = await runThreads(n, options.script, options.args ?? [], {
        ...common,
        ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      });
    } else {
      result = await runProcesses(n, options.script, options.args ?? [], {
        ...common,
        backend,
        rankOffset: nodeRank * n,
        worldSize: nnodes * n,
      });
    }
    running = false;

    // Ranks that failed here on their own count over a remote failure; a signal to this launcher over both.
    const local = result.blame && !result.blame.byLauncher ? result.blame : null;
    let code = result.exitCode;
    if (stop.signal.aborted && !remoteFailure) code = stopExitCode(stop.signal.reason);
    else if (local) {
      code = local.exitCode;
      log(describeBlame(local));
    } else if (remoteFailure) code = (remoteFailure as { code: number }).code || 1;

    if (multi && ctl) {
      const outcome: NodeOutcome | null = local
        ? { node: nodeRank, rank: local.rank, code: local.exitCode, own: local.own, time: local.time } : null;
      if (outcome) await ctl.set(resultKey(nodeRank), JSON.stringify(outcome)).catch(() => undefined);
      if (code !== 0 && !remoteFailure) {
        // A rank failed here, or this launcher was stopped by a signal (rank -1): stop the other nodes.
        await ctl.set(FAILED_KEY, JSON.stringify({ node: nodeRank, rank: result.failedRank ?? -1, code })).catch(() => undefined);
      }
      await ctl.set(doneKey(nodeRank), String(code)).catch(() => undefined);
      // Node 0 keeps the store up until every node is done with it; after a failure every node waits
      // (bounded) for the others' outcomes, so that all of them blame the same rank.
      const keys = Array.from({ length: nnodes }, (_, i) => doneKey(i));
      let failed = code !== 0;
      if (nodeRank === 0 || failed) {
        const until = failed ? Date.now() + (options.graceMs ?? 2000) * 2 + 2000 : Infinity;
        while (Date.now() < until) {
          try {
            await ctl.wait(keys, Math.min(1000, until - Date.now()));
            break;
          } catch (e) {
            if (!(e instanceof StoreTimeoutError)) break;
            if (!failed && (await ctl.check(FAILED_KEY).catch(() => false))) failed = true;
          }
        }
      }
      if (failed || (await ctl.check(FAILED_KEY).catch(() => false))) {
        const first = await firstOutcome(ctl, nnodes, resultKey, outcome);
        if (first && (!stop.signal.aborted || remoteFailure)) code = first.code;
        if (first && (first.node !== nodeRank || first.rank !== local?.rank)) {
          log(`job: rank ${first.rank} on node ${first.node} failed first${first.own ? '' : ' (no rank failed on its own)'} (exit code ${first.code})`);
        }
        if (!first && code === 0) {
          const text = await ctl.getString(FAILED_KEY).catch(() => null);
          code = text ? (JSON.parse(text) as { code: number }).code || 1 : 1;
        }
      }
    }
    return code;
  } finally {
    running = false;
    options.signal?.removeEventListener('abort', onOuterAbort);
    ctl?.close();
    watch?.close();
    await store?.close();
  }
}
