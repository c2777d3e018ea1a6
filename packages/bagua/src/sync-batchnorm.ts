import { empty, F, formatShape, nn, recordOp, tensor, type Tensor } from '@bagua/core';
import { defaultGroup, isInitialized, type ProcessGroup } from '@bagua/comm';
import { convertBatchNorms, revertBatchNorms, type RankAware } from '@bagua/convert';
import { commBuffer, movesDeviceMemory } from './comm-buffer.js';

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
 * NCCL moves the records device to device with no host round trip, so the
 * checks that need their values on the host are skipped there.
 */
function gatherOnDevice(stats: Tensor, group: ProcessGroup): Tensor {
  const gathered = empty([group.size, stats.numel], 'float32', stats.device);
  group.allGather(commBuffer(gathered), commBuffer(stats));
  return gathered;
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
 * [sum_dy, sum_dy_xmu] backward (design §5). With CPU groups the records
 * travel through the host, which lets every rank check that they agree.
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
    const stats = F.batchNormStats(x);
    const gathered = movesDeviceMemory(group, x) ? gatherOnDevice(stats, group) : this.gatherChecked(stats, x, group);
    const { mean, invstd, count } = F.batchNormMergeStats(gathered, this.eps,
      this.trackRunningStats ? this.runningMean : null, this.trackRunningStats ? this.runningVar : null, factor);
    const { weight, bias } = this;
    const y = F.batchNormElemt(x, mean, invstd, weight, bias);
    return recordOp(y, 'SyncBatchNorm', [x, weight, bias], [x, weight, mean, invstd, count],
      (dy, [sx, sw, smean, sinvstd, scount], needs) => {
        const red = F.batchNormBackwardReduce(dy, sx!, smean!, sinvstd!, needs[1] || needs[2]);
        group.allReduce(commBuffer(red.sums), 'sum'); // in place: [sum_dy, sum_dy_xmu] of the whole group
        const dx = needs[0] ? F.batchNormBackwardElemt(dy, sx!, smean!, sinvstd!, sw, red.sums, scount!) : null;
        return [dx, needs[1] ? red.gradWeight : null, needs[2] ? red.gradBias : null];
      });
  }

  /**
   * The all-gather through the host, with each record tagged by its layer, so
   * that every rank can check that all are in the same layer and that the
   * global count allows training, before using the records.
   */
  private gatherChecked(stats: Tensor, x: Tensor, group: ProcessGroup): Tensor {
    const c = this.numFeatures;
    const width = 2 * c + 2;
    const record = new Float32Array(width);
    record.set(stats.toArray() as Float32Array);
    record[width - 1] = this.layerTag;
    const gathered = new Float32Array(width * group.size);
    group.allGather(gathered, record);

    const rows = new Float32Array((width - 1) * group.size);
    let globalCount = 0;
    for (let r = 0; r < group.size; r++) {
      const row = gathered.subarray(r * width, (r + 1) * width);
      if (row[width - 1] !== this.layerTag) {
        throw new Error(`SyncBatchNorm: ranks disagree on the layer sequence: group rank ${group.rank} is in ` +
          `layer '${this.name}' (${c} channels, tag ${this.layerTag}), group rank ${r} in a layer tagged ${row[width - 1]}`);
      }
      globalCount += row[width - 2];
      rows.set(row.subarray(0, width - 1), r * (width - 1));
    }
    if (globalCount === 1) {
      throw new Error(`SyncBatchNorm: expected more than 1 value per channel when training, got ${globalCount} ` +
        `over the group (local input ${formatShape(x.shape)})`);
    }
    return tensor(rows, { shape: [group.size, width - 1], device: x.device });
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
