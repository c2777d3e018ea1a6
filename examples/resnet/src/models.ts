/**
 * ResNets for the example: the CIFAR ResNet-20 of He et al. (2016, section 4.2) and
 * ResNet-18 as torchvision writes it. Children carry PyTorch's names (conv1, bn1,
 * layer1.0.conv2, downsample.0, fc), so state dicts line up key for key once
 * camelCase buffer names are mapped (runningMean <-> running_mean).
 */
import { F, nn, noGrad, randn, tensor, type Tensor } from '@bagua/core';

/** He et al.'s initialisation: N(0, 2 / fan), fan_in or fan_out (as torch.nn.init.kaiming_normal_ for ReLU). */
function kaimingNormal(m: nn.Conv2d | nn.Linear, mode: 'fanIn' | 'fanOut'): void {
  const [out, inp, ...k] = m.weight.shape;
  const receptive = k.reduce((a, b) => a * b, 1);
  const fan = mode === 'fanIn' ? inp * receptive : out * receptive;
  const std = Math.sqrt(2 / fan);
  noGrad(() => {
    const draw = randn(m.weight.shape, { device: m.weight.device });
    const w = draw.mul(std);
    draw.dispose();
    const old = m.weight;
    m.weight = new nn.Parameter(w);
    w.dispose();
    old.dispose();
  });
}

const conv3x3 = (inPlanes: number, planes: number, stride = 1) =>
  new nn.Conv2d(inPlanes, planes, 3, { stride, padding: 1, bias: false });

/** The residual block of ResNet-18/34 and of the CIFAR ResNets: two 3x3 convolutions and an identity (or projected) skip. */
export class BasicBlock extends nn.Module {
  static readonly expansion = 1;
  declare conv1: nn.Conv2d;
  declare bn1: nn.BatchNorm2d;
  declare conv2: nn.Conv2d;
  declare bn2: nn.BatchNorm2d;
  declare downsample?: nn.Module;

  /** `shortcut`: the module the skip path goes through when the shape changes (null: identity). */
  constructor(inPlanes: number, planes: number, stride = 1, shortcut: nn.Module | null = null) {
    super();
    this.addModule('conv1', conv3x3(inPlanes, planes, stride));
    this.addModule('bn1', new nn.BatchNorm2d(planes));
    this.addModule('conv2', conv3x3(planes, planes));
    this.addModule('bn2', new nn.BatchNorm2d(planes));
    if (shortcut) this.addModule('downsample', shortcut);
  }

  forward(x: Tensor): Tensor {
    const out = this.bn2.forward(this.conv2.forward(F.relu(this.bn1.forward(this.conv1.forward(x)))));
    const identity = this.downsample ? this.downsample.forward(x) : x;
    return F.relu(out.add(identity));
  }
}

/**
 * He et al.'s option A: the skip subsamples by the stride and pads the new channels
 * with zeros (planes/4 on each side, as the usual PyTorch port does): no parameters.
 * Done as a 1x1 convolution with a fixed 0/1 weight (exact: one term per output), so
 * it runs wherever conv2d does and its gradient is conv2d's; the weight is no state.
 */
export class ShortcutA extends nn.Module {
  private readonly weights = new Map<string, Tensor>();

  constructor(readonly inPlanes: number, readonly planes: number, readonly stride: number) {
    super();
    const pad = Math.floor(planes / 4);
    if (inPlanes + 2 * pad !== planes) {
      throw new Error(`ShortcutA: ${inPlanes} channels padded by ${pad} on each side do not make ${planes}`);
    }
  }

  private weight(device: string): Tensor {
    let w = this.weights.get(device);
    if (!w) {
      const e = new Float32Array(this.planes * this.inPlanes);
      const pad = Math.floor(this.planes / 4);
      for (let i = 0; i < this.inPlanes; i++) e[(pad + i) * this.inPlanes + i] = 1;
      w = tensor(e, { shape: [this.planes, this.inPlanes, 1, 1], device }).keep();
      this.weights.set(device, w);
    }
    return w;
  }

  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight(x.device.toString()), null, { stride: this.stride });
  }
}

export interface Resnet20Options {
  /** 3 for CIFAR-10, 1 for (Fashion-)MNIST padded to 32x32 */
  inChannels?: number;
  numClasses?: number;
  /** 'A' (He et al.'s CIFAR choice, the default): zero-padded identity; 'B': 1x1 convolution and BatchNorm. */
  shortcut?: 'A' | 'B';
}

/** The CIFAR ResNet-20: a 3x3 stem of 16 channels, 3 stages of 3 BasicBlocks (16, 32, 64), global pool, fc. */
export class CifarResNet extends nn.Module {
  declare conv1: nn.Conv2d;
  declare bn1: nn.BatchNorm2d;
  declare layer1: nn.Sequential;
  declare layer2: nn.Sequential;
  declare layer3: nn.Sequential;
  declare avgpool: nn.AdaptiveAvgPool2d;
  declare fc: nn.Linear;

  constructor(blocksPerStage: number, opts: Resnet20Options = {}) {
    super();
    const shortcut = opts.shortcut ?? 'A';
    if (shortcut !== 'A' && shortcut !== 'B') throw new Error(`resnet: shortcut must be 'A' or 'B', got ${String(shortcut)}`);
    let inPlanes = 16;
    this.addModule('conv1', conv3x3(opts.inChannels ?? 3, 16));
    this.addModule('bn1', new nn.BatchNorm2d(16));
    [16, 32, 64].forEach((planes, i) => {
      const blocks: nn.Module[] = [];
      for (let b = 0; b < blocksPerStage; b++) {
        const stride = b === 0 && i > 0 ? 2 : 1;
        let skip: nn.Module | null = null;
        if (stride !== 1 || inPlanes !== planes) {
          skip = shortcut === 'A' ? new ShortcutA(inPlanes, planes, stride)
            : new nn.Sequential(new nn.Conv2d(inPlanes, planes, 1, { stride, bias: false }), new nn.BatchNorm2d(planes));
        }
        blocks.push(new BasicBlock(inPlanes, planes, stride, skip));
        inPlanes = planes;
      }
      this.addModule(`layer${i + 1}`, new nn.Sequential(...blocks));
    });
    this.addModule('avgpool', new nn.AdaptiveAvgPool2d(1));
    this.addModule('fc', new nn.Linear(64, opts.numClasses ?? 10));
    for (const m of this.modules()) if (m instanceof nn.Conv2d || m instanceof nn.Linear) kaimingNormal(m, 'fanIn');
  }

  forward(x: Tensor): Tensor {
    let h = F.relu(this.bn1.forward(this.conv1.forward(x)));
    h = this.layer3.forward(this.layer2.forward(this.layer1.forward(h)));
    return this.fc.forward(this.avgpool.forward(h).flatten(1));
  }
}

/** ResNet-20 for 32x32 images (0.27M parameters with option A and 3 input channels). */
export function resnet20(opts: Resnet20Options = {}): CifarResNet {
  return new CifarResNet(3, opts);
}

export interface Resnet18Options {
  inChannels?: number;
  numClasses?: number;
  /** 'imagenet' (torchvision's 7x7 stride-2 stem and 3x3 max pool, the default) or 'cifar' (one 3x3 stride-1 convolution, no pool). */
  stem?: 'imagenet' | 'cifar';
}

/** torchvision's ResNet-18: BasicBlock x [2, 2, 2, 2] over 64-512 channels, 1x1 projection shortcuts (option B). */
export class ResNet extends nn.Module {
  declare conv1: nn.Conv2d;
  declare bn1: nn.BatchNorm2d;
  declare maxpool: nn.Module;
  declare layer1: nn.Sequential;
  declare layer2: nn.Sequential;
  declare layer3: nn.Sequential;
  declare layer4: nn.Sequential;
  declare avgpool: nn.AdaptiveAvgPool2d;
  declare fc: nn.Linear;

  constructor(layers: readonly number[], opts: Resnet18Options = {}) {
    super();
    const stem = opts.stem ?? 'imagenet';
    if (stem !== 'imagenet' && stem !== 'cifar') throw new Error(`resnet18: stem must be 'imagenet' or 'cifar', got ${String(stem)}`);
    const inChannels = opts.inChannels ?? 3;
    this.addModule('conv1', stem === 'imagenet'
      ? new nn.Conv2d(inChannels, 64, 7, { stride: 2, padding: 3, bias: false })
      : conv3x3(inChannels, 64));
    this.addModule('bn1', new nn.BatchNorm2d(64));
    this.addModule('maxpool', stem === 'imagenet' ? new nn.MaxPool2d(3, { stride: 2, padding: 1 }) : new nn.Identity());
    let inPlanes = 64;
    [64, 128, 256, 512].forEach((planes, i) => {
      const stride = i === 0 ? 1 : 2;
      const blocks: nn.Module[] = [];
      for (let b = 0; b < layers[i]; b++) {
        const s = b === 0 ? stride : 1;
        const down = s !== 1 || inPlanes !== planes
          ? new nn.Sequential(new nn.Conv2d(inPlanes, planes, 1, { stride: s, bias: false }), new nn.BatchNorm2d(planes))
          : null;
        blocks.push(new BasicBlock(inPlanes, planes, s, down));
        inPlanes = planes;
      }
      this.addModule(`layer${i + 1}`, new nn.Sequential(...blocks));
    });
    this.addModule('avgpool', new nn.AdaptiveAvgPool2d(1));
    this.addModule('fc', new nn.Linear(512, opts.numClasses ?? 1000));
    // torchvision: kaiming_normal_(mode='fan_out') for convolutions; BatchNorm weight 1, bias 0; Linear keeps its default
    for (const m of this.modules()) if (m instanceof nn.Conv2d) kaimingNormal(m, 'fanOut');
  }

  forward(x: Tensor): Tensor {
    let h = this.maxpool.forward(F.relu(this.bn1.forward(this.conv1.forward(x))));
    h = this.layer4.forward(this.layer3.forward(this.layer2.forward(this.layer1.forward(h))));
    return this.fc.forward(this.avgpool.forward(h).flatten(1));
  }
}

export function resnet18(opts: Resnet18Options = {}): ResNet {
  return new ResNet([2, 2, 2, 2], opts);
}
