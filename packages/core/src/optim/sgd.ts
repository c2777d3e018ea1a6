import { fmt } from '../shape.js';
import { endStep } from '../lifetime.js';
import { zeros, type Tensor } from '../tensor.js';

export interface SGDOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/** PyTorch's SGD, one fused kernel call per parameter; each step() also ends a step of tensor lifetimes (endStep). */
export class SGD {
  readonly params: Tensor[];
  readonly options: Required<SGDOptions>;
  private readonly momentumBuffers = new Map<Tensor, Tensor>();

  constructor(params: Iterable<Tensor>, opts: SGDOptions) {
    this.params = [...params];
    this.options = { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...opts };
    const { lr, momentum, dampening, weightDecay, nesterov } = this.options;
    for (const [name, v] of Object.entries({ lr, momentum, dampening, weightDecay })) {
      if (!Number.isFinite(v) || v < 0) throw new Error(`SGD: ${name} must be a finite non-negative number, got ${v}`);
    }
    if (nesterov && (momentum <= 0 || dampening !== 0)) {
      throw new Error('SGD: nesterov momentum requires a momentum and zero dampening');
    }
    for (const p of this.params) {
      if (!p.requiresGrad) throw new Error(`SGD: parameter of shape ${fmt(p.shape)} does not require grad`);
    }
  }

  /** The learning rate can change between steps (schedulers). */
  get lr(): number {
    return this.options.lr;
  }
  set lr(v: number) {
    if (!Number.isFinite(v) || v < 0) throw new Error(`SGD: lr must be a finite non-negative number, got ${v}`);
    this.options.lr = v;
  }

  step(): void {
    const { lr, momentum, dampening, weightDecay, nesterov } = this.options;
    for (const p of this.params) {
      const g = p.grad;
      if (!g) continue;
      if (g.numel !== p.numel) throw new Error(`SGD: grad ${fmt(g.shape)} does not match parameter ${fmt(p.shape)}`);
      let buf = this.momentumBuffers.get(p) ?? null;
      const first = momentum !== 0 && buf === null;
      if (first) {
        buf = zeros(p.shape, { device: p.device }).keep();
        this.momentumBuffers.set(p, buf);
      }
      const storage = p.storage('SGD.step');
      storage.backend.sgd(storage.handle, buf ? buf.handle('SGD.step') : null, g.handle('SGD.step'), p.numel, lr,
        momentum, dampening, weightDecay, nesterov, first);
    }
    endStep(this);
  }

  zeroGrad(): void {
    for (const p of this.params) p._clearGrad();
  }
}
