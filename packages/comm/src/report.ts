/**
 * Failure reports: a rank started by bagua-launch tells the launcher why it
 * is exiting non-zero, so that the launcher can blame the rank that failed on
 * its own rather than whichever rank's process happened to end first (a rank's
 * gloo peers often fail, and exit, before the failing process itself has).
 *
 * Training loops are synchronous and never yield, so everything here runs from
 * process 'exit' and 'uncaughtExceptionMonitor' hooks and writes synchronously:
 * process ranks to the pipe the launcher opened as BAGUA_REPORT_FD, thread
 * ranks into a SharedArrayBuffer that runThreads put in their workerData.
 */
import { fstatSync, writeSync } from 'node:fs';
import { isMainThread, workerData } from 'node:worker_threads';
import { dieWithLauncher } from './launch/parent-death.js';

/** What a failing rank says about itself (one JSON line on the report channel). */
export interface FailureReport {
  rank: number;
  exitCode: number;
  /** Date.now() when the rank decided to exit. */
  time: number;
  /** Message of the error that ended the rank, if any. */
  message?: string;
  op?: string;
  group?: string;
  /** Ranks the error names as the cause (CollectiveError.missingRanks). */
  peersAtFault: number[];
  /** True when the error blames other ranks (they went missing or their connection was lost). */
  induced: boolean;
  /** The training step, when the script told us (setReportStep). */
  step?: number;
}

/** The shape of a CollectiveError, without importing it (process-group.ts imports this module). */
interface CollectiveLike {
  name: string;
  message: string;
  op: string;
  group: string;
  rank: number;
  missingRanks: readonly number[];
}

/** Bytes of a thread rank's report buffer: an Int32 length, then UTF-8 JSON. */
export const THREAD_REPORT_BYTES = 8192;

let lastCollective: CollectiveLike | null = null;
let uncaught: unknown = undefined;
let step: number | undefined;

/** Called by CollectiveError's constructor: a rank that exits after catching one still blames the right peers. */
export function recordCollectiveError(e: CollectiveLike): void {
  lastCollective = e;
}

/** Lets the failure report say at which training step the rank stopped. */
export function setReportStep(n: number): void {
  step = n;
}

// A peer that vanished shows as a closed or reset connection, or (threads) as a group aborted by its failure.
const LOST = /connection closed|closed by peer|broken pipe|connection reset|econnreset|epipe|group aborted|connection to rank \d+ (?:broke|lost)/i;

function isCollective(e: unknown): e is CollectiveLike {
  return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'CollectiveError' && Array.isArray((e as CollectiveLike).missingRanks);
}

/** Builds the report of a rank exiting with `exitCode`, from the error that ended it (or the last CollectiveError). */
export function buildReport(rank: number, exitCode: number, error: unknown, last: CollectiveLike | null = lastCollective): FailureReport {
  const report: FailureReport = { rank, exitCode, time: Date.now(), peersAtFault: [], induced: false };
  if (step !== undefined) report.step = step;
  // An uncaught non-collective error is the rank's own fault, whatever it caught before.
  const cause = error !== undefined ? error : last;
  if (cause instanceof Error || (typeof cause === 'object' && cause !== null && 'message' in cause)) {
    report.message = String((cause as { message: unknown }).message).split('\n')[0]!.slice(0, 1000);
  } else if (cause !== undefined && cause !== null) report.message = String(cause).slice(0, 1000);
  if (isCollective(cause)) {
    report.op = cause.op;
    report.group = cause.group;
    report.peersAtFault = cause.missingRanks.filter((r) => r !== rank);
    // A threads group aborted before this rank entered the collective names the failed rank only in its message.
    const aborted = /group aborted: rank (\d+)/.exec(cause.message);
    if (report.peersAtFault.length === 0 && aborted && Number(aborted[1]) !== rank) report.peersAtFault = [Number(aborted[1])];
    report.induced = report.peersAtFault.length > 0 || LOST.test(cause.message);
  }
  return report;
}

function rankFromEnv(): number {
  const v = Number(process.env['RANK']);
  return Number.isInteger(v) ? v : -1;
}

function installProcessReporter(fd: number): void {
  const rank = rankFromEnv();
  process.on('uncaughtExceptionMonitor', (e) => {
    uncaught = e;
  });
  process.on('exit', (code) => {
    if (code === 0) return;
    const line = Buffer.from(JSON.stringify(buildReport(rank, code, uncaught)) + '\n');
    // The rank's end of the pipe is blocking and a line is far below the pipe's buffer; retry a short write anyway.
    for (let off = 0, tries = 0; off < line.length && tries < 100; tries++) {
      try {
        off += writeSync(fd, line, off);
      } catch {
        if (tries > 10) return; // the launcher is gone: nothing to tell
      }
    }
  });
}

function installThreadReporter(buf: SharedArrayBuffer, rank: number): void {
  process.on('uncaughtExceptionMonitor', (e) => {
    uncaught = e;
  });
  process.on('exit', (code) => {
    if (code === 0) return;
    const bytes = Buffer.from(JSON.stringify(buildReport(rank, code, uncaught)));
    const n = Math.min(bytes.length, buf.byteLength - 4);
    new Uint8Array(buf, 4, n).set(bytes.subarray(0, n));
    Atomics.store(new Int32Array(buf, 0, 1), 0, n);
  });
}

/** Reads what a thread rank left in its report buffer, or null. */
export function readThreadReport(buf: SharedArrayBuffer): FailureReport | null {
  const n = Atomics.load(new Int32Array(buf, 0, 1), 0);
  if (n <= 0) return null;
  try {
    return JSON.parse(Buffer.from(new Uint8Array(buf, 4, n)).toString('utf8')) as FailureReport;
  } catch {
    return null;
  }
}

/** Installs the reporter and the parent-death signal once, when this process or thread is a launched rank. */
function install(): void {
  if (isMainThread) {
    const fdText = process.env['BAGUA_REPORT_FD'];
    // Our own children must not write into our launcher's pipe, nor check for its pid.
    delete process.env['BAGUA_REPORT_FD'];
    const launcherPid = process.env['BAGUA_LAUNCHER_PID'];
    delete process.env['BAGUA_LAUNCHER_PID'];
    if (launcherPid && /^\d+$/.test(launcherPid)) dieWithLauncher(Number(launcherPid));
    if (fdText && /^\d+$/.test(fdText)) {
      const fd = Number(fdText);
      try {
        const st = fstatSync(fd);
        if (st.isFIFO() || st.isSocket()) installProcessReporter(fd);
      } catch {
        // not open: started by something other than bagua-launch
      }
    }
    return;
  }
  const wd = workerData as { bagua?: { rank?: number }; baguaReport?: unknown } | null | undefined;
  if (wd?.baguaReport instanceof SharedArrayBuffer && typeof wd.bagua?.rank === 'number') {
    installThreadReporter(wd.baguaReport, wd.bagua.rank);
  }
}

install();
