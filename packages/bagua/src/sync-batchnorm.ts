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
}

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
  private readonly layerTag: number;

  constructor(numFeatures: number, opts: SyncBatchNormOptions = {}) {
    super(numFeatures, opts);
    this.processGroup = opts.processGroup;
    this.name = opts.name ?? `#${layersMade++}`;
    this.layerTag = tagOf(this.name);
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
    const { gathered, host } = gatherRecords(F.batchNormStats(x, this.layerTag), group);
    if (host) this.checkRecords(host, x, group);
    return this.normalizeSynced(x, gathered, factor, 'SyncBatchNorm', (sums) => {
      group.allReduce(commBuffer(sums), 'sum'); // in place: [sum_dy, sum_dy_xmu] of the whole group
      return sums;
    });
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
    const { mean, invstd, count } = F.batchNormMergeStats(records, this.eps,
      this.trackRunningStats ? this.runningMean : null, this.trackRunningStats ? this.runningVar : null, factor);
    const { weight, bias } = this;
    const y = F.batchNormElemt(x, mean, invstd, weight, bias);
    return recordOp(y, opName, [x, weight, bias], [x, weight, mean, invstd, count],
      (dy, [sx, sw, smean, sinvstd, scount], needs) => {
        const red = F.batchNormBackwardReduce(dy, sx!, smean!, sinvstd!, needs[1] || needs[2]);
        const sums = allReduceSums(red.sums);
        const dx = needs[0] ? F.batchNormBackwardElemt(dy, sx!, smean!, sinvstd!, sw, sums, scount!) : null;
        return [dx, needs[1] ? red.gradWeight : null, needs[2] ? red.gradBias : null];
      });
  }

  /**
   * Every rank's record must be of this layer (its tag) and the global count
   * must allow training, before the records are used.
   */
  private checkRecords(gathered: Float32Array, x: Tensor, group: ProcessGroup): void {
    const c = this.numFeatures;
    const width = 2 * c + 2;
    let globalCount = 0;
    for (let r = 0; r < group.size; r++) {
      const tag = gathered[r * width + width - 1];
      if (tag !== this.layerTag) {
        throw new Error(`SyncBatchNorm: ranks disagree on the layer sequence: group rank ${group.rank} is in ` +
          `layer '${this.name}' (${c} channels, tag ${this.layerTag}), group rank ${r} in a layer tagged ${tag}`);
      }
      globalCount += gathered[r * width + width - 2];
    }
    if (globalCount === 1) {
      throw new Error(`SyncBatchNorm: expected more than 1 value per channel when training, got ${globalCount} ` +
        `over the group (local input ${formatShape(x.shape)})`);
    }
  }

  /**
   * Replaces every BatchNorm1d/2d/3d in the tree with a SyncBatchNorm sharing
   * its parameters and buffers; returns a new layer when the root is one.
   */
  static convertSyncBatchnorm<M extends nn.Module>(module: M, processGroup?: ProcessGroup | null): M | SyncBatchNorm {
    return convertBatchNorms(module, (bn, path) => new SyncBatchNorm(bn.numFeatures, {
      eps: bn.eps, momentum: bn.momentum, affine: bn.affine, trackRunningStats: bn.trackRunningStats, processGroup,
      name: path || bn.constructor.name,
    })) as M | SyncBatchNorm;
  }

  /** The way back, for single-device inference and export: BatchNorm1d/2d/3d by the input rank seen (or `rank`). */
  static revertSyncBatchnorm<M extends nn.Module>(module: M, rank?: number): M | nn._BatchNorm {
    return revertBatchNorms(module, (m): m is SyncBatchNorm => m instanceof SyncBatchNorm, rank) as M | nn._BatchNorm;
  }
}
