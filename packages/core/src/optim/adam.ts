import type { Tensor } from '../tensor.js';
import {
  isBoolean, nonNegative, Optimizer, stateNumber, stateTensor, stateZeros, stepTensor, storageHandle, type ParamGroup, type Params,
  type StateEntry,
} from './optimizer.js';

export interface AdamOptions {
  /** default 1e-3 */
  lr?: number;
  /** default [0.9, 0.999] */
  betas?: readonly [number, number];
  /** default 1e-8 */
  eps?: number;
  /** Adam: an L2 term added to the gradient (default 0); AdamW: decoupled decay (default 1e-2). */
  weightDecay?: number;
  amsgrad?: boolean;
  maximize?: boolean;
}

type AdamGroupOptions = Required<AdamOptions> & { betas: [number, number] };
export type AdamParamGroup = ParamGroup<AdamGroupOptions>;

interface AdamState {
  /** This parameter's step count (PyTorch's per-parameter `step`), on the host. */
  step: number;
  expAvg: Tensor;
  expAvgSq: Tensor;
  /** amsgrad only */
  maxExpAvgSq: Tensor | null;
}

/**
 * Adam and AdamW (torch.optim.Adam / AdamW of PyTorch 1.13, foreach=False): one fused
 * in-place kernel call per parameter (bk_adam_f32), the bias corrections computed here in
 * double from the parameter's own step count, as PyTorch computes them in Python.
 */
abstract class AdamBase extends Optimizer<AdamGroupOptions, AdamState> {
  constructor(name: string, params: Params<AdamGroupOptions>, opts: AdamOptions, private readonly decoupled: boolean) {
    super(name, params, {
      lr: 1e-3, eps: 1e-8, weightDecay: decoupled ? 1e-2 : 0, amsgrad: false, maximize: false, ...opts,
      betas: opts.betas ? [...opts.betas] as [number, number] : [0.9, 0.999],
    });
  }

  protected validate(g: AdamParamGroup): void {
    for (const key of ['lr', 'eps', 'weightDecay'] as const) nonNegative(this.name, key, g[key]);
    const b = g.betas;
    if (!Array.isArray(b) || b.length !== 2) throw new Error(`${this.name}: betas must be [beta1, beta2], got ${String(b)}`);
    b.forEach((v, i) => {
      if (typeof v !== 'number' || !(v >= 0 && v < 1)) {
        throw new Error(`${this.name}: betas[${i}] must be in [0, 1), got ${String(v)}`);
      }
    });
    isBoolean(this.name, 'amsgrad', g.amsgrad);
    isBoolean(this.name, 'maximize', g.maximize);
  }

  protected update(p: Tensor, grad: Tensor, g: AdamParamGroup): void {
    let s = this.state.get(p);
    if (!s) {
      s = { step: 0, expAvg: stateZeros(p), expAvgSq: stateZeros(p), maxExpAvgSq: null };
      this.state.set(p, s);
    }
    // Made at the first step with amsgrad (PyTorch makes it with the state; a group switched
    // to amsgrad later starts from zeros instead of failing).
    if (g.amsgrad && !s.maxExpAvgSq) s.maxExpAvgSq = stateZeros(p);
    const step = ++s.step;
    const [beta1, beta2] = g.betas;
    // In double, as PyTorch's Python floats; the kernel rounds each once to float.
    const biasCorrection1 = 1 - beta1 ** step;
    const biasCorrection2 = 1 - beta2 ** step;
    const op = `${this.name}.step`;
    p.storage(op).backend.adam(storageHandle(p, op), storageHandle(s.expAvg, op), storageHandle(s.expAvgSq, op),
      g.amsgrad ? storageHandle(s.maxExpAvgSq!, op) : null, storageHandle(grad, op), p.numel, beta1, beta2, 1 - beta1, 1 - beta2,
      g.eps, this.decoupled ? 0 : g.weightDecay, this.decoupled ? 1 - g.lr * g.weightDecay : 1, g.lr / biasCorrection1,
      Math.sqrt(biasCorrection2), g.amsgrad, g.maximize);
  }

  protected saveState(s: AdamState): StateEntry {
    const out: StateEntry = { step: stepTensor(s.step), exp_avg: s.expAvg, exp_avg_sq: s.expAvgSq };
    if (s.maxExpAvgSq) out.max_exp_avg_sq = s.maxExpAvgSq;
    return out;
  }

  protected loadState(p: Tensor, e: Record<string, unknown>, where: string): AdamState {
    const known = ['step', 'exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'];
    for (const k of Object.keys(e)) {
      if (!known.includes(k)) throw new Error(`${where}: unknown ${this.name} state '${k}' (expected ${known.join(', ')})`);
    }
    for (const k of known.slice(0, 3)) if (!(k in e)) throw new Error(`${where}: '${k}' is missing`);
    const step = stateNumber(e.step, `${where}.step`);
    const made: Tensor[] = [];
    try {
      const t = (k: string) => {
        const v = stateTensor(e[k], p, `${where}.${k}`);
        made.push(v);
        return v;
      };
      return { step, expAvg: t('exp_avg'), expAvgSq: t('exp_avg_sq'),
        maxExpAvgSq: e.max_exp_avg_sq === undefined || e.max_exp_avg_sq === null ? null : t('max_exp_avg_sq') };
    } catch (err) {
      for (const v of made) v.dispose();
      throw err;
    }
  }

  protected stateTensors(s: AdamState): Tensor[] {
    return [s.expAvg, s.expAvgSq, ...(s.maxExpAvgSq ? [s.maxExpAvgSq] : [])];
  }
}

/** torch.optim.Adam: weightDecay adds an L2 term to the gradient. */
export class Adam extends AdamBase {
  constructor(params: Params<AdamGroupOptions>, opts: AdamOptions = {}) {
    super('Adam', params, opts, false);
  }

  protected override torchGroupKeys(): Record<string, unknown> {
    return { foreach: null, capturable: false, differentiable: false, fused: false };
  }
}

/** torch.optim.AdamW: decoupled weight decay, param *= 1 - lr * weightDecay before the Adam update (default 1e-2). */
export class AdamW extends AdamBase {
  constructor(params: Params<AdamGroupOptions>, opts: AdamOptions = {}) {
    super('AdamW', params, opts, true);
  }

  protected override torchGroupKeys(): Record<string, unknown> {
    return { foreach: null, capturable: false };
  }
}
