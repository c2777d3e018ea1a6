/**
 * Loss scaling for float16 training, as torch.cuda.amp.GradScaler: the loss is multiplied by
 * a scale before backward so that small gradients survive float16's range; before the
 * optimizer steps, the gradients are divided by it and checked. A step whose gradients hold
 * an inf or a NaN is skipped, and the scale shrinks (backoffFactor); after growthInterval
 * steps in a row without one it grows (growthFactor).
 *
 *   const scaler = new GradScaler();
 *   scaler.scale(loss).backward();
 *   scaler.step(optimizer);   // unscales, skips on inf/NaN
 *   scaler.update();
 *
 * scaler.attach(optimizer) puts the scaler's state into the optimizer's stateDict (key
 * 'grad_scaler') and restores it in loadStateDict; stateDict() / loadStateDict() are also
 * the scaler's own, with PyTorch's keys.
 */
import { noGrad } from '../autograd.js';
import { toFloats } from '../dtype.js';
import { endStep } from '../lifetime.js';
import { castInto } from '../ops/shape.js';
import { affine } from '../ops/elementwise.js';
import type { Tensor } from '../tensor.js';

export interface GradScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
  /** false: scale() and unscale do nothing and step() always steps (one code path for both). */
  enabled?: boolean;
}

/** What GradScaler needs of an optimizer: its parameters, and a step. */
export interface ScalableOptimizer {
  readonly params: Tensor[];
  step(): void;
  /**
   * Makes the gradients final before they are read (a data-parallel wrapper's reduction):
   * called first by unscale, so every rank unscales and checks the same averaged gradients
   * and agrees on skipping. A wrapper that reduces inside step() instead must provide it.
   */
  syncGradients?(): void;
  stateDict?(): object;
  loadStateDict?(sd: object): void;
}

/** PyTorch's GradScaler.state_dict() keys. */
export interface GradScalerStateDict {
  scale: number;
  growth_factor: number;
  backoff_factor: number;
  growth_interval: number;
  _growth_tracker: number;
}

type Stage = 'ready' | 'unscaled' | 'stepped';

export class GradScaler {
  private scaleValue: number;
  private growthFactor: number;
  private backoffFactor: number;
  private growthInterval: number;
  private growthTracker = 0;
  readonly enabled: boolean;
  /** Per optimizer in this iteration: unscaled or stepped, and whether an inf / NaN was found. */
  private readonly stages = new Map<ScalableOptimizer, { stage: Stage; foundInf: boolean }>();

  constructor(opts: GradScalerOptions = {}) {
    this.scaleValue = positive('initScale', opts.initScale ?? 2 ** 16);
    this.growthFactor = positive('growthFactor', opts.growthFactor ?? 2);
    if (this.growthFactor <= 1) throw new Error(`GradScaler: growthFactor must be > 1, got ${this.growthFactor}`);
    this.backoffFactor = positive('backoffFactor', opts.backoffFactor ?? 0.5);
    if (this.backoffFactor >= 1) throw new Error(`GradScaler: backoffFactor must be < 1, got ${this.backoffFactor}`);
    const gi = opts.growthInterval ?? 2000;
    if (!Number.isInteger(gi) || gi < 1) throw new Error(`GradScaler: growthInterval must be a positive integer, got ${gi}`);
    this.growthInterval = gi;
    this.enabled = opts.enabled ?? true;
  }

  /** The current scale (1 when disabled). */
  getScale(): number {
    return this.enabled ? this.scaleValue : 1;
  }

  /** loss * scale (differentiable), in the loss's dtype. */
  scale(loss: Tensor): Tensor {
    return this.enabled ? affine(loss, this.scaleValue, 0, 'scale') : loss;
  }

  /**
   * Divides the optimizer's gradients by the scale, in place, and records whether any holds an
   * inf or a NaN. Once per optimizer per iteration (call it before clipping gradients).
   */
  unscale(optimizer: ScalableOptimizer): void {
    if (!this.enabled) return;
    const st = this.stages.get(optimizer);
    if (st?.stage === 'unscaled') throw new Error('GradScaler.unscale: already called for this optimizer since the last update()');
    if (st?.stage === 'stepped') throw new Error('GradScaler.unscale: called after step(); call update() first');
    optimizer.syncGradients?.();
    const inv = 1 / this.scaleValue;
    let foundInf = false;
    noGrad(() => {
      for (const p of optimizer.params) {
        const g = p.grad;
        if (!g) continue;
        const scaled = affine(g, inv, 0, 'unscale');
        castInto(g, scaled, 'unscale'); // in place: the optimizer and the gradient's holders see it
        scaled.dispose();
        if (!foundInf) {
          const v = toFloats(g.dtype, g.toArray());
          for (let i = 0; i < v.length; i++) {
            if (!Number.isFinite(v[i]!)) {
              foundInf = true;
              break;
            }
          }
        }
      }
    });
    this.stages.set(optimizer, { stage: 'unscaled', foundInf });
  }

  /**
   * Unscales (unless done), then steps the optimizer unless a gradient held an inf or a NaN.
   * Returns whether it stepped. A skipped step still ends the step of tensor lifetimes, as
   * optimizer.step() would.
   */
  step(optimizer: ScalableOptimizer): boolean {
    if (!this.enabled) {
      optimizer.step();
      return true;
    }
    if (this.stages.get(optimizer)?.stage === 'stepped') {
      throw new Error('GradScaler.step: already called for this optimizer since the last update()');
    }
    if (this.stages.get(optimizer)?.stage !== 'unscaled') this.unscale(optimizer);
    const st = this.stages.get(optimizer)!;
    st.stage = 'stepped';
    if (st.foundInf) {
      endStep(optimizer);
      return false;
    }
    optimizer.step();
    return true;
  }

  /**
   * Adjusts the scale after this iteration's steps: backoffFactor times after an inf / NaN,
   * growthFactor times after growthInterval clean iterations in a row; `newScale` sets it.
   */
  update(newScale?: number): void {
    if (!this.enabled) return;
    if (newScale !== undefined) {
      this.scaleValue = positive('newScale', newScale);
      this.growthTracker = 0;
    } else {
      if (this.stages.size === 0) throw new Error('GradScaler.update: no optimizer was stepped (or unscaled) since the last update');
      const foundInf = [...this.stages.values()].some((s) => s.foundInf);
      if (foundInf) {
        this.scaleValue *= this.backoffFactor;
        this.growthTracker = 0;
      } else if (++this.growthTracker === this.growthInterval) {
        this.scaleValue *= this.growthFactor;
        this.growthTracker = 0;
      }
    }
    this.stages.clear();
  }

  stateDict(): GradScalerStateDict {
    return {
      scale: this.scaleValue, growth_factor: this.growthFactor, backoff_factor: this.backoffFactor,
      growth_interval: this.growthInterval, _growth_tracker: this.growthTracker,
    };
  }

  loadStateDict(sd: Partial<GradScalerStateDict>): void {
    if (typeof sd !== 'object' || sd === null) throw new Error('GradScaler.loadStateDict: expected an object');
    const scale = positive('scale', sd.scale);
    const gf = positive('growth_factor', sd.growth_factor ?? this.growthFactor);
    const bf = positive('backoff_factor', sd.backoff_factor ?? this.backoffFactor);
    const gi = sd.growth_interval ?? this.growthInterval;
    const gt = sd._growth_tracker ?? 0;
    if (!Number.isInteger(gi) || gi < 1) throw new Error(`GradScaler.loadStateDict: growth_interval ${gi} is not a positive integer`);
    if (!Number.isInteger(gt) || gt < 0) throw new Error(`GradScaler.loadStateDict: _growth_tracker ${gt} is not an integer >= 0`);
    this.scaleValue = scale;
    this.growthFactor = gf;
    this.backoffFactor = bf;
    this.growthInterval = gi;
    this.growthTracker = gt;
  }

  /**
   * Keeps this scaler's state in `optimizer`'s state dict: stateDict() gains 'grad_scaler', and
   * loadStateDict() restores it when present. Returns the optimizer.
   */
  attach<O extends ScalableOptimizer>(optimizer: O): O {
    const save = optimizer.stateDict?.bind(optimizer);
    const load = optimizer.loadStateDict?.bind(optimizer);
    if (!save || !load) throw new Error('GradScaler.attach: the optimizer has no stateDict / loadStateDict');
    optimizer.stateDict = () => ({ ...save(), grad_scaler: this.stateDict() });
    optimizer.loadStateDict = (sd: object) => {
      const own = (sd as { grad_scaler?: Partial<GradScalerStateDict> }).grad_scaler;
      load(sd);
      if (own) this.loadStateDict(own);
    };
    return optimizer;
  }
}

function positive(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new Error(`GradScaler: ${name} must be a finite positive number, got ${String(v)}`);
  }
  return v;
}
