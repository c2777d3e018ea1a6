/**
 * runThreads: runs one script as N ranks, each a worker thread of this
 * process, with the `threads` backend's shared memory set up. bagua-launch
 * uses it for --backend threads; tests and benchmarks call it directly.
 */
import { constants as osConstants } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';
import { AbortReason } from '../threads/layout.js';
import { ThreadsCoordinator } from '../threads/coordinator.js';
import type { ThreadsWorkerInfo } from '../threads/bootstrap.js';
import { buildReport, readThreadReport, THREAD_REPORT_BYTES } from '../report.js';
import { assignBlame, type Blame, type RankEnd } from './blame.js';
import { RankOutput, type OutputMode } from './output.js';
import { isTypeScript, typeScriptWorkerEntry } from './typescript.js';

/** How long after a rank thread exits its stdout/stderr may take to end (all read). */
const STREAM_END_MS = 15_000;

export interface RunThreadsOptions {
  /** Extra environment for the ranks (on top of process.env and the rank variables). */
  env?: Record<string, string | undefined>;
  /** Default collective timeout of the ranks' groups (ms). */
  timeoutMs?: number;
  /** Bytes per rank slot in each group's shared memory (default env BAGUA_THREADS_CHUNK_BYTES, else 512 KiB). */
  chunkBytes?: number;
  /** Default 'inherit'. */
  output?: OutputMode;
  /** After a rank fails, how long the others get to finish on their own before being terminated (default 2000 ms). */
  graceMs?: number;
  /** Any structured-clone value, visible to the ranks as workerData.data. */
  data?: unknown;
  /** Aborting it stops every rank at once; exitCode becomes 128 + the signal's number when signal.reason is a signal name ('SIGTERM'), the reason when it is a number, else 130. */
  signal?: AbortSignal;
  /** Node options for the rank threads (default: this process's execArgv). */
  execArgv?: string[];
  /** Called with each rank's Worker once started (to talk to it over parentPort, or terminate it). */
  onWorker?: (rank: number, worker: Worker) => void;
}

export interface RunResult {
  /** 0 when every rank succeeded, else the exit code of the rank blamed (see blame). */
  exitCode: number;
  exitCodes: number[];
  /** The rank blamed for the failure (the first that failed on its own), or null. */
  failedRank: number | null;
  /** Who failed first, and how the others ended (null when every rank succeeded). */
  blame: Blame | null;
  /** Each rank's output, when output is 'capture' (else empty strings). */
  stdout: string[];
  stderr: string[];
}

/** The result once every rank has ended: a stop request's code, else the blamed rank's, else 0. */
export function runResult(exitCodes: number[], ends: readonly RankEnd[], stopCode: number | null, output: RankOutput): RunResult {
  const blame = assignBlame(ends);
  return {
    exitCode: stopCode ?? blame?.exitCode ?? 0,
    exitCodes,
    // A job stopped from outside has no failed rank (the ranks ended because they were stopped).
    failedRank: stopCode === null ? (blame?.rank ?? null) : null,
    blame,
    stdout: output.stdout,
    stderr: output.stderr,
  };
}

/** The exit code for a stop request: 128 + signal number for a signal name, the number itself, else 130. */
export function stopExitCode(reason: unknown): number {
  if (typeof reason === 'number') return reason;
  if (typeof reason === 'string' && reason in osConstants.signals) {
    return 128 + osConstants.signals[reason as NodeJS.Signals];
  }
  return 130;
}

/** Throws a RangeError unless `n` is a positive whole number of ranks (`fn` names the caller). */
export function checkRankCount(fn: string, n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${fn}: need a positive number of ranks, got ${n}`);
}

/** A rank's environment: process.env, then `extra` (unset values dropped), then the rank variables. */
export function rankEnv(
  extra: Record<string, string | undefined> | undefined,
  rank: { rank: number; localRank: number; worldSize: number; localWorldSize: number; backend: string },
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...extra })) if (v !== undefined) env[k] = v;
  return Object.assign(env, {
    RANK: String(rank.rank),
    LOCAL_RANK: String(rank.localRank),
    WORLD_SIZE: String(rank.worldSize),
    LOCAL_WORLD_SIZE: String(rank.localWorldSize),
    BAGUA_BACKEND: rank.backend,
  });
}

/** The report a thread rank left, else one made here from the error it died of (cloned with its fields). */
function threadReport(rank: number, code: number, buf: SharedArrayBuffer, uncaught: Error | undefined) {
  if (code === 0) return null;
  return readThreadReport(buf) ?? (uncaught ? buildReport(rank, code, uncaught, null) : null);
}

function scriptUrl(script: string | URL): URL {
  return typeof script === 'string' ? (script.startsWith('file:') ? new URL(script) : pathToFileURL(resolve(script))) : script;
}

export function runThreads(
  n: number,
  script: string | URL,
  args: readonly string[] = [],
  options: RunThreadsOptions = {},
): Promise<RunResult> {
  checkRankCount('runThreads', n);
  const url = scriptUrl(script);
  // A TypeScript script starts behind an entry that registers tsx in the thread (typescript.ts).
  const entry = isTypeScript(url) ? typeScriptWorkerEntry() : url;
  const envChunk = Number(process.env['BAGUA_THREADS_CHUNK_BYTES'] || NaN);
  const coord = new ThreadsCoordinator(n, options.chunkBytes ?? (envChunk > 0 ? envChunk : undefined));
  const output = new RankOutput(n, options.output ?? 'inherit', (i) => i);
  const graceMs = options.graceMs ?? 2000;
  const exitCodes: number[] = new Array(n).fill(-1);
  const workers: Worker[] = [];
  const ends: RankEnd[] = [];
  const terminatedAt: (number | undefined)[] = new Array(n).fill(undefined);
  const reportBufs = Array.from({ length: n }, () => new SharedArrayBuffer(THREAD_REPORT_BYTES));
  let failed = false;
  let stopCode: number | null = null;
  let graceTimer: NodeJS.Timeout | null = null;

  const stopAll = () => {
    for (let r = 0; r < n; r++) {
      if (exitCodes[r] !== -1) continue;
      terminatedAt[r] ??= Date.now();
      void workers[r]!.terminate();
    }
  };

  return new Promise<RunResult>((resolveRun) => {
    let left = n;
    const finished = () => {
      if (graceTimer) clearTimeout(graceTimer);
      options.signal?.removeEventListener('abort', onAbort);
      resolveRun(runResult(exitCodes, ends, stopCode, output));
    };
    const onAbort = () => {
      stopCode = stopExitCode(options.signal?.reason);
      coord.abort(AbortReason.STOPPED, -1, stopCode);
      stopAll();
    };

    for (let r = 0; r < n; r++) {
      const { port1, port2 } = new MessageChannel();
      const info: ThreadsWorkerInfo = {
        backend: 'threads',
        rank: r,
        worldSize: n,
        localRank: r,
        localWorldSize: n,
        world: coord.world,
        port: port2,
        ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      };
      const env = rankEnv(options.env, { rank: r, localRank: r, worldSize: n, localWorldSize: n, backend: 'threads' });
      const w = new Worker(entry, {
        argv: [...args],
        env,
        // baguaReport: where the rank writes its failure report on exit (report.ts), read once it has ended.
        workerData: { bagua: info, data: options.data, baguaReport: reportBufs[r], ...(entry !== url ? { baguaScript: url.href } : {}) },
        transferList: [port2],
        stdout: true,
        stderr: true,
        ...(options.execArgv ? { execArgv: options.execArgv } : {}),
      });
      workers.push(w);
      coord.attach(r, port1);
      options.onWorker?.(r, w);
      w.stdout.on('data', (d: Buffer) => output.out(r, d));
      w.stderr.on('data', (d: Buffer) => output.err(r, d));
      let streams = 2;
      let exited = false;
      const maybeDone = () => {
        if (!exited || streams > 0) return;
        output.end(r);
        if (--left === 0) finished();
      };
      const streamEnd = () => {
        streams--;
        maybeDone();
      };
      w.stdout.once('end', streamEnd);
      w.stderr.once('end', streamEnd);
      const fail = () => {
        if (failed || stopCode !== null) return;
        failed = true;
        if (left > 1) {
          graceTimer = setTimeout(stopAll, graceMs);
          graceTimer.unref();
        }
      };
      let uncaught: Error | undefined;
      w.on('error', (e: Error) => {
        uncaught = e;
        // An uncaught exception: Node prints nothing for workers, so we do. The
        // thread exits with code 1 next; abort the others now. Blame comes from the reports.
        output.err(r, `${e?.stack ?? String(e)}\n`);
        fail();
        coord.abort(AbortReason.RANK_FAILED, r, 1);
      });
      w.once('exit', (code) => {
        exitCodes[r] = code;
        ends.push({
          rank: r,
          exitCode: code,
          time: Date.now(),
          report: threadReport(r, code, reportBufs[r]!, uncaught),
          ...(terminatedAt[r] !== undefined ? { stoppedAt: terminatedAt[r] } : {}),
        });
        if (code !== 0) fail();
        coord.rankExited(r, code);
        exited = true;
        // Streams end once the thread's last output is read; on a loaded machine that can take a
        // while after the exit (a 1 s cap lost a rank's last lines under CI load), so wait long,
        // and say so if they still never end.
        setTimeout(() => {
          if (streams > 0) {
            streams = 0;
            output.err(r, `bagua-launch: rank ${r}'s output had not ended ${STREAM_END_MS / 1000} s after it exited; the rest is lost\n`);
            maybeDone();
          }
        }, STREAM_END_MS).unref();
        maybeDone();
      });
    }
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
