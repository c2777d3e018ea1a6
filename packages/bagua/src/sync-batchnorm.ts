import { empty, F, formatShape, nn, recordOp, type Tensor } from '@bagua/core';
import { defaultGroup, isInitialized, type ProcessGroup } from '@bagua/comm';
import { convertBatchNorms, revertBatchNorms, type RankAware } from '@bagua/convert';
import { commBuffer } from './comm-buffer.js';

export interface SyncBatchNormOptions extends nn.BatchNormOptions {
  /**
   * The group whose ranks share statistics (default: the world group). null is
   * what newGroup gives a rank outside the group: such a rank cannot train the layer.
   */
  processGroup?: ProcessGroup | null;
  /**
   * Names the layer alike on every rank, so ranks can check they are in the same
   * layer (default: its path in the model when made by convertSyncBatchnorm, else
   * its creation order among directly made layers).
   */
  name?: string;
  /**
   * How ranks exchange the forward statistics (default 'allGather'):
   * - 'allGather': every rank's [mean, var, count, tag] record, merged by Chan's formula;
   *   the collective moves P records, its latency grows with the group size P.
   * - 'allReduce': per channel sum(x - s) and sum((x - s)^2) plus the count, summed by one
   *   all-reduce (O(log P) steps on tree and ring schedules), merged as sums. The shift s is
   *   shared by every rank: rank 0's local mean, broadcast once at the layer's first training
   *   step in a group, then each step's global mean (the same on every rank).
   */
  statsExchange?: StatsExchange;
}

export type StatsExchange = 'allGather' | 'allReduce';

/**
 * The all-gather of the ranks' records into [R, 2C+2] on the records' device, with
 * the gathered values on the host where that costs nothing more: the tensor's own
 * storage on the CPU, or the array a host-only group staged a device tensor
 * through. A group that moves device memory itself (NCCL) leaves them on the
 * device: host is null, and the checks that need the values are skipped there.
 */
function gatherRecords(stats: Tensor, group: ProcessGroup): { gathered: Tensor; host: Float32Array | null } {
  const gathered = empty([group.size, stats.numel], 'float32', stats.device);
  const seen: { staged: Float32Array | null } = { staged: null };
  group.allGather(commBuffer(gathered, (src) => { seen.staged = src; }), commBuffer(stats));
  return { gathered, host: (gathered.dlpack().host as Float32Array | null) ?? seen.staged };
}

/** Layers made directly, in the same order on every rank, get the same default name. */
let layersMade = 0;

/** A name as a float32-exact integer (FNV-1a, 24 bits), the tag of the layer's records. */
function tagOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h & 0xffffff;
}

/**
 * Batch normalisation over the global batch of a process group: one
 * all-gather of [mean, var, count, tag] records forward, one all-reduce of
 * [sum_dy, sum_dy_xmu] backward (design §5). One record format on every
 * group: the stats kernel writes the layer's tag into it, and the merge reads
 * the gathered rows in place. Where the records reach the host anyway (CPU
 * tensors, or a host-only group staging device ones) every rank checks that
 * they agree.
 */
export class SyncBatchNorm extends nn._BatchNorm implements RankAware {
  processGroup: ProcessGroup | null | undefined;
  /** The rank of the last input seen, so revertSyncBatchnorm can pick BatchNorm1d/2d/3d. */
  inputRank: number | null = null;
  readonly name: string;
  readonly statsExchange: StatsExchange;
  private readonly layerTag: number;
  /** 'allReduce': the shift every rank of `key` (group and device) shares; its first C values are read. */
  private shift: { key: string; values: Tensor } | null = null;

  constructor(numFeatures: number, opts: SyncBatchNormOptions = {}) {
    super(numFeatures, opts);
    this.processGroup = opts.processGroup;
    this.name = opts.name ?? `#${layersMade++}`;
    this.layerTag = tagOf(this.name);
    const exchange = opts.statsExchange ?? 'allGather';
    if (exchange !== 'allGather' && exchange !== 'allReduce') {
      throw new Error(`SyncBatchNorm: statsExchange must be 'allGather' or 'allReduce', got ${JSON.stringify(exchange)}`);
    }
    this.statsExchange = exchange;
  }

  protected checkInputDim(x: Tensor): void {
    if (x.ndim < 2 || x.ndim > 5) {
      throw new Error(`SyncBatchNorm: expected 2D to 5D input, got ${x.ndim}D input of shape ${formatShape(x.shape)}`);
    }
  }

  override forward(x: Tensor): Tensor {
    this.checkInputDim(x);
    this.checkChannels(x);
    this.inputRank = x.ndim;
    if (this.processGroup === null && this.training) {
      throw new Error(`SyncBatchNorm '${this.name}': this rank is not a member of the layer's process group ` +
        '(newGroup returned null here), so it cannot train the layer');
    }
    const group = this.processGroup ?? (isInitialized() ? defaultGroup() : null);
    // Eval with running statistics, and batch statistics outside training, stay local (PyTorch's rule).
    if (!this.training || !group || group.size === 1) return super.forward(x);
    return this.syncForward(x, group, this.averagingFactor());
  }

  /** The training step over a group of several ranks (the benchmark's Bagua-way layer overrides it). */
  protected syncForward(x: Tensor, group: ProcessGroup, factor: number): Tensor {
    if (this.statsExchange === 'allReduce') return this.syncForwardSums(x, group, factor);
    const { gathered, host } = gatherRecords(F.batchNormStats(x, this.layerTag), group);
    if (host) this.checkRecords(host, x, group);
    return this.normalizeSynced(x, gathered, factor, 'SyncBatchNorm', (sums) => {
      group.allReduce(commBuffer(sums), 'sum'); // in place: [sum_dy, sum_dy_xmu] of the whole group
      return sums;
    });
  }

  /** The 'allReduce' exchange: one sum all-reduce of [S1, S2, count, tag slots] (plus, once, the shift's broadcast). */
  private syncForwardSums(x: Tensor, group: ProcessGroup, factor: number): Tensor {
    const shift = this.sharedShift(x, group);
    const sums = F.batchNormStatsSums(x, shift, group.size, group.rank, this.layerTag);
    const seen: { staged: Float32Array | null } = { staged: null };
    group.allReduce(commBuffer(sums, (src) => { seen.staged = src; }), 'sum');
    const host = (sums.dlpack().host as Float32Array | null) ?? seen.staged;
    if (host) this.checkSums(host, x, group);
    const track = this.trackRunningStats;
    const merged = F.batchNormMergeSums(sums, shift, this.numFeatures, this.eps, track ? this.runningMean : null,
      track ? this.runningVar : null, factor);
    return this.normalizeMerged(x, merged, 'SyncBatchNorm', (s) => {
      group.allReduce(commBuffer(s), 'sum');
      return s;
    });
  }

  /**
   * The shift of the 'allReduce' sums, the same on every rank. The first training step
   * in a group (or on a new device) broadcasts rank 0's local mean; the merge then keeps
   * it at each step's global mean. A fixed or lagging shift (the running mean starts at 0
   * and follows at `momentum`) would cost float32 digits when |mean| >> std: the sums then
   * hold n * (mean - s)^2, and the variance is their small difference.
   */
  private sharedShift(x: Tensor, group: ProcessGroup): Tensor {
    const key = `${group.name}@${String(x.device)}`;
    if (this.shift?.key === key) return this.shift.values;
    const width = 2 * this.numFeatures + 2;
    const values = group.rank === 0 ? F.batchNormStats(x, this.layerTag) : empty([width], 'float32', x.device);
    group.broadcast(commBuffer(values), 0);
    values.keep(); // outlives this forward's scope: the layer owns it
    this.shift?.values.dispose();
    this.shift = { key, values };
    return values;
  }

  /**
   * The rest of a training step once every rank's statistics are gathered:
   * merges `records` (one row per rank; the merge reads the row stride from
   * its width), normalises x and records the autograd node. Its backward
   * reduces [sum_dy, sum_dy_xmu] through `allReduceSums`, the one step there
   * that talks to the group; it returns the group's sums.
   */
  protected normalizeSynced(
    x: Tensor,
    records: Tensor,
    factor: number,
    opName: string,
    allReduceSums: (sums: Tensor) => Tensor,
  ): Tensor {
    const merged = F.batchNormMergeStats(records, this.eps,
      this.trackRunningStats ? this.runningMean : null, this.trackRunningStats ? this.runningVar : null, factor);
    return this.normalizeMerged(x, merged, opName, allReduceSums);
  }

  /** Normalises x by the group's merged statistics and records the autograd node (see normalizeSynced). */
  private normalizeMerged(x: Tensor, { mean, invstd, count }: F.MergedStats, opName: string,
    allReduceSums: (sums: Tensor) => Tensor): Tensor {
    const { weight, bias } = this;
    const y = F.batchNormElemt(x, mean, invstd, weight, bias);
    // half inputs (PyTorch's mixed rule): records, sums and statistics stay float32 (the
    // kernels make them so), y and dx come in x's dtype, the parameters' gradients in theirs
    const weightDtype = weight?.dtype, biasDtype = bias?.dtype;
    return recordOp(y, opName, [x, weight, bias], [x, weight, mean, invstd, count],
      (dy, [sx, sw, smean, sinvstd, scount], needs) => {
        const red = F.batchNormBackwardReduce(dy, sx!, smean!, sinvstd!, needs[1] || needs[2]);
        const sums = allReduceSums(red.sums);
        const dx = needs[0] ? F.batchNormBackwardElemt(dy, sx!, smean!, sinvstd!, sw, sums, scount!) : null;
        return [dx, needs[1] ? F.bnGradInDtype(red.gradWeight, weightDtype) : null,
          needs[2] ? F.bnGradInDtype(red.gradBias, biasDtype) : null];
      });
  }

  /**
   * Every rank's record must be of this layer (its tag) and the global count
   * must allow training, before the records are used.
   */
  private checkRecords(gathered: Float32Array, x: Tensor, group: ProcessGroup): void {
    const width = 2 * this.numFeatures + 2;
    let globalCount = 0;
    for (let r = 0; r < group.size; r++) {
      this.checkTag(gathered[r * width + width - 1], r, group);
      globalCount += gathered[r * width + width - 2];
    }
    this.checkCount(globalCount, x);
  }

  /**
   * The same checks on the summed 'allReduce' record: slot r of the tag slots holds
   * rank r's tag (the others add 0, so the sum is exact), the count is the group's.
   */
  private checkSums(summed: Float32Array, x: Tensor, group: ProcessGroup): void {
    const c = this.numFeatures;
    for (let r = 0; r < group.size; r++) this.checkTag(summed[2 * c + 1 + r], r, group);
    this.checkCount(summed[2 * c], x);
  }

  private checkTag(tag: number, r: number, group: ProcessGroup): void {
    if (tag !== this.layerTag) {
      throw new Error(`SyncBatchNorm: ranks disagree on the layer sequence: group rank ${group.rank} is in ` +
        `layer '${this.name}' (${this.numFeatures} channels, tag ${this.layerTag}), group rank ${r} in a layer tagged ${tag}`);
    }
  }

  private checkCount(globalCount: number, x: Tensor): void {
    if (globalCount === 1) {
      throw new Error(`SyncBatchNorm: expected more than 1 value per channel when training, got ${globalCount} ` +
        `over the group (local input ${formatShape(x.shape)})`);
    }
  }

  /**
   * Replaces every BatchNorm1d/2d/3d in the tree with a SyncBatchNorm sharing
   * its parameters and buffers; returns a new layer when the root is one.
   */
  static convertSyncBatchnorm<M extends nn.Module>(module: M, processGroup?: ProcessGroup | null,
    opts: { statsExchange?: StatsExchange } = {}): M | SyncBatchNorm {
    return convertBatchNorms(module, (bn, path) => new SyncBatchNorm(bn.numFeatures, {
      eps: bn.eps, momentum: bn.momentum, affine: bn.affine, trackRunningStats: bn.trackRunningStats, processGroup,
      name: path || bn.constructor.name, statsExchange: opts.statsExchange,
    })) as M | SyncBatchNorm;
  }

  /** The way back, for single-device inference and export: BatchNorm1d/2d/3d by the input rank seen (or `rank`). */
  static revertSyncBatchnorm<M extends nn.Module>(module: M, rank?: number): M | nn._BatchNorm {
    return revertBatchNorms(module, (m): m is SyncBatchNorm => m instanceof SyncBatchNorm, rank) as M | nn._BatchNorm;
  }
}
