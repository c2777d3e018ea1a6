/**
 * A collective started on the gloo shim's communication thread. It keeps a
 * reference to its buffer until it has settled, so the collector cannot free
 * memory the native thread still writes; its outcome is read once from the
 * shim (a ticket is waited for once) and kept for every later wait().
 */
import type { CollectiveError, HostBuffer, Work } from '../process-group.js';

export interface WorkOps {
  /** 1 when finished, 0 while queued or running, -1 once waited for. */
  test(ticket: bigint): number;
  /** Blocks; null on success, else the failure (the peers at fault named). */
  wait(ticket: bigint): CollectiveError | null;
  /** Called once, when the outcome is known. */
  settled(w: GlooWork): void;
}

export class GlooWork implements Work {
  private outcome: { error: CollectiveError | null } | null = null;

  constructor(
    private readonly ticket: bigint,
    private buffer: HostBuffer | null,
    private readonly ops: WorkOps,
  ) {}

  done(): boolean {
    return this.outcome !== null || this.ops.test(this.ticket) === 1;
  }

  wait(): void {
    const error = this.settle();
    if (error) throw error;
  }

  /** Waits for the outcome if it is not known yet; returns the failure. */
  settle(): CollectiveError | null {
    if (!this.outcome) {
      this.outcome = { error: this.ops.wait(this.ticket) };
      // A wait that expired leaves the call running on the native thread: the
      // group keeps this work (and so the buffer) until destroy joins that thread.
      if (this.ops.test(this.ticket) !== 0) {
        this.buffer = null; // the caller's again
        this.ops.settled(this);
      }
    }
    return this.outcome.error;
  }

  /** The buffer the collective owns until it settles (null after). */
  get pendingBuffer(): HostBuffer | null {
    return this.buffer;
  }
}
