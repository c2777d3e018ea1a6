/**
 * The texts of a threads group's failures, read from its control block: why
 * the group was aborted, and which calls disagreed in a phase.
 */
import {
  ABORT,
  ABORT_INFO,
  ABORT_RANK,
  AbortReason,
  DESC_COUNT,
  DESC_DTYPE,
  DESC_OP,
  DESC_REDOP,
  DESC_ROOT,
  DTYPE_NAMES,
  OP_NAMES,
  OpCode,
  rankLine,
  REDOP_NAMES,
} from './layout.js';

/** 'group aborted: <why>' for the abort recorded in the control block. */
export function abortDetail(ctrl: Int32Array): string {
  const reason = Atomics.load(ctrl, ABORT) as AbortReason;
  const who = Atomics.load(ctrl, ABORT_RANK);
  const info = Atomics.load(ctrl, ABORT_INFO);
  let why: string;
  switch (reason) {
    case AbortReason.RANK_FAILED:
      why = `rank ${who} failed (exit code ${info})`;
      break;
    case AbortReason.TIMEOUT:
      why = `rank ${who} timed out waiting for its peers; the group is unusable`;
      break;
    case AbortReason.EXITED:
      why = `rank ${who} exited (code ${info}) while its peers waited for it`;
      break;
    case AbortReason.STOPPED:
      why = 'the job is being stopped';
      break;
    default:
      why = `aborted (reason ${reason})`;
  }
  return `group aborted: ${why}`;
}

/** Whether every rank's descriptor at offset `d` of its line equals group rank 0's, and rank 0's is valid. */
export function descriptorsAgree(ctrl: Int32Array, size: number, d: number): boolean {
  const ref = rankLine(0) + d;
  for (let r = 1; r < size; r++) {
    const o = rankLine(r) + d;
    if (
      ctrl[o + DESC_OP] !== ctrl[ref + DESC_OP] ||
      ctrl[o + DESC_DTYPE] !== ctrl[ref + DESC_DTYPE] ||
      ctrl[o + DESC_COUNT] !== ctrl[ref + DESC_COUNT] ||
      ctrl[o + DESC_ROOT] !== ctrl[ref + DESC_ROOT] ||
      ctrl[o + DESC_REDOP] !== ctrl[ref + DESC_REDOP]
    ) {
      return false;
    }
  }
  return ctrl[ref + DESC_OP] !== OpCode.INVALID;
}

/**
 * 'collective mismatch: ...', naming rank 0's call and the first that
 * disagrees with it: the same text on every rank. `ranks` maps group ranks
 * to global ranks.
 */
export function mismatchDetail(ctrl: Int32Array, ranks: readonly number[], d: number): string {
  const describe = (r: number): string => {
    const o = rankLine(r) + d;
    const code = ctrl[o + DESC_OP]!;
    if (code === OpCode.INVALID) return `rank ${ranks[r]} rejected its own arguments`;
    let s = `rank ${ranks[r]} called ${OP_NAMES[code] ?? `op ${code}`}`;
    if (code !== OpCode.BARRIER) s += `(${DTYPE_NAMES[ctrl[o + DESC_DTYPE]!]} x ${ctrl[o + DESC_COUNT]}`;
    if (code === OpCode.ALL_REDUCE) s += `, ${REDOP_NAMES[ctrl[o + DESC_REDOP]!]})`;
    else if (code === OpCode.BROADCAST) s += `, root ${ctrl[o + DESC_ROOT]})`;
    else if (code !== OpCode.BARRIER) s += ')';
    return s;
  };
  let other = -1;
  const ref = rankLine(0) + d;
  for (let r = 1; r < ranks.length && other < 0; r++) {
    const o = rankLine(r) + d;
    for (let k = 0; k < 5; k++) if (ctrl[o + k] !== ctrl[ref + k]) other = r;
  }
  if (other < 0) return `collective mismatch: ${describe(0)}`; // all agree, but rank 0's call was invalid
  return `collective mismatch: ${describe(0)} but ${describe(other)}`;
}
