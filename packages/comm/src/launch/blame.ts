/**
 * Which rank failed first, from evidence rather than from the order in which
 * processes ended: a rank whose report says its error names other ranks as the
 * cause (induced) is never blamed while a rank that failed on its own exists.
 */
import { constants as osConstants } from 'node:os';
import type { FailureReport } from '../report.js';

/** How one rank ended, as its runner saw it. */
export interface RankEnd {
  rank: number;
  exitCode: number;
  /** Date.now() when the runner saw it end. */
  time: number;
  /** When the runner signalled or terminated it, if it did: it failed on its own only if it reported before. */
  stoppedAt?: number;
  /** The rank's own report, when it wrote one. */
  report: FailureReport | null;
}

export interface Blame {
  rank: number;
  exitCode: number;
  /** False when every rank that failed blamed others: then `suspects` holds the ranks they named. */
  own: boolean;
  report: FailureReport | null;
  /** When it failed (its report's time, else when the runner saw it end). */
  time: number;
  /** Every failed rank had been stopped by the launcher (nothing here failed on its own). */
  byLauncher: boolean;
  suspects: number[];
  /** Other ranks that failed after it, and those the launcher stopped. */
  followers: RankEnd[];
  stopped: number[];
  /** Milliseconds from the first failure until the last rank ended. */
  spanMs: number;
}

const when = (e: RankEnd) => e.report?.time ?? e.time;
/** A rank the launcher stopped counts only when its report (written as it exited by itself) came first. */
const byLauncher = (e: RankEnd) => e.stoppedAt !== undefined && !(e.report && e.report.time <= e.stoppedAt);
const earliest = (list: RankEnd[]) => list.reduce((a, b) => (when(b) < when(a) || (when(b) === when(a) && b.rank < a.rank) ? b : a));

/** The rank to blame, or null when every rank succeeded. */
export function assignBlame(ends: readonly RankEnd[]): Blame | null {
  const failed = ends.filter((e) => e.exitCode !== 0);
  if (failed.length === 0) return null;
  const candidates = failed.filter((e) => !byLauncher(e));
  // No report (killed by a signal, crashed natively, never loaded comm) counts as failing on its own.
  const own = candidates.filter((e) => !e.report?.induced);
  const first = own.length ? earliest(own) : earliest(candidates.length ? candidates : failed);
  const suspects = own.length
    ? []
    : [...new Set(candidates.flatMap((e) => e.report?.peersAtFault ?? []))].filter((r) => r !== first.rank).sort((a, b) => a - b);
  const t0 = Math.min(...failed.map(when));
  const tEnd = Math.max(...ends.map((e) => e.time));
  return {
    rank: first.rank,
    // Its report's code: a stop signal may land while it is already exiting with its own.
    exitCode: first.report?.exitCode ?? first.exitCode,
    own: own.length > 0,
    report: first.report,
    time: when(first),
    byLauncher: byLauncher(first),
    suspects,
    followers: candidates.filter((e) => e !== first).sort((a, b) => a.rank - b.rank),
    stopped: failed.filter(byLauncher).map((e) => e.rank).sort((a, b) => a - b),
    spanMs: Math.max(0, tEnd - t0),
  };
}

function codeText(code: number): string {
  if (code > 128) {
    const name = Object.entries(osConstants.signals).find(([, n]) => n === code - 128)?.[0];
    if (name) return `exit code ${code}, ${name}`;
  }
  return `exit code ${code}`;
}

function ranksText(ranks: readonly number[]): string {
  return `${ranks.length === 1 ? 'rank' : 'ranks'} ${ranks.join(',')}`;
}

/** What the induced ranks said, e.g. "allReduce on group 'world': connection to rank 2 lost". */
function inducedText(r: FailureReport): string {
  const where = r.op ? `${r.op} on group '${r.group ?? '?'}'` : 'their collective';
  const peers = r.peersAtFault.length ? ranksText(r.peersAtFault) : 'a peer';
  if (/timed out/i.test(r.message ?? '')) return `${where}: timed out waiting for ${peers}`;
  if (/group aborted/i.test(r.message ?? '')) return `${where}: aborted after ${peers} failed`;
  return `${where}: connection to ${peers} lost`;
}

/** The launcher's one-line failure report. */
export function describeBlame(b: Blame): string {
  const r = b.report;
  const cause = r?.message ? `: ${r.message}` : r ? '' : ' without a report (killed, or crashed before it could tell)';
  const at = r?.step !== undefined ? ` at step ${r.step}` : '';
  const head = b.own
    ? `rank ${b.rank} failed first (${codeText(b.exitCode)})${at}${cause}`
    : `no rank failed on its own; rank ${b.rank} failed first (${codeText(b.exitCode)})${at}${cause}` +
      (b.suspects.length ? `; it blames ${ranksText(b.suspects)}` : '');
  const parts = [head];
  const induced = b.followers.filter((e) => e.report?.induced);
  const alsoFailed = b.followers.filter((e) => !e.report?.induced);
  if (induced.length) {
    // Prefer a follower that names the blamed rank (others may name a peer that vanished in the cascade).
    const said = (induced.find((e) => e.report!.peersAtFault.includes(b.rank)) ?? induced[0]!).report!;
    parts.push(`${ranksText(induced.map((e) => e.rank))} stopped after it (${inducedText(said)})`);
  }
  if (alsoFailed.length) parts.push(`${ranksText(alsoFailed.map((e) => e.rank))} also failed on ${alsoFailed.length === 1 ? 'its' : 'their'} own`);
  if (b.stopped.length) parts.push(`${ranksText(b.stopped)} stopped by the launcher`);
  parts.push(`all ranks ended ${b.spanMs} ms after the first failure`);
  return parts.join('; ');
}
