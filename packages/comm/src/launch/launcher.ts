/**
 * launch(): what `bagua-launch` does for one node. Starts the store (node 0,
 * on a worker thread of the launcher), runs the ranks as threads or child
 * processes with the torchrun-style environment, and across nodes relays a
 * failure through the store so every node stops.
 */
import type { BackendName } from '../process-group.js';
import { startStore, type StoreHandle } from '../store/host.js';
import { StoreClient, StoreTimeoutError } from '../store/client.js';
import type { OutputMode } from './output.js';
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
  /** Store secret (default env BAGUA_STORE_TOKEN). */
  token?: string;
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
const FAILED_KEY = 'bagua/launch/failed';
const doneKey = (node: number) => `bagua/launch/done/${node}`;

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new LaunchError(`${name} must be an integer >= ${min}, got ${v}`);
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
  checkInt('--master-port', masterPort, 0);
  if (masterPort > 65535) throw new LaunchError(`--master-port must be at most 65535, got ${masterPort}`);
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
  if (!o.script) throw new LaunchError('no script given');
  return { backend, nnodes, nodeRank, masterAddr, masterPort };
}

/** Runs this node's share of the job; resolves with the exit code the launcher should exit with. */
export async function launch(options: LaunchOptions): Promise<number> {
  const { backend, nnodes, nodeRank, masterAddr, masterPort } = validateLaunchOptions(options);
  const log = options.log ?? ((m: string) => process.stderr.write(`bagua-launch: ${m}\n`));
  const token = options.token ?? process.env['BAGUA_STORE_TOKEN'] ?? undefined;
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
  try {
    if (multi) {
      const connect = () =>
        StoreClient.connect({ host: masterAddr, port, ...(token ? { token } : {}), connectTimeoutMs: options.timeoutMs ?? 300_000 });
      ctl = await connect();
      watch = await connect();
      // Another node's failure stops ours; so does losing node 0 (the store) while ranks run.
      void (async () => {
        for (;;) {
          try {
            await watch!.wait(FAILED_KEY, 1000);
          } catch (e) {
            if (!running) return;
            if (e instanceof StoreTimeoutError) continue;
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

    let code = result.exitCode;
    if (remoteFailure) code = (remoteFailure as { code: number }).code || 1;
    else if (stop.signal.aborted) code = stopExitCode(stop.signal.reason);
    else if (result.failedRank !== null) log(`rank ${result.failedRank} failed with exit code ${result.exitCode}; the job was stopped`);

    if (multi && ctl) {
      if (code !== 0 && !remoteFailure) {
        // A rank failed here, or this launcher was stopped by a signal (rank -1): stop the other nodes.
        await ctl.set(FAILED_KEY, JSON.stringify({ node: nodeRank, rank: result.failedRank ?? -1, code })).catch(() => undefined);
      }
      await ctl.set(doneKey(nodeRank), String(code)).catch(() => undefined);
      if (nodeRank === 0) {
        // Keep the store up until every node is done with it (bounded once the job has failed).
        const keys = Array.from({ length: nnodes }, (_, i) => doneKey(i));
        const failed = code !== 0;
        const until = failed ? Date.now() + (options.graceMs ?? 2000) * 2 + 5000 : Infinity;
        while (Date.now() < until) {
          try {
            await ctl.wait(keys, Math.min(1000, until - Date.now()));
            break;
          } catch (e) {
            if (!(e instanceof StoreTimeoutError)) break;
            if (!failed && (await ctl.check(FAILED_KEY).catch(() => false))) {
              const text = await ctl.getString(FAILED_KEY).catch(() => null);
              if (text && code === 0) code = (JSON.parse(text) as { code: number }).code || 1;
            }
          }
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
