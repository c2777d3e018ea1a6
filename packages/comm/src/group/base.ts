/**
 * The base of every process group (as PyTorch c10d's `Backend`): the common
 * fields, sub-group creation (rank-list validation and naming), the exit
 * registry, the argument checks of the collectives and the device query.
 * A backend implements its collectives, `createSubgroup`, `release` and
 * `movesMemoryOf`; backends without device memory extend HostStagedGroup
 * (./host-staging.ts) instead, which stages device buffers through the host.
 */
import {
  CollectiveError,
  completedWork,
  parseCommDevice,
  type BackendName,
  type CommBuffer,
  type CommDevice,
  type CommDeviceLike,
  type ProcessGroup,
  type ReduceOp,
  type Work,
} from '../process-group.js';
import type { DType } from '../buffers.js';

export interface GroupFields {
  name: string;
  /** This member's group rank. */
  rank: number;
  /** Global ranks of the members, in group-rank order. */
  ranks: readonly number[];
  timeoutMs: number;
}

/** What createSubgroup gets: the sorted members, this rank's place among them, and the names. */
export interface SubgroupSpec {
  /** Global ranks of the members, sorted. */
  ranks: number[];
  /** This rank's group rank in the sub-group. */
  rank: number;
  /** newGroup calls made on the parent so far (this one included): the same on every member. */
  seq: number;
  /** 'group(0,2)#<seq>' */
  base: string;
  /** base, under the parent's name unless the parent is the world. */
  name: string;
}

// Groups that asked for it are closed when their thread exits, so that
// native threads (gloo's event loop, NCCL's proxies) stop before the process
// or worker tears down.
const closeAtExit = new Set<ProcessGroupBase>();
let exitHookInstalled = false;

export abstract class ProcessGroupBase implements ProcessGroup {
  abstract readonly backend: BackendName;
  readonly name: string;
  readonly rank: number;
  readonly size: number;
  readonly ranks: readonly number[];
  timeoutMs: number;

  private subgroupSeq = 0;
  private destroyed = false;

  protected constructor(f: GroupFields) {
    this.name = f.name;
    this.rank = f.rank;
    this.ranks = Object.freeze([...f.ranks]);
    this.size = f.ranks.length;
    this.timeoutMs = f.timeoutMs;
  }

  /** The global rank of this member. */
  get globalRank(): number {
    return this.ranks[this.rank]!;
  }

  abstract allReduce(buf: CommBuffer, op?: ReduceOp): void;

  /**
   * For backends that cannot overlap a collective with the caller's work
   * (gloo, threads and nccl override it): it runs here, at the call, which keeps the order
   * and the results; only the overlap is missing. A failure still surfaces at
   * wait(), as where it really overlaps.
   */
  allReduceAsync(buf: CommBuffer, op?: ReduceOp): Work {
    return completedWork(() => this.allReduce(buf, op));
  }
  abstract allGather(output: CommBuffer, input: CommBuffer): void;
  abstract broadcast(buf: CommBuffer, root: number): void;
  abstract barrier(): void;

  supports(device: CommDeviceLike): boolean {
    return this.movesMemoryOf(parseCommDevice(device));
  }

  /** Whether the backend reads and writes this device's memory itself. */
  protected abstract movesMemoryOf(device: Required<CommDevice>): boolean;

  async newGroup(ranks: readonly number[]): Promise<ProcessGroup | null> {
    this.ensureOpen('newGroup');
    const list = this.subgroupRanks(ranks);
    // Every member calls newGroup in the same order (as in PyTorch), so the
    // sequence number names the same group on every rank, members or not.
    const seq = ++this.subgroupSeq;
    const rank = list.indexOf(this.globalRank);
    if (rank < 0) return null;
    const base = `group(${list.join(',')})#${seq}`;
    return this.createSubgroup({ ranks: list, rank, seq, base, name: this.name === 'world' ? base : `${this.name}/${base}` });
  }

  /** What every backend's group options take from a sub-group's spec and this group. */
  protected subgroupFields(spec: SubgroupSpec): { rank: number; size: number; ranks: number[]; name: string; timeoutMs: number } {
    return { rank: spec.rank, size: spec.ranks.length, ranks: spec.ranks, name: spec.name, timeoutMs: this.timeoutMs };
  }

  /** Builds the sub-group of which this rank is a member (the list is validated). */
  protected abstract createSubgroup(spec: SubgroupSpec): Promise<ProcessGroup>;

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    closeAtExit.delete(this);
    this.release();
  }

  /** Frees what the backend holds; called once, by destroy(). */
  protected abstract release(): void;

  protected get isDestroyed(): boolean {
    return this.destroyed;
  }

  /** Registers the group to be closed (onThreadExit) if it is still alive when this thread exits. */
  protected closeAtThreadExit(): void {
    closeAtExit.add(this);
    if (exitHookInstalled) return;
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const g of [...closeAtExit]) g.onThreadExit();
    });
  }

  /** What a group still alive at thread exit does (default: destroy()). */
  protected onThreadExit(): void {
    this.destroy();
  }

  protected error(op: string, detail: string, missing: readonly number[] = []): CollectiveError {
    return new CollectiveError(op, this.name, this.globalRank, detail, missing);
  }

  protected ensureOpen(op: string): void {
    if (this.destroyed) throw this.error(op, 'the process group is destroyed');
  }

  // ---------------------------------------------------------------- argument checks
  // One rule and one message for every backend. They throw TypeError or
  // RangeError with the message '<op>: <reason>'; the threads backend turns
  // them into a failed phase so that its peers fail too.

  /** The backend's code for a reduce op; a TypeError for an unknown one. */
  protected reduceOpCode<C extends Partial<Record<ReduceOp, number>>>(codes: C, op: ReduceOp): number {
    const code = Object.prototype.hasOwnProperty.call(codes, op) ? codes[op] : undefined;
    if (code === undefined) throw new TypeError(`allReduce: unknown reduce op '${String(op)}' (sum, avg, max, min)`);
    return code;
  }

  protected checkRoot(root: number): void {
    if (!Number.isInteger(root) || root < 0 || root >= this.size) {
      throw new RangeError(`broadcast: root ${root} is not a rank of group '${this.name}' (size ${this.size})`);
    }
  }

  /** output (size x input.length elements) and input, of one dtype. */
  protected checkGather(output: { dtype: DType; length: number }, input: { dtype: DType; length: number }): void {
    if (output.dtype !== input.dtype) throw new TypeError(`allGather: output is ${output.dtype} but input is ${input.dtype}`);
    if (output.length !== input.length * this.size) {
      throw new RangeError(`allGather: output has ${output.length} elements, expected ${this.size} x ${input.length}`);
    }
  }

  /** newGroup's ranks, sorted: group ranks follow the sorted global ranks, as in PyTorch. Each a member, listed once. */
  private subgroupRanks(ranks: readonly number[]): number[] {
    const list = [...ranks].sort((a, b) => a - b);
    if (list.length === 0) throw new RangeError('newGroup: empty rank list');
    const seen = new Set<number>();
    for (const r of list) {
      if (!Number.isInteger(r) || !this.ranks.includes(r)) {
        throw new RangeError(`newGroup: rank ${r} is not a member of group '${this.name}' (${this.ranks.join(', ')})`);
      }
      if (seen.has(r)) throw new RangeError(`newGroup: rank ${r} is listed twice`);
      seen.add(r);
    }
    return list;
  }
}
