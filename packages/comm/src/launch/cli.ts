/** Command line of `bagua-launch` (bin/bagua-launch.js calls main()). */
import type { BackendName } from '../process-group.js';
import { launch, LaunchError, type LaunchOptions } from './launcher.js';

export const USAGE = `usage: bagua-launch --nproc-per-node N [--backend threads|gloo|nccl]
                    [--nnodes M --node-rank R --master-addr A --master-port P]
                    [--timeout-ms T] [--grace-ms G] [--token S | --no-token] [--no-prefix]
                    script.js|script.ts [args...]

Runs the script as N ranks on this node: worker threads of this process with
--backend threads (the default), child processes with gloo or nccl. A .ts, .mts
or .cts script runs through tsx (bundled with @bagua/comm; no type check). Each rank
sees RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
and BAGUA_BACKEND; node 0 serves the rendezvous store at MASTER_ADDR:MASTER_PORT
(port 0: a free one).

The store requires a token: BAGUA_STORE_TOKEN (or --token, visible in ps), else
on one node a random one per job, handed to the ranks. A multi-node job needs
the same BAGUA_STORE_TOKEN on every node (or --no-token: no authentication).
Each job's keys live under bagua/<BAGUA_JOB_ID>/ (random unless set).

When a rank fails, the others get --grace-ms (default 2000) to end before they
are stopped; the launcher then names the rank that failed first on its own
(ranks that failed because a peer vanished say so) and exits with its code.
Ranks die with the launcher (SIGKILL on its death).`;

/** The options that take an integer, and the field each sets. */
const INT_OPTIONS = new Map<string, 'nprocPerNode' | 'nnodes' | 'nodeRank' | 'masterPort' | 'timeoutMs' | 'graceMs'>([
  ['--nproc-per-node', 'nprocPerNode'],
  ['--nnodes', 'nnodes'],
  ['--node-rank', 'nodeRank'],
  ['--master-port', 'masterPort'],
  ['--timeout-ms', 'timeoutMs'],
  ['--grace-ms', 'graceMs'],
]);

/** Parses the launcher's arguments; everything from the script on belongs to the script. */
export function parseLaunchArgs(argv: readonly string[]): LaunchOptions | 'help' {
  const o: Partial<LaunchOptions> & { args?: string[] } = {};
  const int = (name: string, v: string | undefined): number => {
    if (v === undefined || !/^-?\d+$/.test(v)) throw new LaunchError(`${name} needs an integer, got '${v ?? ''}'`);
    return Number(v);
  };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-')) break;
    if (a === '-h' || a === '--help') return 'help';
    const eq = a.indexOf('=');
    // torchrun spells options with underscores; accept both.
    const name = (eq >= 0 ? a.slice(0, eq) : a).replace(/_/g, '-');
    const value = (): string | undefined => (eq >= 0 ? a.slice(eq + 1) : argv[++i]);
    const intOption = INT_OPTIONS.get(name);
    if (intOption) {
      o[intOption] = int(name, value());
      continue;
    }
    switch (name) {
      case '--backend':
        o.backend = value() as BackendName;
        break;
      case '--master-addr':
        o.masterAddr = value() ?? '';
        break;
      case '--token': {
        const t = value();
        if (!t) throw new LaunchError(`--token needs a value`);
        o.token = t;
        break;
      }
      case '--no-token':
        o.noToken = true;
        break;
      case '--no-prefix':
        o.output = 'inherit';
        break;
      default:
        throw new LaunchError(`unknown option ${a}`);
    }
  }
  if (o.nprocPerNode === undefined) throw new LaunchError('--nproc-per-node is required');
  const script = argv[i];
  if (!script) throw new LaunchError('no script given');
  return { ...o, nprocPerNode: o.nprocPerNode, script, args: argv.slice(i + 1) };
}

/** Runs the launcher; resolves with the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let options: LaunchOptions | 'help';
  try {
    options = parseLaunchArgs(argv);
  } catch (e) {
    process.stderr.write(`bagua-launch: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    // The first signal is forwarded to the ranks; a second one ends the launcher at once.
    if (++signals > 1) process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
    stop.abort(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await launch({ ...options, signal: stop.signal });
  } catch (e) {
    process.stderr.write(`bagua-launch: ${e instanceof LaunchError ? e.message : ((e as Error).stack ?? String(e))}\n`);
    return e instanceof LaunchError ? 2 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
