/** The checkpoint tests' network: tools/safetensors_torch.py's Net, module for module (names included). */
import { nn, type Tensor } from '@bagua/core';

export class Block extends nn.Module {
  declare conv1: nn.Conv2d;
  declare bn1: nn.BatchNorm2d;
  declare conv2: nn.Conv2d;
  declare bn2: nn.BatchNorm2d;
  constructor(c: number) {
    super();
    this.addModule('conv1', new nn.Conv2d(c, c, 3, { padding: 1, bias: false }));
    this.addModule('bn1', new nn.BatchNorm2d(c));
    this.addModule('conv2', new nn.Conv2d(c, c, 3, { padding: 1, bias: false }));
    this.addModule('bn2', new nn.BatchNorm2d(c));
  }
  forward(x: Tensor): Tensor {
    const y = this.bn1.forward(this.conv1.forward(x)).relu();
    return this.bn2.forward(this.conv2.forward(y)).add(x).relu();
  }
}

export class Net extends nn.Module {
  declare stem: nn.Sequential;
  declare layer1: nn.Sequential;
  declare pool: nn.AdaptiveAvgPool2d;
  declare flatten: nn.Flatten;
  declare fc: nn.Linear;
  constructor() {
    super();
    this.addModule('stem', new nn.Sequential(new nn.Conv2d(1, 4, 3, { padding: 1, bias: false }), new nn.BatchNorm2d(4), new nn.ReLU()));
    this.addModule('layer1', new nn.Sequential(new Block(4)));
    this.addModule('pool', new nn.AdaptiveAvgPool2d(1));
    this.addModule('flatten', new nn.Flatten());
    this.addModule('fc', new nn.Linear(4, 3));
  }
  forward(x: Tensor): Tensor {
    return this.fc.forward(this.flatten.forward(this.pool.forward(this.layer1.forward(this.stem.forward(x)))));
  }
}

/** Every entry of a state dict as plain numbers (a snapshot: stateDict() hands out live tensors). */
export function snapshot(m: nn.Module): Record<string, number[]> {
  return Object.fromEntries(Object.entries(m.stateDict({ torchNames: true }))
    .map(([k, v]) => [k, Array.from(v.toArray() as ArrayLike<number | bigint>, Number)]));
}
