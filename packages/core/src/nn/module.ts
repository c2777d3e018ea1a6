import { Device } from '../device.js';
import { fmt } from '../shape.js';
import { noGrad } from '../autograd.js';
import { scope } from '../lifetime.js';
import { Tensor } from '../tensor.js';
import { checkFormat, type MemoryFormat } from '../memory-format.js';

/** A tensor that a module learns: a leaf that requires grad, sharing the given tensor's storage. */
export class Parameter extends Tensor {
  constructor(data: Tensor, requiresGrad = true) {
    super(data.storage('Parameter').retain(), data.shape);
    this.requiresGrad = requiresGrad;
    this.keep(); // its module owns it
  }
}

/**
 * PyTorch's nn.Module: named children, parameters and buffers kept in
 * ordered maps and exposed as properties, found by walking the tree.
 */
export abstract class Module {
  training = true;
  private readonly _parameters = new Map<string, Parameter | null>();
  private readonly _buffers = new Map<string, Tensor | null>();
  private readonly _modules = new Map<string, Module>();

  abstract forward(...inputs: Tensor[]): Tensor;

  constructor() {
    // forward is a scope: what it makes and does not return is released when it returns
    // (the autograd graph keeps what backward needs). The subclass's method, wrapped per instance.
    const forward = this.forward;
    const why = `when ${this.constructor.name}.forward returned (it was not returned)`;
    Object.defineProperty(this, 'forward', {
      value: (...inputs: Tensor[]) => scope(() => forward.apply(this, inputs), why),
      writable: true, configurable: true, enumerable: false,
    });
  }

  /** Exposes map entry `name` as a property, so `this.name` and the tree stay one thing. */
  private expose(name: string, map: Map<string, unknown>): void {
    const own = Object.getOwnPropertyDescriptor(this, name);
    if (own?.get) return;
    // Methods, and the per-instance forward (non-enumerable), are not names a child may take.
    if (name in this && (!own || !own.enumerable)) {
      throw new Error(`${this.constructor.name}: attribute '${name}' already exists`);
    }
    Object.defineProperty(this, name, {
      get: () => map.get(name),
      set: (v) => map.set(name, v),
      enumerable: true,
      configurable: true,
    });
  }

  private checkName(kind: string, name: string): void {
    if (!name || name.includes('.')) throw new Error(`${kind} name '${name}' must be non-empty and contain no '.'`);
    for (const [other, map] of [['parameter', this._parameters], ['buffer', this._buffers], ['module', this._modules]] as const) {
      if (other !== kind && map.has(name)) throw new Error(`cannot register ${kind} '${name}': a ${other} has that name`);
    }
  }

  registerParameter<P extends Parameter | null>(name: string, param: P): P {
    this.checkName('parameter', name);
    this._parameters.set(name, param);
    this.expose(name, this._parameters);
    return param;
  }

  registerBuffer<T extends Tensor | null>(name: string, tensor: T): T {
    this.checkName('buffer', name);
    tensor?.keep(); // its module owns it
    this._buffers.set(name, tensor);
    this.expose(name, this._buffers);
    return tensor;
  }

  /** Adds or replaces a child (replacement keeps its place in the order). */
  addModule<M extends Module>(name: string, module: M): M {
    this.checkName('module', name);
    this._modules.set(name, module);
    this.expose(name, this._modules as Map<string, unknown>);
    return module;
  }

  *namedChildren(): IterableIterator<[string, Module]> {
    yield* this._modules.entries();
  }

  *children(): IterableIterator<Module> {
    yield* this._modules.values();
  }

  /** This module and every descendant, depth first, each once. */
  *namedModules(prefix = '', seen = new Set<Module>()): IterableIterator<[string, Module]> {
    if (seen.has(this)) return;
    seen.add(this);
    yield [prefix, this];
    for (const [name, m] of this._modules) yield* m.namedModules(prefix ? `${prefix}.${name}` : name, seen);
  }

  *modules(): IterableIterator<Module> {
    for (const [, m] of this.namedModules()) yield m;
  }

  *namedParameters(): IterableIterator<[string, Parameter]> {
    const seen = new Set<Tensor>();
    for (const [prefix, m] of this.namedModules()) {
      for (const [name, p] of m._parameters) {
        if (p && !seen.has(p)) {
          seen.add(p);
          yield [prefix ? `${prefix}.${name}` : name, p];
        }
      }
    }
  }

  parameters(): Parameter[] {
    return [...this.namedParameters()].map(([, p]) => p);
  }

  *namedBuffers(): IterableIterator<[string, Tensor]> {
    for (const [prefix, m] of this.namedModules()) {
      for (const [name, b] of m._buffers) if (b) yield [prefix ? `${prefix}.${name}` : name, b];
    }
  }

  buffers(): Tensor[] {
    return [...this.namedBuffers()].map(([, b]) => b);
  }

  /** Calls fn on every descendant, children first, then this (as PyTorch does). */
  apply(fn: (m: Module) => void): this {
    for (const m of this._modules.values()) m.apply(fn);
    fn(this);
    return this;
  }

  train(mode = true): this {
    this.training = mode;
    for (const m of this._modules.values()) m.train(mode);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Moves parameters and buffers in place: the same Parameter objects, so optimizers keep working. */
  /**
   * Moves every parameter and buffer to a device, and/or (PyTorch's `memory_format=`) lays the
   * 4D/5D ones out in a memory format, in place: optimizers built before keep working.
   */
  to(target: string | Device | { device?: string | Device; memoryFormat?: MemoryFormat }): this {
    const opts = typeof target === 'string' || target instanceof Device ? { device: target } : target;
    const device = opts.device === undefined ? null : Device.parse(opts.device);
    const format = opts.memoryFormat === undefined ? null : checkFormat('Module.to', opts.memoryFormat);
    noGrad(() => {
      for (const t of [...this.parameters(), ...this.buffers()]) {
        if (device && !t.device.equals(device)) {
          const moved = t.to(device);
          t._assign(moved);
          moved.dispose();
          if (t.grad && !t.grad.device.equals(device)) t.grad = t.grad.to(device);
        }
        if (format && t.ndim >= 4 && t.ndim <= 5 && !t.isContiguous(format)) {
          const laid = t.contiguous(format);
          t._assign(laid);
          laid.dispose();
          if (t.grad && !t.grad.isContiguous(format)) t.grad = t.grad.contiguous(format);
        }
      }
    });
    return this;
  }

  /** The device of the first parameter or buffer (cpu for an empty module). */
  get device(): Device {
    return (this.parameters()[0] ?? this.buffers()[0])?.device ?? Device.cpu;
  }

  zeroGrad(): void {
    for (const p of this.parameters()) p._clearGrad();
  }

  /** Extra entries of this module alone (e.g. numBatchesTracked), overridden by subclasses. */
  protected extraState(): Record<string, Tensor> {
    return {};
  }

  protected loadExtraState(_state: Record<string, Tensor>): void {}

  /**
   * Every parameter, buffer and extra entry by dotted path, in PyTorch's
   * order. `torchNames`: with PyTorch's entry names (running_mean,
   * num_batches_tracked; see torchStateName), as PyTorch's load_state_dict
   * expects them.
   */
  stateDict(opts: { torchNames?: boolean } = {}): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [prefix, m] of this.namedModules()) {
      const at = (name: string) => {
        const key = prefix ? `${prefix}.${name}` : name;
        return opts.torchNames ? torchStateName(key) : key;
      };
      for (const [name, p] of m._parameters) if (p) out[at(name)] = p;
      for (const [name, b] of m._buffers) if (b) out[at(name)] = b;
      for (const [name, t] of Object.entries(m.extraState())) out[at(name)] = t;
    }
    return out;
  }

  /**
   * Copies values into the existing tensors; strict: keys must match exactly.
   * Keys may be this library's or PyTorch's (stateDict({ torchNames: true })).
   */
  loadStateDict(state: Record<string, Tensor>, strict = true): void {
    const own = this.stateDict();
    state = fromTorchNames(Object.keys(own), state);
    if (strict) {
      const missing = Object.keys(own).filter((k) => !(k in state));
      const unexpected = Object.keys(state).filter((k) => !(k in own));
      if (missing.length || unexpected.length) {
        throw new Error(`loadStateDict: missing keys [${missing.join(', ')}], unexpected keys [${unexpected.join(', ')}]`);
      }
    }
    for (const [prefix, m] of this.namedModules()) {
      const at = (name: string) => (prefix ? `${prefix}.${name}` : name);
      const copyInto = (name: string, dst: Tensor | null) => {
        const src = state[at(name)];
        if (!src || !dst) return;
        if (src.ndim !== dst.ndim || src.shape.some((d, i) => d !== dst.shape[i])) {
          throw new Error(`loadStateDict: '${at(name)}' has shape ${fmt(src.shape)}, the module expects ${fmt(dst.shape)}`);
        }
        dst._assign(noGrad(() => src.to(dst.device).clone()));
      };
      for (const [name, p] of m._parameters) copyInto(name, p);
      for (const [name, b] of m._buffers) copyInto(name, b);
      const extra: Record<string, Tensor> = {};
      for (const name of Object.keys(m.extraState())) if (state[at(name)]) extra[name] = state[at(name)];
      m.loadExtraState(extra);
    }
  }
}


/**
 * PyTorch's name for a state-dict key: the entry's own name (after the last
 * '.') in snake_case (runningMean -> running_mean, numBatchesTracked ->
 * num_batches_tracked); the module path stays as the modules were named
 * ("0.weight", "layer1.0.bn1.running_mean"). The one place where this
 * library's state-dict names meet PyTorch's.
 */
export function torchStateName(key: string): string {
  const dot = key.lastIndexOf('.');
  return key.slice(0, dot + 1) + key.slice(dot + 1).replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** `state` with every key that is PyTorch's name of one of `ownKeys` renamed to that key. */
function fromTorchNames(ownKeys: readonly string[], state: Record<string, Tensor>): Record<string, Tensor> {
  const ours = new Map<string, string>();
  for (const k of ownKeys) {
    const t = torchStateName(k);
    if (t !== k) ours.set(t, k);
  }
  if (ours.size === 0) return state;
  const out: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(state)) {
    const own = ours.get(k);
    if (own !== undefined && own in state) {
      throw new Error(`loadStateDict: both '${own}' and PyTorch's name for it, '${k}', are given`);
    }
    out[own ?? k] = v;
  }
  return out;
}
