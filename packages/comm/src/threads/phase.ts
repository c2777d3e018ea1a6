/**
 * The phase barrier of a threads group, over its control block (layout in
 * ./layout.ts).
 *
 * In each phase every rank announces itself (Atomics.add on ARRIVE) and
 * waits until all ranks of the group have arrived at that phase: it spins
 * briefly with Atomics.load (the common case at small sizes), then sleeps in
 * Atomics.wait on WAKE with the remaining timeout. A rank that does not come
 * fails its peers after the timeout, naming it, and aborts the group; a rank
 * that exited fails them at once.
 *
 * The first phase of a collective also publishes a descriptor (op, dtype,
 * count, root, reduction) that every rank checks against its peers', so a
 * rank that calls a different collective fails on every rank instead of
 * corrupting data or hanging; each rank still spends exactly one phase, so
 * the group stays usable afterwards.
 */
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { CollectiveError } from '../process-group.js';
import {
  ABORT,
  ABORT_RANK,
  abortGroup,
  AbortReason,
  ARRIVE,
  DESC0,
  DESC1,
  DESC_COUNT,
  DESC_DTYPE,
  DESC_OP,
  DESC_REDOP,
  DESC_ROOT,
  EXIT,
  OpCode,
  PHASE,
  rankLine,
  SLEEPERS,
  WAKE,
} from './layout.js';
import { abortDetail, descriptorsAgree, mismatchDetail } from './diagnostics.js';

/** Longest single Atomics.wait; a belt for wake-ups lost to a dead coordinator. */
const MAX_SLEEP_MS = 1000;

/** The group the barrier serves: who is who, and the timeout (settable at any time). */
export interface PhaseGroup {
  readonly name: string;
  readonly ranks: readonly number[];
  readonly globalRank: number;
  readonly timeoutMs: number;
}

/** Atomics.load polls before sleeping: 1000 (about a futex sleep and wake-up), or 50 when ranks outnumber cores. */
export function defaultSpin(size: number): number {
  const env = process.env['BAGUA_THREADS_SPIN'];
  if (env !== undefined && env !== '' && Number.isFinite(Number(env))) return Math.max(0, Number(env));
  // A poll costs ~6 ns, so 1000 polls last about as long as sleeping and being
  // woken (~5-10 us): spinning longer cannot win much and, on a busy machine,
  // takes the core a descheduled peer needs. With more ranks than cores, barely spin.
  return size <= availableParallelism() ? 1000 : 50;
}

export class PhaseBarrier {
  /** Phases completed (int32, wraps); its parity selects the data area and descriptor of the next phase. */
  phase: number;
  private readonly me: number; // index of this rank's control line
  private readonly size: number;
  private deadline = 0; // of the current collective; 0 until it first has to sleep

  constructor(
    readonly ctrl: Int32Array,
    private readonly g: PhaseGroup,
    groupRank: number,
    private readonly spin: number,
  ) {
    this.me = rankLine(groupRank);
    this.size = g.ranks.length;
    // Resume at the phase this rank last reached (non-zero only when a group object is rebuilt).
    this.phase = Atomics.load(ctrl, this.me + PHASE);
  }

  /**
   * Takes up the phase count this rank's line holds: after another thread of
   * this rank (the communication thread of ./async.ts) ran collectives over
   * the same control block. Only one of them is ever inside a collective.
   */
  reload(): void {
    this.phase = Atomics.load(this.ctrl, this.me + PHASE);
  }

  /** Starts a collective: fails at once if the group was aborted. */
  begin(op: string): void {
    if (Atomics.load(this.ctrl, ABORT) !== AbortReason.NONE) throw this.abortError(op);
    this.deadline = 0;
  }

  /** Publishes this rank's descriptor of the collective starting at the next phase. */
  writeDesc(op: number, dtype: number, count: number, root: number, redop: number): void {
    const d = this.me + ((this.phase & 1) === 0 ? DESC0 : DESC1);
    const c = this.ctrl;
    // Plain stores: the Atomics.add in sync() publishes them.
    c[d + DESC_OP] = op;
    c[d + DESC_DTYPE] = dtype;
    c[d + DESC_COUNT] = count;
    c[d + DESC_ROOT] = root;
    c[d + DESC_REDOP] = redop;
  }

  /** Compares every rank's descriptor of the phase just completed with group rank 0's. */
  checkDesc(op: string): void {
    const d = (this.phase - 1) & 1 ? DESC1 : DESC0;
    if (!descriptorsAgree(this.ctrl, this.size, d)) {
      throw new CollectiveError(op, this.g.name, this.g.globalRank, mismatchDetail(this.ctrl, this.g.ranks, d));
    }
  }

  /** Takes part in one phase with an INVALID descriptor, then throws: peers fail at once instead of timing out. */
  invalid(op: string, reason: string): never {
    if (this.size > 1) {
      this.writeDesc(OpCode.INVALID, 0, 0, 0, 0);
      this.sync(op);
    }
    throw new CollectiveError(op, this.g.name, this.g.globalRank, `invalid arguments: ${reason}`);
  }

  /** Arrives at the next phase and waits for every member. */
  sync(op: string): void {
    const c = this.ctrl;
    const ph = (this.phase + 1) | 0;
    const target = Math.imul(ph, this.size);
    Atomics.store(c, this.me + PHASE, ph);
    const old = Atomics.add(c, ARRIVE, 1);
    if (((old + 1) | 0) === target) {
      // Last to arrive: wake the sleepers (the notify syscall only when someone sleeps).
      Atomics.add(c, WAKE, 1);
      if (Atomics.load(c, SLEEPERS) !== 0) Atomics.notify(c, WAKE);
    } else {
      let spins = this.spin;
      while (((Atomics.load(c, ARRIVE) - target) | 0) < 0) {
        if (--spins < 0) {
          this.sleep(op, target, ph);
          break;
        }
      }
    }
    this.phase = ph;
  }

  private sleep(op: string, target: number, ph: number): void {
    const c = this.ctrl;
    const g = this.g;
    if (this.deadline === 0) this.deadline = performance.now() + g.timeoutMs;
    Atomics.add(c, SLEEPERS, 1);
    try {
      for (;;) {
        // Read WAKE before testing: any event after this read changes it, so the wait cannot miss it.
        const w = Atomics.load(c, WAKE);
        if (((Atomics.load(c, ARRIVE) - target) | 0) >= 0) return;
        if (Atomics.load(c, ABORT) !== AbortReason.NONE) throw this.abortError(op, ph);
        const exited = this.exitedMissing(ph);
        if (exited) {
          abortGroup(c, AbortReason.EXITED, exited.rank, exited.code);
          const detail = `rank ${exited.rank} exited (code ${exited.code}) without joining`;
          throw new CollectiveError(op, g.name, g.globalRank, detail, this.missing(ph));
        }
        const left = this.deadline - performance.now();
        if (left <= 0) {
          const missing = this.missing(ph);
          // The phase counters no longer agree: fail the peers now rather than at their own timeouts.
          abortGroup(c, AbortReason.TIMEOUT, g.globalRank, ph);
          throw new CollectiveError(op, g.name, g.globalRank, `timed out after ${g.timeoutMs} ms`, missing);
        }
        Atomics.wait(c, WAKE, w, Math.min(left, MAX_SLEEP_MS));
      }
    } finally {
      Atomics.sub(c, SLEEPERS, 1);
    }
  }

  /** Global ranks that have not arrived at phase `ph`. */
  private missing(ph: number): number[] {
    const out: number[] = [];
    for (let r = 0; r < this.size; r++) {
      if (((Atomics.load(this.ctrl, rankLine(r) + PHASE) - ph) | 0) < 0) out.push(this.g.ranks[r]!);
    }
    return out;
  }

  private exitedMissing(ph: number): { rank: number; code: number } | null {
    for (let r = 0; r < this.size; r++) {
      const line = rankLine(r);
      const ex = Atomics.load(this.ctrl, line + EXIT);
      if (ex !== 0 && ((Atomics.load(this.ctrl, line + PHASE) - ph) | 0) < 0) {
        return { rank: this.g.ranks[r]!, code: ex - 1 };
      }
    }
    return null;
  }

  private abortError(op: string, ph?: number): CollectiveError {
    // A rank known to have failed is the one at fault: peers that had not come yet were only
    // stopped for it. A timeout names whoever had not arrived.
    const reason = Atomics.load(this.ctrl, ABORT) as AbortReason;
    const who = Atomics.load(this.ctrl, ABORT_RANK);
    const failed = (reason === AbortReason.RANK_FAILED || reason === AbortReason.EXITED) && who >= 0;
    const atFault = failed ? [who] : ph === undefined ? [] : this.missing(ph);
    return new CollectiveError(op, this.g.name, this.g.globalRank, abortDetail(this.ctrl), atFault);
  }
}
