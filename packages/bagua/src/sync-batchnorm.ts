import { F, formatShape, nn, recordOp, tensor, type Tensor } from '@bagua/core';
import { defaultGroup, isInitialized, type ProcessGroup } from '@bagua/comm';
import { convertBatchNorms, revertBatchNorms, type RankAware } from '@bagua/convert';

export interface SyncBatchNormOptions extends nn.BatchNormOptions {
  /** The group whose ranks share statistics (default: the world group). */
  processGroup?: ProcessGroup | null;
}

/** Layers made in the same order on every rank get the same number: it tags their records. */
let layersMade = 0;

/**
 * Batch normalisation over the global batch of a process group: one
 * all-gather of [mean, var, count, tag] records forward, one all-reduce of
 * [sum_dy, sum_dy_xmu] backward (design §5). Records travel through the host,
 * which lets every rank check the records agree before using them.
 */
export class SyncBatchNorm extends nn._BatchNorm implements RankAware {
  processGroup: ProcessGroup | null;
  /** The rank of the last input seen, so revertSyncBatchnorm can pick BatchNorm1d/2d/3d. */
  inputRank: number | null = null;
  readonly layerTag = layersMade++ % (1 << 24);

  constructor(numFeatures: number, opts: SyncBatchNormOptions = {}) {
    super(numFeatures, opts);
    this.processGroup = opts.processGroup ?? null;
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
    const group = this.processGroup ?? (isInitialized() ? defaultGroup() : null);
    // Eval with running statistics, and batch statistics outside training, stay local (PyTorch's rule).
    if (!this.training || !group || group.size === 1) return super.forward(x);
    return this.syncForward(x, group, this.averagingFactor());
  }

  private syncForward(x: Tensor, group: ProcessGroup, factor: number): Tensor {
    const c = this.numFeatures;
    const width = 2 * c + 2;
    const record = new Float32Array(width);
    record.set(F.batchNormStats(x).toArray() as Float32Array);
    record[width - 1] = this.layerTag;
    const gathered = new Float32Array(width * group.size);
    group.allGather(gathered, record);

    const stats = new Float32Array((width - 1) * group.size);
    let globalCount = 0;
    for (let r = 0; r < group.size; r++) {
      const row = gathered.subarray(r * width, (r + 1) * width);
      if (row[width - 1] !== this.layerTag) {
        throw new Error(`SyncBatchNorm: ranks disagree on the layer sequence: group rank ${group.rank} is in ` +
          `SyncBatchNorm #${this.layerTag} (${c} channels), group rank ${r} in #${row[width - 1]}`);
      }
      globalCount += row[width - 2];
      stats.set(row.subarray(0, width - 1), r * (width - 1));
    }
    if (globalCount <= 1) {
      throw new Error(`SyncBatchNorm: expected more than 1 value per channel when training, got ${globalCount} ` +
        `over the group (local input ${formatShape(x.shape)})`);
    }

    const merged = F.batchNormMergeStats(tensor(stats, { shape: [group.size, width - 1], device: x.device }),
      this.eps, this.trackRunningStats ? this.runningMean : null, this.trackRunningStats ? this.runningVar : null,
      factor);
    const { mean, invstd, count } = merged;
    const { weight, bias } = this;
    const y = F.batchNormElemt(x, mean, invstd, weight, bias);
    return recordOp(y, 'SyncBatchNorm', [x, weight, bias], (dy) => {
      const needW = (weight?.requiresGrad ?? false) || (bias?.requiresGrad ?? false);
      const red = F.batchNormBackwardReduce(dy, x, mean, invstd, needW);
      const sums = red.sums.toArray() as Float32Array;
      group.allReduce(sums, 'sum');
      const dx = F.batchNormBackwardElemt(dy, x, mean, invstd, weight,
        tensor(sums, { device: x.device }), count);
      return [dx, weight?.requiresGrad ? red.gradWeight : null, bias?.requiresGrad ? red.gradBias : null];
    });
  }

  /**
   * Replaces every BatchNorm1d/2d/3d in the tree with a SyncBatchNorm sharing
   * its parameters and buffers; returns a new layer when the root is one.
   */
  static convertSyncBatchnorm<M extends nn.Module>(module: M, processGroup?: ProcessGroup | null): M | SyncBatchNorm {
    return convertBatchNorms(module, (bn) => new SyncBatchNorm(bn.numFeatures, {
      eps: bn.eps, momentum: bn.momentum, affine: bn.affine, trackRunningStats: bn.trackRunningStats, processGroup,
    })) as M | SyncBatchNorm;
  }

  /** The way back, for single-device inference and export: BatchNorm1d/2d/3d by the input rank seen (or `rank`). */
  static revertSyncBatchnorm<M extends nn.Module>(module: M, rank?: number): M | nn._BatchNorm {
    return revertBatchNorms(module, (m): m is SyncBatchNorm => m instanceof SyncBatchNorm, rank) as M | nn._BatchNorm;
  }
}
