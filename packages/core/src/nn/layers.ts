import * as F from '../ops/index.js';
import type { Reduction } from '../ops/index.js';
import { pair } from '../shape.js';
import { rand, type Tensor } from '../tensor.js';
import type { Generator } from '../random.js';
import { triple } from '../ops/conv-nd.js';
import { Module, Parameter } from './module.js';

/** PyTorch's default init for Linear/Conv: U(-1/sqrt(fanIn), 1/sqrt(fanIn)) (kaiming_uniform with a = sqrt(5)). */
function uniformInit(shape: readonly number[], fanIn: number): Parameter {
  const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
  return new Parameter(rand(shape, { low: -bound, high: bound }));
}

function positiveInt(layer: string, name: string, v: number): number {
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${layer}: ${name} must be a positive integer, got ${v}`);
  return v;
}

export class Sequential extends Module {
  constructor(...modules: Module[]) {
    super();
    modules.forEach((m, i) => this.addModule(String(i), m));
  }

  get length(): number {
    return [...this.children()].length;
  }

  at(i: number): Module {
    const m = [...this.children()][i < 0 ? i + this.length : i];
    if (!m) throw new Error(`Sequential: index ${i} out of range for ${this.length} modules`);
    return m;
  }

  forward(x: Tensor): Tensor {
    for (const m of this.children()) x = m.forward(x);
    return x;
  }
}

export class Linear extends Module {
  declare weight: Parameter;
  declare bias: Parameter | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: { bias?: boolean } = {}) {
    super();
    positiveInt('Linear', 'inFeatures', inFeatures);
    positiveInt('Linear', 'outFeatures', outFeatures);
    this.registerParameter('weight', uniformInit([outFeatures, inFeatures], inFeatures));
    this.registerParameter('bias', opts.bias === false ? null : uniformInit([outFeatures], inFeatures));
  }

  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

export class Conv2d extends Module {
  declare weight: Parameter;
  declare bias: Parameter | null;
  readonly options: Required<F.Conv2dOptions>;

  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: number | [number, number],
    opts: F.Conv2dOptions & { bias?: boolean } = {}) {
    super();
    const groups = opts.groups ?? 1;
    positiveInt('Conv2d', 'inChannels', inChannels);
    positiveInt('Conv2d', 'outChannels', outChannels);
    if (!Number.isInteger(groups) || groups < 1 || inChannels % groups || outChannels % groups) {
      throw new Error(`Conv2d: groups=${groups} must divide inChannels=${inChannels} and outChannels=${outChannels}`);
    }
    const [r, s] = pair('Conv2d', 'kernelSize', kernelSize);
    this.options = { stride: opts.stride ?? 1, padding: opts.padding ?? 0, dilation: opts.dilation ?? 1, groups };
    const fanIn = (inChannels / groups) * r * s;
    this.registerParameter('weight', uniformInit([outChannels, inChannels / groups, r, s], fanIn));
    this.registerParameter('bias', opts.bias === false ? null : uniformInit([outChannels], fanIn));
  }

  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias, this.options);
  }
}

export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return F.relu(x);
  }
}

export class MaxPool2d extends Module {
  constructor(readonly kernelSize: number | [number, number],
    readonly opts: { stride?: number | [number, number]; padding?: number | [number, number]; dilation?: number | [number, number] } = {}) {
    super();
  }

  forward(x: Tensor): Tensor {
    return F.maxPool2d(x, this.kernelSize, this.opts);
  }
}

export class AvgPool2d extends Module {
  constructor(readonly kernelSize: number | [number, number],
    readonly opts: { stride?: number | [number, number]; padding?: number | [number, number]; countIncludePad?: boolean } = {}) {
    super();
  }

  forward(x: Tensor): Tensor {
    return F.avgPool2d(x, this.kernelSize, this.opts);
  }
}

export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: number | [number, number]) {
    super();
  }

  forward(x: Tensor): Tensor {
    return F.adaptiveAvgPool2d(x, this.outputSize);
  }
}

export class Flatten extends Module {
  constructor(readonly startDim = 1, readonly endDim = -1) {
    super();
  }

  forward(x: Tensor): Tensor {
    return F.flatten(x, this.startDim, this.endDim);
  }
}

export class MSELoss extends Module {
  constructor(readonly opts: { reduction?: Reduction } = {}) {
    super();
  }

  forward(input: Tensor, target: Tensor): Tensor {
    return F.mseLoss(input, target, this.opts);
  }
}

export class CrossEntropyLoss extends Module {
  constructor(readonly opts: { reduction?: Reduction } = {}) {
    super();
  }

  forward(input: Tensor, target: Tensor): Tensor {
    return F.crossEntropy(input, target, this.opts);
  }
}

/** A placeholder that returns its input (PyTorch's nn.Identity; constructor arguments are ignored there too). */
export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}

/** Zeroes elements with probability p in training, scaling the rest by 1 / (1 - p); the input itself in eval. */
export class Dropout extends Module {
  readonly generator?: Generator;

  constructor(readonly p = 0.5, opts: { generator?: Generator } = {}) {
    super();
    if (!(p >= 0 && p <= 1)) throw new Error(`Dropout: probability has to be between 0 and 1, but got ${p}`);
    this.generator = opts.generator;
  }

  forward(x: Tensor): Tensor {
    return F.dropout(x, this.p, this.training, { generator: this.generator });
  }
}

function checkGroups(layer: string, inChannels: number, outChannels: number, groups: number): void {
  positiveInt(layer, 'inChannels', inChannels);
  positiveInt(layer, 'outChannels', outChannels);
  if (!Number.isInteger(groups) || groups < 1 || inChannels % groups || outChannels % groups) {
    throw new Error(`${layer}: groups=${groups} must divide inChannels=${inChannels} and outChannels=${outChannels}`);
  }
}

export class Conv1d extends Module {
  declare weight: Parameter;
  declare bias: Parameter | null;
  readonly options: Required<F.Conv1dOptions>;

  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: number,
    opts: F.Conv1dOptions & { bias?: boolean } = {}) {
    super();
    const groups = opts.groups ?? 1;
    checkGroups('Conv1d', inChannels, outChannels, groups);
    positiveInt('Conv1d', 'kernelSize', kernelSize);
    this.options = { stride: opts.stride ?? 1, padding: opts.padding ?? 0, dilation: opts.dilation ?? 1, groups };
    const fanIn = (inChannels / groups) * kernelSize;
    this.registerParameter('weight', uniformInit([outChannels, inChannels / groups, kernelSize], fanIn));
    this.registerParameter('bias', opts.bias === false ? null : uniformInit([outChannels], fanIn));
  }

  forward(x: Tensor): Tensor {
    return F.conv1d(x, this.weight, this.bias, this.options);
  }
}

export class Conv3d extends Module {
  declare weight: Parameter;
  declare bias: Parameter | null;
  readonly options: Required<F.Conv3dOptions>;

  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: number | [number, number, number],
    opts: F.Conv3dOptions & { bias?: boolean } = {}) {
    super();
    const groups = opts.groups ?? 1;
    checkGroups('Conv3d', inChannels, outChannels, groups);
    const [kd, kh, kw] = triple('Conv3d', 'kernelSize', kernelSize);
    for (const v of [kd, kh, kw]) positiveInt('Conv3d', 'kernelSize', v);
    this.options = { stride: opts.stride ?? 1, padding: opts.padding ?? 0, dilation: opts.dilation ?? 1, groups };
    const fanIn = (inChannels / groups) * kd * kh * kw;
    this.registerParameter('weight', uniformInit([outChannels, inChannels / groups, kd, kh, kw], fanIn));
    this.registerParameter('bias', opts.bias === false ? null : uniformInit([outChannels], fanIn));
  }

  forward(x: Tensor): Tensor {
    return F.conv3d(x, this.weight, this.bias, this.options);
  }
}

export class AvgPool1d extends Module {
  constructor(readonly kernelSize: number,
    readonly opts: { stride?: number; padding?: number; countIncludePad?: boolean } = {}) {
    super();
  }

  forward(x: Tensor): Tensor {
    return F.avgPool1d(x, this.kernelSize, this.opts);
  }
}

type Triple = number | [number, number, number];

export class AvgPool3d extends Module {
  constructor(readonly kernelSize: Triple,
    readonly opts: { stride?: Triple; padding?: Triple; countIncludePad?: boolean } = {}) {
    super();
  }

  forward(x: Tensor): Tensor {
    return F.avgPool3d(x, this.kernelSize, this.opts);
  }
}
