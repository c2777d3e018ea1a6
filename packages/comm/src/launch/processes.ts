/**
 * runProcesses: runs one script as N child processes of this node (the
 * process backends, gloo and nccl), with the rank environment set.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FailureReport } from '../report.js';
import type { RankEnd } from './blame.js';
import { RankOutput, type OutputMode } from './output.js';
import { checkRankCount, rankEnv, runResult, stopExitCode, type RunResult } from './threads.js';
import { isTypeScript, typeScriptExecArgv } from './typescript.js';

/** The child's fd on which a rank writes its failure report (see report.ts). */
const REPORT_FD = 3;

export interface RunProcessesOptions {
  /** Extra environment (on top of process.env and the rank variables). */
  env?: Record<string, string | undefined>;
  /** Global rank of this node's first process (default 0). */
  rankOffset?: number;
  /** Ranks in the whole job (default n). */
  worldSize?: number;
  /** Value of BAGUA_BACKEND for the ranks (default 'gloo'). */
  backend?: string;
  output?: OutputMode;
  /** After a rank fails: how long the others get before SIGTERM, and again before SIGKILL (default 2000 ms). */
  graceMs?: number;
  /** Aborting it forwards signal.reason (a signal name, default SIGTERM) to every rank. */
  signal?: AbortSignal;
  /** Node options for the ranks (default: this process's execArgv). */
  execArgv?: string[];
  /** Ranks get SIGKILL when this process dies (PR_SET_PDEATHSIG; default true). */
  dieWithParent?: boolean;
}

export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return signal ? 128 + (osConstants.signals[signal] ?? 0) : 1;
}

export function runProcesses(
  n: number,
  script: string | URL,
  args: readonly string[] = [],
  options: RunProcessesOptions = {},
): Promise<RunResult> {
  checkRankCount('runProcesses', n);
  const path = typeof script === 'string' ? (script.startsWith('file:') ? fileURLToPath(script) : resolve(script)) : fileURLToPath(script);
  const execArgv = [...(options.execArgv ?? process.execArgv), ...(isTypeScript(path) ? typeScriptExecArgv() : [])];
  const offset = options.rankOffset ?? 0;
  const world = options.worldSize ?? n;
  const output = new RankOutput(n, options.output ?? 'inherit', (i) => offset + i);
  const graceMs = options.graceMs ?? 2000;
  const exitCodes: number[] = new Array(n).fill(-1);
  const children: ChildProcess[] = [];
  const ends: RankEnd[] = [];
  const reports: (FailureReport | null)[] = new Array(n).fill(null);
  const signalledAt: (number | undefined)[] = new Array(n).fill(undefined);
  let failed = false;
  let stopCode: number | null = null;
  const timers: NodeJS.Timeout[] = [];

  const signalAll = (sig: NodeJS.Signals) => {
    for (let i = 0; i < n; i++) {
      if (exitCodes[i] !== -1) continue;
      signalledAt[i] ??= Date.now();
      children[i]!.kill(sig);
    }
  };
  const stopAll = (first: NodeJS.Signals, delay: number) => {
    const t1 = setTimeout(() => {
      signalAll(first);
      const t2 = setTimeout(() => signalAll('SIGKILL'), graceMs);
      timers.push(t2);
    }, delay);
    timers.push(t1);
  };

  return new Promise<RunResult>((resolveRun) => {
    let left = n;
    const onAbort = () => {
      const reason = options.signal?.reason;
      const sig: NodeJS.Signals = typeof reason === 'string' && reason in osConstants.signals ? (reason as NodeJS.Signals) : 'SIGTERM';
      stopCode = stopExitCode(typeof reason === 'string' || typeof reason === 'number' ? reason : sig);
      stopAll(sig, 0);
    };
    for (let i = 0; i < n; i++) {
      const env = rankEnv(options.env, {
        rank: offset + i,
        localRank: i,
        worldSize: world,
        localWorldSize: n,
        backend: options.backend ?? 'gloo',
      });
      env['BAGUA_REPORT_FD'] = String(REPORT_FD);
      if (options.dieWithParent ?? true) env['BAGUA_LAUNCHER_PID'] = String(process.pid);
      else delete env['BAGUA_LAUNCHER_PID'];
      const child = spawn(process.execPath, [...execArgv, path, ...args], {
        env,
        stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      });
      children.push(child);
      child.stdout!.on('data', (d: Buffer) => output.out(i, d));
      child.stderr!.on('data', (d: Buffer) => output.err(i, d));
      let reportText = '';
      const reportPipe = child.stdio[REPORT_FD] as NodeJS.ReadableStream | null;
      reportPipe?.on('data', (d: Buffer) => {
        reportText += d.toString('utf8');
        for (let nl = reportText.indexOf('\n'); nl >= 0; nl = reportText.indexOf('\n')) {
          const line = reportText.slice(0, nl);
          reportText = reportText.slice(nl + 1);
          try {
            reports[i] = JSON.parse(line) as FailureReport;
          } catch {
            // not a report: ignore (the pipe is ours, but a script could write to fd 3)
          }
        }
      });
      child.on('error', (e) => output.err(i, `cannot start rank ${offset + i}: ${e.message}\n`));
      // 'close' comes after both the exit and the end of its output.
      child.once('close', (code, sig) => {
        const c = exitCodeOf(code, sig);
        exitCodes[i] = c;
        output.end(i);
        ends.push({ rank: offset + i, exitCode: c, time: Date.now(), report: reports[i]!, ...(signalledAt[i] !== undefined ? { stoppedAt: signalledAt[i] } : {}) });
        if (c !== 0 && !failed && stopCode === null) {
          // The others get the grace period to fail (and report) on their own before they are stopped.
          failed = true;
          if (left > 1) stopAll('SIGTERM', graceMs);
        }
        if (--left === 0) {
          for (const t of timers) clearTimeout(t);
          options.signal?.removeEventListener('abort', onAbort);
          resolveRun(runResult(exitCodes, ends, stopCode, output));
        }
      });
    }
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
