/** A ProcessGroup that delegates to another and counts the collectives issued through it. */
import type { BackendName, CommBuffer, CommDeviceLike, ProcessGroup, ReduceOp } from '@bagua/comm';

export interface CollectiveCounts {
  allReduce: number;
  allGather: number;
  broadcast: number;
  barrier: number;
}

export function totalCollectives(c: CollectiveCounts): number {
  return c.allReduce + c.allGather + c.broadcast + c.barrier;
}

export class CountingGroup implements ProcessGroup {
  readonly counts: CollectiveCounts = { allReduce: 0, allGather: 0, broadcast: 0, barrier: 0 };

  constructor(readonly inner: ProcessGroup) {}

  get backend(): BackendName {
    return this.inner.backend;
  }
  get name(): string {
    return this.inner.name;
  }
  get rank(): number {
    return this.inner.rank;
  }
  get size(): number {
    return this.inner.size;
  }
  get ranks(): readonly number[] {
    return this.inner.ranks;
  }
  get timeoutMs(): number {
    return this.inner.timeoutMs;
  }
  set timeoutMs(ms: number) {
    this.inner.timeoutMs = ms;
  }

  supports(device: CommDeviceLike): boolean {
    return this.inner.supports(device);
  }

  /** A copy of the counts so far. */
  snapshot(): CollectiveCounts {
    return { ...this.counts };
  }

  allReduce(buf: CommBuffer, op?: ReduceOp): void {
    this.counts.allReduce++;
    this.inner.allReduce(buf, op);
  }
  allGather(output: CommBuffer, input: CommBuffer): void {
    this.counts.allGather++;
    this.inner.allGather(output, input);
  }
  broadcast(buf: CommBuffer, root: number): void {
    this.counts.broadcast++;
    this.inner.broadcast(buf, root);
  }
  barrier(): void {
    this.counts.barrier++;
    this.inner.barrier();
  }
  newGroup(ranks: readonly number[]): Promise<ProcessGroup | null> {
    return this.inner.newGroup(ranks);
  }
  destroy(): void {
    this.inner.destroy();
  }
}

export function diffCounts(after: CollectiveCounts, before: CollectiveCounts): CollectiveCounts {
  return {
    allReduce: after.allReduce - before.allReduce,
    allGather: after.allGather - before.allGather,
    broadcast: after.broadcast - before.broadcast,
    barrier: after.barrier - before.barrier,
  };
}
