/**
 * Learning-rate schedulers with PyTorch 1.13's semantics (torch.optim.lr_scheduler): made
 * after the optimizer, each applies its epoch-0 rate at once; `step()` after each
 * `optimizer.step()` advances `lastEpoch` and sets every group's lr by PyTorch's recursive
 * ("chainable") rule, so other changes to the lr compose as in PyTorch; `step(epoch)` jumps
 * to an epoch by the closed form where PyTorch has one (StepLR, MultiStepLR, LinearLR,
 * CosineAnnealingLR). All arithmetic is in double, in PyTorch's order. `stateDict()` holds
 * PyTorch's keys (snake_case, JSON values); `loadStateDict` restores them.
 */
import type { Optimizer } from './optimizer.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyOptimizer = Optimizer<{ lr: number }, any>;
type Group = Record<string, unknown> & { lr: number };

const groupsOf = (o: AnyOptimizer): Group[] => o.paramGroups as unknown as Group[];

function positiveInt(name: string, key: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new Error(`${name}: ${key} must be a positive integer, got ${String(v)}`);
  }
  return v;
}

function finite(name: string, key: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${name}: ${key} must be a finite number, got ${String(v)}`);
  return v;
}

/** One value per group: a number for all, or an array of the groups' length. */
function perGroup(name: string, key: string, v: number | readonly number[], groups: number): number[] {
  if (typeof v === 'number') return new Array<number>(groups).fill(finite(name, key, v));
  if (v.length !== groups) throw new Error(`${name}: expected ${groups} values for ${key}, got ${v.length}`);
  return v.map((x, i) => finite(name, `${key}[${i}]`, x));
}

export type SchedulerStateDict = Record<string, unknown>;

export abstract class LRScheduler {
  /** The epoch of the last step(): -1 before the first (the constructor steps to 0). */
  lastEpoch: number;
  /** Each group's initial_lr, the base of the schedule. */
  baseLrs: number[];
  protected _stepCount = 0;
  protected _lastLr: number[] = [];

  /**
   * `lastEpoch` other than -1 resumes a schedule: every group then needs its `initialLr`
   * (PyTorch's initial_lr, kept in the optimizer's state dict).
   */
  constructor(readonly optimizer: AnyOptimizer, lastEpoch: number, protected readonly name: string) {
    if (!Number.isInteger(lastEpoch) || lastEpoch < -1) throw new Error(`${name}: lastEpoch must be an integer >= -1, got ${lastEpoch}`);
    const groups = groupsOf(optimizer);
    if (lastEpoch === -1) {
      for (const g of groups) if (g.initialLr === undefined) g.initialLr = g.lr;
    } else {
      groups.forEach((g, i) => {
        if (g.initialLr === undefined) {
          throw new Error(`${name}: param 'initial_lr' is not specified in paramGroups[${i}] when resuming an optimizer`);
        }
      });
    }
    this.baseLrs = groups.map((g) => g.initialLr as number);
    this.lastEpoch = lastEpoch;
  }

  /** Subclasses call it last in their constructor, their fields set: the epoch-0 step (PyTorch's _initial_step). */
  protected initialStep(): void {
    this._stepCount = 0;
    this.step();
  }

  /** The rates of the chainable form for `lastEpoch` (reads the groups' current lr). */
  protected abstract getLr(): number[];
  /** The closed form of the schedule at `lastEpoch`, for step(epoch); null where PyTorch has none. */
  protected closedFormLr(): number[] | null {
    return null;
  }

  /** Advances one epoch (or, given `epoch`, jumps to it: PyTorch's deprecated form) and sets every group's lr. */
  step(epoch?: number): void {
    this._stepCount += 1;
    let values: number[];
    if (epoch === undefined) {
      this.lastEpoch += 1;
      values = this.getLr();
    } else {
      if (!Number.isInteger(epoch) || epoch < 0) throw new Error(`${this.name}: epoch must be an integer >= 0, got ${epoch}`);
      this.lastEpoch = epoch;
      values = this.closedFormLr() ?? this.getLr();
    }
    const groups = groupsOf(this.optimizer);
    groups.forEach((g, i) => { g.lr = values[i]!; });
    this._lastLr = groups.map((g) => g.lr);
  }

  /** The rates the last step() set, one per group (PyTorch's get_last_lr()). */
  getLastLr(): number[] {
    return [...this._lastLr];
  }

  /** PyTorch's key -> this scheduler's field, for its own options (base keys are added). */
  protected abstract fields(): Record<string, string>;

  private allFields(): Record<string, string> {
    return { ...this.fields(), base_lrs: 'baseLrs', last_epoch: 'lastEpoch', _step_count: '_stepCount', _last_lr: '_lastLr' };
  }

  protected saveField(_key: string, v: unknown): unknown {
    return Array.isArray(v) ? v.map((x) => (typeof x === 'object' && x !== null ? { ...x } : x)) : v;
  }

  protected loadField(_key: string, v: unknown): unknown {
    return this.saveField(_key, v);
  }

  /** PyTorch's state_dict(): every field but the optimizer, by PyTorch's names; JSON values. */
  stateDict(): SchedulerStateDict {
    const self = this as unknown as Record<string, unknown>;
    const out: SchedulerStateDict = {};
    for (const [key, field] of Object.entries(this.allFields())) out[key] = this.saveField(key, self[field]);
    out.verbose = false;
    out._get_lr_called_within_step = false;
    return out;
  }

  /** Restores a stateDict() (or PyTorch's); keys it does not know are an error, naming them. */
  loadStateDict(sd: SchedulerStateDict): void {
    const fields = this.allFields();
    // PyTorch keys with nothing to restore here: printing, a flag only true inside step(), functions.
    const ignored = new Set(['verbose', '_get_lr_called_within_step', 'anneal_func', 'lr_lambdas']);
    const unknown = Object.keys(sd).filter((k) => !(k in fields) && !ignored.has(k));
    if (unknown.length) {
      throw new Error(`${this.name}.loadStateDict: unknown keys [${unknown.join(', ')}] (expected ${Object.keys(fields).join(', ')})`);
    }
    const self = this as unknown as Record<string, unknown>;
    for (const [key, field] of Object.entries(fields)) if (key in sd) self[field] = this.loadField(key, sd[key]);
  }
}

/** lr = initial lr * lrLambda(epoch), one function for every group or one per group. */
export class LambdaLR extends LRScheduler {
  private readonly lrLambdas: ((epoch: number) => number)[];

  constructor(optimizer: AnyOptimizer, lrLambda: ((epoch: number) => number) | readonly ((epoch: number) => number)[],
    opts: { lastEpoch?: number } = {}) {
    super(optimizer, opts.lastEpoch ?? -1, 'LambdaLR');
    const n = optimizer.paramGroups.length;
    if (typeof lrLambda === 'function') this.lrLambdas = new Array(n).fill(lrLambda);
    else {
      if (lrLambda.length !== n) throw new Error(`LambdaLR: expected ${n} lrLambdas, got ${lrLambda.length}`);
      this.lrLambdas = [...lrLambda];
    }
    this.initialStep();
  }

  protected getLr(): number[] {
    return this.baseLrs.map((base, i) => base * this.lrLambdas[i]!(this.lastEpoch));
  }

  protected fields(): Record<string, string> {
    return {};
  }

  override stateDict(): SchedulerStateDict {
    // PyTorch saves None for plain functions (only callable objects' attributes are saved).
    return { ...super.stateDict(), lr_lambdas: this.lrLambdas.map(() => null) };
  }
}

/** lr *= gamma every stepSize epochs. */
export class StepLR extends LRScheduler {
  stepSize: number;
  gamma: number;

  constructor(optimizer: AnyOptimizer, stepSize: number, opts: { gamma?: number; lastEpoch?: number } = {}) {
    super(optimizer, opts.lastEpoch ?? -1, 'StepLR');
    this.stepSize = positiveInt('StepLR', 'stepSize', stepSize);
    this.gamma = finite('StepLR', 'gamma', opts.gamma ?? 0.1);
    this.initialStep();
  }

  protected getLr(): number[] {
    const groups = groupsOf(this.optimizer);
    if (this.lastEpoch === 0 || this.lastEpoch % this.stepSize !== 0) return groups.map((g) => g.lr);
    return groups.map((g) => g.lr * this.gamma);
  }

  protected override closedFormLr(): number[] {
    return this.baseLrs.map((base) => base * this.gamma ** Math.floor(this.lastEpoch / this.stepSize));
  }

  protected fields(): Record<string, string> {
    return { step_size: 'stepSize', gamma: 'gamma' };
  }
}

/** lr *= gamma at each milestone epoch (a milestone given twice decays twice). */
export class MultiStepLR extends LRScheduler {
  /** milestone -> how many times it was given (PyTorch's Counter) */
  milestones: Map<number, number>;
  gamma: number;

  constructor(optimizer: AnyOptimizer, milestones: readonly number[], opts: { gamma?: number; lastEpoch?: number } = {}) {
    super(optimizer, opts.lastEpoch ?? -1, 'MultiStepLR');
    this.milestones = new Map();
    for (const m of milestones) {
      if (!Number.isInteger(m) || m < 0) throw new Error(`MultiStepLR: milestones must be integers >= 0, got ${m}`);
      this.milestones.set(m, (this.milestones.get(m) ?? 0) + 1);
    }
    this.gamma = finite('MultiStepLR', 'gamma', opts.gamma ?? 0.1);
    this.initialStep();
  }

  protected getLr(): number[] {
    const groups = groupsOf(this.optimizer);
    const count = this.milestones.get(this.lastEpoch);
    if (count === undefined) return groups.map((g) => g.lr);
    return groups.map((g) => g.lr * this.gamma ** count);
  }

  protected override closedFormLr(): number[] {
    // bisect_right over the sorted milestones, with repeats: how many are <= lastEpoch
    let passed = 0;
    for (const [m, c] of this.milestones) if (m <= this.lastEpoch) passed += c;
    return this.baseLrs.map((base) => base * this.gamma ** passed);
  }

  protected fields(): Record<string, string> {
    return { milestones: 'milestones', gamma: 'gamma' };
  }

  protected override saveField(key: string, v: unknown): unknown {
    // a Counter in PyTorch: {milestone: count}
    if (key === 'milestones') return Object.fromEntries([...(v as Map<number, number>)].map(([m, c]) => [String(m), c]));
    return super.saveField(key, v);
  }

  protected override loadField(key: string, v: unknown): unknown {
    if (key === 'milestones') {
      if (typeof v !== 'object' || v === null) throw new Error('MultiStepLR.loadStateDict: milestones must be {epoch: count}');
      return new Map(Object.entries(v as Record<string, number>).map(([m, c]) => [Number(m), Number(c)]));
    }
    return super.loadField(key, v);
  }
}

/** The lr factor goes linearly from startFactor to endFactor over totalIters epochs, then stays. */
export class LinearLR extends LRScheduler {
  startFactor: number;
  endFactor: number;
  totalIters: number;

  constructor(optimizer: AnyOptimizer,
    opts: { startFactor?: number; endFactor?: number; totalIters?: number; lastEpoch?: number } = {}) {
    super(optimizer, opts.lastEpoch ?? -1, 'LinearLR');
    this.startFactor = opts.startFactor ?? 1 / 3;
    this.endFactor = opts.endFactor ?? 1;
    if (!(this.startFactor >= 0 && this.startFactor <= 1)) {
      throw new Error(`LinearLR: startFactor must be in [0, 1], got ${this.startFactor}`);
    }
    if (!(this.endFactor >= 0 && this.endFactor <= 1)) throw new Error(`LinearLR: endFactor must be in [0, 1], got ${this.endFactor}`);
    this.totalIters = positiveInt('LinearLR', 'totalIters', opts.totalIters ?? 5);
    this.initialStep();
  }

  protected getLr(): number[] {
    const groups = groupsOf(this.optimizer);
    const { startFactor: s, endFactor: e, totalIters: n } = this;
    if (this.lastEpoch === 0) return groups.map((g) => g.lr * s);
    if (this.lastEpoch > n) return groups.map((g) => g.lr);
    return groups.map((g) => g.lr * (1 + (e - s) / (n * s + (this.lastEpoch - 1) * (e - s))));
  }

  protected override closedFormLr(): number[] {
    const { startFactor: s, endFactor: e, totalIters: n } = this;
    return this.baseLrs.map((base) => base * (s + (e - s) * Math.min(n, this.lastEpoch) / n));
  }

  protected fields(): Record<string, string> {
    return { start_factor: 'startFactor', end_factor: 'endFactor', total_iters: 'totalIters' };
  }
}

/** Cosine annealing from the initial lr to etaMin over tMax epochs (and back up after, as PyTorch's recursion). */
export class CosineAnnealingLR extends LRScheduler {
  tMax: number;
  etaMin: number;

  constructor(optimizer: AnyOptimizer, tMax: number, opts: { etaMin?: number; lastEpoch?: number } = {}) {
    super(optimizer, opts.lastEpoch ?? -1, 'CosineAnnealingLR');
    this.tMax = positiveInt('CosineAnnealingLR', 'tMax', tMax);
    this.etaMin = finite('CosineAnnealingLR', 'etaMin', opts.etaMin ?? 0);
    this.initialStep();
  }

  protected getLr(): number[] {
    const groups = groupsOf(this.optimizer);
    const { tMax: T, etaMin: eta, lastEpoch: e } = this;
    if (e === 0) return groups.map((g) => g.lr);
    if (this._stepCount === 1 && e > 0) {
      return this.baseLrs.map((base) => eta + (base - eta) * (1 + Math.cos(e * Math.PI / T)) / 2);
    }
    if ((e - 1 - T) % (2 * T) === 0) {
      return groups.map((g, i) => g.lr + (this.baseLrs[i]! - eta) * (1 - Math.cos(Math.PI / T)) / 2);
    }
    return groups.map((g) => (1 + Math.cos(Math.PI * e / T)) / (1 + Math.cos(Math.PI * (e - 1) / T)) * (g.lr - eta) + eta);
  }

  protected override closedFormLr(): number[] {
    return this.baseLrs.map((base) => this.etaMin + (base - this.etaMin) * (1 + Math.cos(Math.PI * this.lastEpoch / this.tMax)) / 2);
  }

  protected fields(): Record<string, string> {
    return { T_max: 'tMax', eta_min: 'etaMin' };
  }
}

interface Phase {
  end_step: number;
  start_lr: string;
  end_lr: string;
  start_momentum: string;
  end_momentum: string;
}

export interface OneCycleLROptions {
  /** totalSteps, or epochs and stepsPerEpoch */
  totalSteps?: number;
  epochs?: number;
  stepsPerEpoch?: number;
  pctStart?: number;
  annealStrategy?: 'cos' | 'linear';
  cycleMomentum?: boolean;
  baseMomentum?: number | readonly number[];
  maxMomentum?: number | readonly number[];
  divFactor?: number;
  finalDivFactor?: number;
  threePhase?: boolean;
  lastEpoch?: number;
}

/**
 * The 1cycle policy (Smith): lr from maxLr / divFactor up to maxLr over pctStart of the steps,
 * then down to initial / finalDivFactor; momentum (SGD's momentum, Adam's beta1) the other way.
 * Stepped once per batch; stepping past totalSteps is an error, as in PyTorch.
 */
export class OneCycleLR extends LRScheduler {
  totalSteps: number;
  cycleMomentum: boolean;
  useBeta1: boolean;
  annealStrategy: 'cos' | 'linear';
  schedulePhases: Phase[];

  constructor(optimizer: AnyOptimizer, maxLr: number | readonly number[], opts: OneCycleLROptions = {}) {
    const name = 'OneCycleLR';
    const groups = groupsOf(optimizer);
    let total: number;
    if (opts.totalSteps !== undefined) total = positiveInt(name, 'totalSteps', opts.totalSteps);
    else if (opts.epochs === undefined || opts.stepsPerEpoch === undefined) {
      throw new Error(`${name}: give totalSteps, or epochs and stepsPerEpoch`);
    } else total = positiveInt(name, 'epochs', opts.epochs) * positiveInt(name, 'stepsPerEpoch', opts.stepsPerEpoch);
    const pct = opts.pctStart ?? 0.3;
    if (!(typeof pct === 'number' && pct >= 0 && pct <= 1)) throw new Error(`${name}: pctStart must be in [0, 1], got ${pct}`);
    const anneal = opts.annealStrategy ?? 'cos';
    if (anneal !== 'cos' && anneal !== 'linear') {
      throw new Error(`${name}: annealStrategy must be 'cos' or 'linear', got '${String(anneal)}'`);
    }
    const phases: Phase[] = opts.threePhase
      ? [
        { end_step: pct * total - 1, start_lr: 'initialLr', end_lr: 'maxLr', start_momentum: 'maxMomentum', end_momentum: 'baseMomentum' },
        { end_step: 2 * pct * total - 2, start_lr: 'maxLr', end_lr: 'initialLr', start_momentum: 'baseMomentum', end_momentum: 'maxMomentum' },
        { end_step: total - 1, start_lr: 'initialLr', end_lr: 'minLr', start_momentum: 'maxMomentum', end_momentum: 'maxMomentum' },
      ]
      : [
        { end_step: pct * total - 1, start_lr: 'initialLr', end_lr: 'maxLr', start_momentum: 'maxMomentum', end_momentum: 'baseMomentum' },
        { end_step: total - 1, start_lr: 'maxLr', end_lr: 'minLr', start_momentum: 'baseMomentum', end_momentum: 'maxMomentum' },
      ];
    const lastEpoch = opts.lastEpoch ?? -1;
    const maxLrs = perGroup(name, 'maxLr', maxLr, groups.length);
    const divFactor = finite(name, 'divFactor', opts.divFactor ?? 25);
    const finalDivFactor = finite(name, 'finalDivFactor', opts.finalDivFactor ?? 1e4);
    if (lastEpoch === -1) {
      groups.forEach((g, i) => {
        g.initialLr = maxLrs[i]! / divFactor;
        g.maxLr = maxLrs[i]!;
        g.minLr = (g.initialLr as number) / finalDivFactor;
      });
    }
    const cycle = opts.cycleMomentum ?? true;
    const defaults = optimizer.defaults as Record<string, unknown>;
    const useBeta1 = 'betas' in defaults;
    if (cycle) {
      if (!('momentum' in defaults) && !useBeta1) throw new Error(`${name}: the optimizer has no momentum or betas to cycle (cycleMomentum)`);
      const maxM = perGroup(name, 'maxMomentum', opts.maxMomentum ?? 0.95, groups.length);
      const baseM = perGroup(name, 'baseMomentum', opts.baseMomentum ?? 0.85, groups.length);
      if (lastEpoch === -1) {
        groups.forEach((g, i) => {
          if (useBeta1) g.betas = [maxM[i]!, (g.betas as number[])[1]!];
          else g.momentum = maxM[i]!;
          g.maxMomentum = maxM[i]!;
          g.baseMomentum = baseM[i]!;
        });
      }
    }
    super(optimizer, lastEpoch, name);
    this.totalSteps = total;
    this.schedulePhases = phases;
    this.annealStrategy = anneal;
    this.cycleMomentum = cycle;
    this.useBeta1 = useBeta1;
    this.initialStep();
  }

  private anneal(start: number, end: number, pct: number): number {
    if (this.annealStrategy === 'linear') return (end - start) * pct + start;
    const cosOut = Math.cos(Math.PI * pct) + 1;
    return end + (start - end) / 2.0 * cosOut;
  }

  protected getLr(): number[] {
    const stepNum = this.lastEpoch;
    if (stepNum > this.totalSteps) {
      throw new Error(`OneCycleLR: tried to step ${stepNum + 1} times; the specified number of total steps is ${this.totalSteps}`);
    }
    return groupsOf(this.optimizer).map((g) => {
      let startStep = 0;
      let lr = NaN;
      let momentum = NaN;
      const phases = this.schedulePhases;
      for (let i = 0; i < phases.length; i++) {
        const phase = phases[i]!;
        const endStep = phase.end_step;
        if (stepNum <= endStep || i === phases.length - 1) {
          const pct = (stepNum - startStep) / (endStep - startStep);
          lr = this.anneal(g[phase.start_lr] as number, g[phase.end_lr] as number, pct);
          if (this.cycleMomentum) momentum = this.anneal(g[phase.start_momentum] as number, g[phase.end_momentum] as number, pct);
          break;
        }
        startStep = phase.end_step;
      }
      if (this.cycleMomentum) {
        if (this.useBeta1) g.betas = [momentum, (g.betas as number[])[1]!];
        else g.momentum = momentum;
      }
      return lr;
    });
  }

  protected fields(): Record<string, string> {
    return { total_steps: 'totalSteps', _schedule_phases: 'schedulePhases', cycle_momentum: 'cycleMomentum',
      use_beta1: 'useBeta1', anneal_strategy: 'annealStrategy' };
  }

  // PyTorch names the group keys in snake_case (initial_lr, max_momentum): the phases name them so.
  protected override saveField(key: string, v: unknown): unknown {
    if (key === '_schedule_phases') {
      const snake = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
      return (v as Phase[]).map((p) => ({ end_step: p.end_step, start_lr: snake(p.start_lr), end_lr: snake(p.end_lr),
        start_momentum: snake(p.start_momentum), end_momentum: snake(p.end_momentum) }));
    }
    return super.saveField(key, v);
  }

  protected override loadField(key: string, v: unknown): unknown {
    if (key === '_schedule_phases') {
      const camel = (k: string) => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
      if (!Array.isArray(v)) throw new Error('OneCycleLR.loadStateDict: _schedule_phases must be an array');
      return (v as Phase[]).map((p) => ({ end_step: Number(p.end_step), start_lr: camel(p.start_lr), end_lr: camel(p.end_lr),
        start_momentum: camel(p.start_momentum), end_momentum: camel(p.end_momentum) }));
    }
    return super.loadField(key, v);
  }
}
