import * as F from '../ops/index.js';
import { fmt } from '../shape.js';
import { noGrad } from '../autograd.js';
import { ones, tensor, zeros, type Tensor } from '../tensor.js';
import { Module, Parameter } from './module.js';

export interface BatchNormOptions {
  eps?: number;
  /** Factor of the running-average update; null for the cumulative average (1 / numBatchesTracked). */
  momentum?: number | null;
  affine?: boolean;
  trackRunningStats?: boolean;
}

/**
 * The shared base of BatchNorm1d/2d/3d (and SyncBatchNorm), with PyTorch's
 * exact semantics: running statistics with unbiased variance, momentum or
 * cumulative averaging, batch statistics in eval when not tracking.
 */
export abstract class _BatchNorm extends Module {
  readonly eps: number;
  readonly momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  numBatchesTracked = 0;
  declare weight: Parameter | null;
  declare bias: Parameter | null;
  declare runningMean: Tensor | null;
  declare runningVar: Tensor | null;

  constructor(readonly numFeatures: number, opts: BatchNormOptions = {}) {
    super();
    const name = this.constructor.name;
    if (!Number.isInteger(numFeatures) || numFeatures <= 0) {
      throw new Error(`${name}: numFeatures must be a positive integer, got ${numFeatures}`);
    }
    this.eps = opts.eps ?? 1e-5;
    if (!Number.isFinite(this.eps) || this.eps <= 0) throw new Error(`${name}: eps must be a finite positive number, got ${this.eps}`);
    this.momentum = opts.momentum === undefined ? 0.1 : opts.momentum;
    if (this.momentum !== null && !Number.isFinite(this.momentum)) {
      throw new Error(`${name}: momentum must be a finite number or null, got ${this.momentum}`);
    }
    this.affine = opts.affine ?? true;
    this.trackRunningStats = opts.trackRunningStats ?? true;
    this.registerParameter('weight', this.affine ? new Parameter(ones([numFeatures])) : null);
    this.registerParameter('bias', this.affine ? new Parameter(zeros([numFeatures])) : null);
    this.registerBuffer('runningMean', this.trackRunningStats ? zeros([numFeatures]) : null);
    this.registerBuffer('runningVar', this.trackRunningStats ? ones([numFeatures]) : null);
  }

  /** Each variant's input-rank check, as in PyTorch. */
  protected abstract checkInputDim(x: Tensor): void;

  resetRunningStats(): void {
    if (!this.trackRunningStats) return;
    noGrad(() => {
      this.runningMean!._assign(zeros([this.numFeatures], { device: this.runningMean!.device }));
      this.runningVar!._assign(ones([this.numFeatures], { device: this.runningVar!.device }));
    });
    this.numBatchesTracked = 0;
  }

  protected checkChannels(x: Tensor): void {
    if (x.shape[1] !== this.numFeatures) {
      throw new Error(`${this.constructor.name}: expected ${this.numFeatures} channels, got input of shape ${fmt(x.shape)}`);
    }
  }

  /** The running-average factor of this step; counts the batch when tracking in training. */
  protected averagingFactor(): number {
    if (!(this.training && this.trackRunningStats)) return 0;
    this.numBatchesTracked += 1;
    return this.momentum === null ? 1 / this.numBatchesTracked : this.momentum;
  }

  forward(x: Tensor): Tensor {
    this.checkInputDim(x);
    this.checkChannels(x);
    const factor = this.averagingFactor();
    return F.batchNorm(x, this.runningMean, this.runningVar, this.weight, this.bias,
      this.training || !this.trackRunningStats, factor, this.eps);
  }

  protected override extraState(): Record<string, Tensor> {
    if (!this.trackRunningStats) return {};
    return { numBatchesTracked: tensor([this.numBatchesTracked], { dtype: 'int64' }) };
  }

  protected override loadExtraState(state: Record<string, Tensor>): void {
    const t = state.numBatchesTracked;
    if (t) this.numBatchesTracked = t.item();
  }
}

function rankCheck(layer: string, x: Tensor, ranks: number[]): void {
  if (!ranks.includes(x.ndim)) {
    throw new Error(`${layer}: expected ${ranks.map((r) => `${r}D`).join(' or ')} input, got ${x.ndim}D input of shape ${fmt(x.shape)}`);
  }
}

export class BatchNorm1d extends _BatchNorm {
  protected checkInputDim(x: Tensor): void {
    rankCheck('BatchNorm1d', x, [2, 3]);
  }
}

export class BatchNorm2d extends _BatchNorm {
  protected checkInputDim(x: Tensor): void {
    rankCheck('BatchNorm2d', x, [4]);
  }
}

export class BatchNorm3d extends _BatchNorm {
  protected checkInputDim(x: Tensor): void {
    rankCheck('BatchNorm3d', x, [5]);
  }
}

