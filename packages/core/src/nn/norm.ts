import * as F from '../ops/index.js';
import { fmt } from '../shape.js';
import { ones, zeros, type Tensor } from '../tensor.js';
import { Module, Parameter } from './module.js';

function checkEps(layer: string, eps: number): number {
  if (!Number.isFinite(eps) || eps <= 0) throw new Error(`${layer}: eps must be a finite positive number, got ${eps}`);
  return eps;
}

/** PyTorch's nn.LayerNorm: normalises over the trailing normalizedShape; weight 1 and bias 0 of that shape. */
export class LayerNorm extends Module {
  readonly normalizedShape: number[];
  readonly eps: number;
  readonly elementwiseAffine: boolean;
  declare weight: Parameter | null;
  declare bias: Parameter | null;

  constructor(normalizedShape: number | readonly number[], opts: { eps?: number; elementwiseAffine?: boolean } = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
    if (this.normalizedShape.length === 0 || this.normalizedShape.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new Error(`LayerNorm: normalizedShape must be a non-empty list of positive integers, got ${fmt(this.normalizedShape)}`);
    }
    this.eps = checkEps('LayerNorm', opts.eps ?? 1e-5);
    this.elementwiseAffine = opts.elementwiseAffine ?? true;
    const affine = this.elementwiseAffine;
    this.registerParameter('weight', affine ? new Parameter(ones(this.normalizedShape)) : null);
    this.registerParameter('bias', affine ? new Parameter(zeros(this.normalizedShape)) : null);
  }

  forward(x: Tensor): Tensor {
    return F.layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps);
  }
}

/** PyTorch's nn.GroupNorm: numChannels in numGroups groups; per-channel weight 1 and bias 0 when affine. */
export class GroupNorm extends Module {
  readonly eps: number;
  readonly affine: boolean;
  declare weight: Parameter | null;
  declare bias: Parameter | null;

  constructor(readonly numGroups: number, readonly numChannels: number, opts: { eps?: number; affine?: boolean } = {}) {
    super();
    if (!Number.isInteger(numGroups) || numGroups < 1 || !Number.isInteger(numChannels) || numChannels < 1 ||
      numChannels % numGroups) {
      throw new Error(`GroupNorm: numChannels (${numChannels}) must be divisible by numGroups (${numGroups}), both positive integers`);
    }
    this.eps = checkEps('GroupNorm', opts.eps ?? 1e-5);
    this.affine = opts.affine ?? true;
    this.registerParameter('weight', this.affine ? new Parameter(ones([numChannels])) : null);
    this.registerParameter('bias', this.affine ? new Parameter(zeros([numChannels])) : null);
  }

  forward(x: Tensor): Tensor {
    if (x.ndim >= 2 && x.shape[1] !== this.numChannels) {
      throw new Error(`GroupNorm: expected ${this.numChannels} channels, got input of shape ${fmt(x.shape)}`);
    }
    return F.groupNorm(x, this.numGroups, this.weight, this.bias, this.eps);
  }
}
