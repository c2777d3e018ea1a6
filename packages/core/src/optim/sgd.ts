import type { Tensor } from '../tensor.js';
import {
  isBoolean, nonNegative, Optimizer, stateTensor, stateZeros, storageHandle, type ParamGroup, type Params, type StateEntry,
} from './optimizer.js';

export interface SGDOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

type SGDGroupOptions = Required<SGDOptions>;
export type SGDParamGroup = ParamGroup<SGDGroupOptions>;

interface SGDState {
  /** null until a step with momentum (PyTorch's momentum_buffer None) */
  momentumBuffer: Tensor | null;
}

/**
 * PyTorch's SGD (torch.optim.SGD, foreach=False), one fused kernel call per parameter;
 * parameter groups as PyTorch. (PyTorch's `maximize` is not implemented.)
 */
export class SGD extends Optimizer<SGDGroupOptions, SGDState> {
  constructor(params: Params<SGDGroupOptions>, opts: SGDOptions) {
    super('SGD', params, { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...opts });
  }

  /** The defaults (the constructor's options); each group's own values are in paramGroups. */
  get options(): Readonly<SGDGroupOptions> {
    return this.defaults;
  }

  protected validate(g: SGDParamGroup): void {
    for (const key of ['lr', 'momentum', 'dampening', 'weightDecay'] as const) nonNegative('SGD', key, g[key]);
    isBoolean('SGD', 'nesterov', g.nesterov);
    if (g.nesterov && (g.momentum <= 0 || g.dampening !== 0)) {
      throw new Error('SGD: nesterov momentum requires a momentum and zero dampening');
    }
  }

  protected update(p: Tensor, grad: Tensor, g: SGDParamGroup): void {
    let s = this.state.get(p);
    if (!s) this.state.set(p, (s = { momentumBuffer: null }));
    // PyTorch's first momentum step copies the gradient into a new buffer (no dampening).
    const first = g.momentum !== 0 && s.momentumBuffer === null;
    if (first) s.momentumBuffer = stateZeros(p);
    const op = 'SGD.step';
    p.storage(op).backend.sgd(storageHandle(p, op), g.momentum !== 0 ? storageHandle(s.momentumBuffer!, op) : null,
      storageHandle(grad, op), p.numel, g.lr, g.momentum, g.dampening, g.weightDecay, g.nesterov, first);
  }

  protected saveState(s: SGDState): StateEntry {
    return { momentum_buffer: s.momentumBuffer };
  }

  protected loadState(p: Tensor, e: Record<string, unknown>, where: string): SGDState {
    for (const k of Object.keys(e)) {
      if (k !== 'momentum_buffer') throw new Error(`${where}: unknown SGD state '${k}' (expected momentum_buffer)`);
    }
    const buf = e.momentum_buffer;
    return { momentumBuffer: buf === null || buf === undefined ? null : stateTensor(buf, p, `${where}.momentum_buffer`) };
  }

  protected stateTensors(s: SGDState): Tensor[] {
    return s.momentumBuffer ? [s.momentumBuffer] : [];
  }

  protected override torchGroupKeys(): Record<string, unknown> {
    return { maximize: false, foreach: null, differentiable: false };
  }
}
