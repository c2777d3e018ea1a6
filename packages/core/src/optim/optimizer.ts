/**
 * What every optimizer shares, as torch.optim.Optimizer: parameter groups (each with its own
 * hyper-parameters, defaults filling the rest), per-parameter state, zeroGrad, a step that
 * updates every parameter holding a gradient and then ends a step of tensor lifetimes
 * (endStep), and stateDict / loadStateDict in PyTorch's structure and snake_case names.
 */
import type { Handle } from '../backend.js';
import { noGrad } from '../autograd.js';
import { scope, endStep } from '../lifetime.js';
import { contiguous } from '../ops/shape.js';
import { fmt } from '../shape.js';
import { empty, Tensor, tensor } from '../tensor.js';

/** Keys a scheduler or user may add to a group (PyTorch's initial_lr, max_lr, ...): JSON values. */
export type GroupExtras = { [key: string]: unknown };

/** One parameter group: its parameters and every hyper-parameter of the optimizer. */
export type ParamGroup<O> = O & GroupExtras & { params: Tensor[] };

/** A group as given to a constructor: its parameters, and the hyper-parameters that differ from the defaults. */
export type ParamGroupSpec<O> = Partial<O> & GroupExtras & { params: Iterable<Tensor> };

/** Parameters, or parameter groups (`[{ params, lr }, ...]`, as PyTorch). */
export type Params<O> = Iterable<Tensor> | readonly ParamGroupSpec<O>[];

/** A value of one parameter's state in a state dict: tensors, numbers, or null (an absent buffer). */
export type StateEntry = Record<string, Tensor | number | null>;

/**
 * PyTorch's optimizer state_dict: state by parameter index (in group order), and each group's
 * hyper-parameters with `params` as those indices. Keys are PyTorch's snake_case names; the
 * tensors are the optimizer's own (not copies, as in PyTorch); the rest is JSON.
 */
export interface OptimizerStateDict {
  state: Record<number, StateEntry>;
  param_groups: Array<Record<string, unknown> & { params: number[] }>;
}

/** camelCase to PyTorch's snake_case (weightDecay -> weight_decay, initialLr -> initial_lr). */
export const snakeCase = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
/** PyTorch's snake_case to camelCase. */
export const camelCase = (k: string): string => k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Throws unless v is a finite number >= 0, naming the optimizer and the option. */
export function nonNegative(name: string, key: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new Error(`${name}: ${key} must be a finite non-negative number, got ${String(v)}`);
  }
}

export function isBoolean(name: string, key: string, v: unknown): void {
  if (typeof v !== 'boolean') throw new Error(`${name}: ${key} must be a boolean, got ${String(v)}`);
}

function isGroupSpec(x: unknown): x is { params: Iterable<Tensor> } {
  return typeof x === 'object' && x !== null && !(x instanceof Tensor) && 'params' in x;
}

/** A state value (a number, or a one-element tensor as PyTorch saves `step`) as a number. */
export function stateNumber(v: unknown, where: string): number {
  const n = v instanceof Tensor ? (v.numel === 1 ? v.item() : NaN) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) {
    throw new Error(`${where} must be a non-negative number or a one-element tensor, got ` +
      (v instanceof Tensor ? `a tensor of shape ${fmt(v.shape)}` : String(v)));
  }
  return n;
}

/**
 * A state tensor loaded for parameter `p`: a copy on p's device, owned by the optimizer.
 * Its shape must be p's; `where` names it in the error.
 */
export function stateTensor(v: unknown, p: Tensor, where: string): Tensor {
  if (!(v instanceof Tensor)) throw new Error(`${where} must be a tensor, got ${v === null ? 'null' : typeof v}`);
  if (v.ndim !== p.ndim || v.shape.some((d, i) => d !== p.shape[i])) {
    throw new Error(`${where} has shape ${fmt(v.shape)}, its parameter has shape ${fmt(p.shape)}`);
  }
  if (v.dtype !== 'float32') throw new Error(`${where} has dtype ${v.dtype}, its parameter float32`);
  return noGrad(() => scope(() => contiguous(v.to(p.device), p.memoryFormat).clone())).keep();
}

/**
 * A state tensor of zeros for parameter `p`, in p's memory format: the update kernels run over
 * storages element by element, so param, grad and state share one storage order (channels-last
 * parameters included, as PyTorch's zeros_like(preserve_format)).
 */
export function stateZeros(p: Tensor): Tensor {
  const t = empty(p.shape, 'float32', p.device, p.memoryFormat);
  const s = t.storage('optimizer state');
  s.backend.fill(s.handle, t.numel, 0);
  return t.keep();
}

/** A storage's handle in its own order, for the elementwise update kernels (see stateZeros). */
export function storageHandle(t: Tensor, op: string): Handle {
  return t.storage(op).handle;
}

export abstract class Optimizer<O extends { lr: number }, S> {
  readonly paramGroups: ParamGroup<O>[] = [];
  readonly defaults: Readonly<O>;
  /** Per-parameter state, made at a parameter's first step (as PyTorch's lazy state). */
  protected readonly state = new Map<Tensor, S>();

  /** `name` prefixes every error ("Adam: lr must be ..."). */
  constructor(readonly name: string, params: Params<O>, defaults: O) {
    this.defaults = Object.freeze({ ...defaults });
    this.validate(defaults as ParamGroup<O>);
    const list = [...(params as Iterable<Tensor | ParamGroupSpec<O>>)];
    if (list.length === 0) throw new Error(`${name}: got an empty parameter list`);
    const groups = list.every(isGroupSpec) ? (list as ParamGroupSpec<O>[]) : null;
    if (!groups && list.some(isGroupSpec)) {
      throw new Error(`${name}: params must be all tensors or all parameter groups ({ params, ...options })`);
    }
    for (const g of groups ?? [{ params: list as Tensor[] } as unknown as ParamGroupSpec<O>]) this.addParamGroup(g);
  }

  /** Adds a group (e.g. layers unfrozen during fine-tuning); unset options take the defaults. */
  addParamGroup(spec: ParamGroupSpec<O>): void {
    if (!isGroupSpec(spec)) throw new Error(`${this.name}: a parameter group needs 'params'`);
    const params = [...spec.params];
    const seen = new Set(this.paramGroups.flatMap((g) => g.params));
    for (const [i, p] of params.entries()) {
      if (!(p instanceof Tensor)) throw new Error(`${this.name}: parameter ${i} of a group is not a Tensor`);
      if (!p.isLeaf) throw new Error(`${this.name}: cannot optimize a non-leaf tensor (parameter ${i}, shape ${fmt(p.shape)})`);
      if (!p.requiresGrad) throw new Error(`${this.name}: parameter of shape ${fmt(p.shape)} does not require grad`);
      // The update kernels are float32 (PyTorch also steps half parameters; here they need a float32 master copy).
      if (p.dtype !== 'float32') throw new Error(`${this.name}: parameter of shape ${fmt(p.shape)} is ${p.dtype}; only float32 parameters are supported`);
      if (seen.has(p)) throw new Error(`${this.name}: some parameters appear more than once in the parameter groups`);
      seen.add(p);
    }
    const group = { ...this.defaults, ...spec, params } as ParamGroup<O>;
    this.validate(group);
    this.paramGroups.push(group);
  }

  /** Every parameter, in group order (the indices of stateDict). */
  get params(): Tensor[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  /** The first group's learning rate; setting it sets every group's (set `paramGroups[i].lr` for one). */
  get lr(): number {
    return this.paramGroups[0]!.lr;
  }
  set lr(v: number) {
    nonNegative(this.name, 'lr', v);
    for (const g of this.paramGroups) g.lr = v;
  }

  /** Releases every parameter's gradient (PyTorch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const p of this.params) p._clearGrad();
  }

  /** Updates every parameter that has a gradient, then ends the step of tensor lifetimes (README "Memory"). */
  step(): void {
    for (const group of this.paramGroups) {
      // Groups are plain objects a scheduler or the user may change between steps: checked each step.
      this.validate(group);
      for (const p of group.params) {
        const g = p.grad;
        if (!g) continue;
        if (g.numel !== p.numel) throw new Error(`${this.name}: grad ${fmt(g.shape)} does not match parameter ${fmt(p.shape)}`);
        if (g.dtype !== 'float32') throw new Error(`${this.name}: grad of parameter ${fmt(p.shape)} is ${g.dtype}, not float32`);
        if (!g.device.equals(p.device)) {
          throw new Error(`${this.name}: grad on ${g.device}, parameter on ${p.device}`);
        }
        // A gradient assigned in another memory format than its parameter's (backward gives
        // the parameter's): the kernels need one storage order, so a copy in the parameter's.
        const fmtP = p.memoryFormat;
        if (g.isContiguous(fmtP)) this.update(p, g, group);
        else {
          const moved = noGrad(() => contiguous(g, fmtP));
          try {
            this.update(p, moved, group);
          } finally {
            moved.dispose();
          }
        }
      }
    }
    endStep(this);
  }

  /** Throws, naming the option, when a group's hyper-parameters are not valid. */
  protected abstract validate(group: ParamGroup<O>): void;
  /** One parameter's update (its state made on first use). */
  protected abstract update(p: Tensor, grad: Tensor, group: ParamGroup<O>): void;
  /** One parameter's state as PyTorch names it (tensors are the live ones). */
  protected abstract saveState(s: S): StateEntry;
  /** A state loaded from a state dict for `p` (tensors copied); `where` names the entry in errors. */
  protected abstract loadState(p: Tensor, entry: Record<string, unknown>, where: string): S;
  /** The tensors a state owns, released when the state is replaced. */
  protected abstract stateTensors(s: S): Tensor[];
  /**
   * Keys PyTorch writes in every group beyond the options (foreach, capturable, ...), with the
   * values that describe this implementation; a loaded group must not ask for others.
   */
  protected torchGroupKeys(): Record<string, unknown> {
    return {};
  }

  stateDict(): OptimizerStateDict {
    const index = new Map<Tensor, number>();
    const paramGroups = this.paramGroups.map((g) => {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(g)) if (k !== 'params') out[snakeCase(k)] = Array.isArray(v) ? [...v] : v;
      Object.assign(out, this.torchGroupKeys());
      out.params = g.params.map((p) => {
        index.set(p, index.size);
        return index.size - 1;
      });
      return out as OptimizerStateDict['param_groups'][number];
    });
    const state: OptimizerStateDict['state'] = {};
    for (const [p, i] of index) {
      const s = this.state.get(p);
      if (s !== undefined) state[i] = this.saveState(s);
    }
    return { state, param_groups: paramGroups };
  }

  /**
   * Loads a state dict of this optimizer's kind (this one's stateDict(), or PyTorch's
   * state_dict() with its tensors as Tensors): the same number of groups and parameters per
   * group, state tensors of their parameters' shapes. Tensors are copied onto each parameter's
   * device. Nothing changes unless all of it is valid.
   */
  loadStateDict(sd: OptimizerStateDict): void {
    const where = `${this.name}.loadStateDict`;
    if (typeof sd !== 'object' || sd === null || !Array.isArray(sd.param_groups) || typeof sd.state !== 'object' || sd.state === null) {
      throw new Error(`${where}: expected { state, param_groups }`);
    }
    if (sd.param_groups.length !== this.paramGroups.length) {
      throw new Error(`${where}: the state dict has ${sd.param_groups.length} parameter groups, the optimizer ` +
        `${this.paramGroups.length}`);
    }
    // The saved indices of each group map, in order, onto this optimizer's parameters (PyTorch's rule).
    const byIndex = new Map<number, Tensor>();
    const groups = sd.param_groups.map((saved, gi) => {
      const own = this.paramGroups[gi]!;
      if (!Array.isArray(saved.params) || saved.params.length !== own.params.length) {
        throw new Error(`${where}: parameter group ${gi} has ${Array.isArray(saved.params) ? saved.params.length : 'no'} ` +
          `parameters in the state dict, ${own.params.length} in the optimizer`);
      }
      saved.params.forEach((idx, i) => byIndex.set(Number(idx), own.params[i]!));
      const fixed = this.torchGroupKeys();
      const group = { params: own.params } as Record<string, unknown>;
      for (const [k, v] of Object.entries(saved)) {
        if (k === 'params') continue;
        if (k in fixed) {
          // PyTorch's implementation switches: only ours are meaningful here (foreach: any).
          if (k !== 'foreach' && v !== fixed[k] && !(v === undefined || v === null)) {
            throw new Error(`${where}: parameter group ${gi} asks for ${k} = ${String(v)}, which this ${this.name} ` +
              `does not implement (only ${String(fixed[k])})`);
          }
          continue;
        }
        group[camelCase(k)] = Array.isArray(v) ? [...v] : v;
      }
      const full = { ...this.defaults, ...group } as ParamGroup<O>;
      try {
        this.validate(full);
      } catch (e) {
        throw new Error(`${where}: parameter group ${gi}: ${(e as Error).message}`);
      }
      return full;
    });
    const loaded = new Map<Tensor, S>();
    try {
      for (const [key, entry] of Object.entries(sd.state)) {
        const idx = Number(key);
        const p = byIndex.get(idx);
        if (!p) {
          throw new Error(`${where}: state[${key}] names no parameter of the groups ` +
            `(indices ${[...byIndex.keys()].join(', ')})`);
        }
        if (typeof entry !== 'object' || entry === null) throw new Error(`${where}: state[${key}] is not an object`);
        loaded.set(p, this.loadState(p, entry as Record<string, unknown>, `${where}: state[${key}]`));
      }
    } catch (e) {
      for (const s of loaded.values()) for (const t of this.stateTensors(s)) t.dispose();
      throw e;
    }
    for (const s of this.state.values()) for (const t of this.stateTensors(s)) t.dispose();
    this.state.clear();
    for (const [p, s] of loaded) this.state.set(p, s);
    groups.forEach((g, i) => {
      const own = this.paramGroups[i]!;
      const rec = own as Record<string, unknown>;
      for (const k of Object.keys(rec)) delete rec[k];
      Object.assign(rec, g);
    });
  }
}

/** PyTorch's `step` state: a float32 scalar tensor (a fresh copy of the host count). */
export function stepTensor(step: number): Tensor {
  return tensor(Float32Array.of(step), { shape: [] });
}
