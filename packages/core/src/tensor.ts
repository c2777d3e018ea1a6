import { getBackend, type Backend, type Handle } from './backend.js';
import { Device, type DeviceName } from './device.js';
import { type DType, type HostArray, hostArray } from './dtype.js';
import { defaultGenerator } from './random.js';
import { checkShape, fmt, numelOf, type Shape } from './shape.js';
import * as ops from './ops/index.js';

/** One backend allocation, shared by a tensor and its views; freed when the last one lets go. */
export class Storage {
  private refs = 1;
  constructor(
    readonly backend: Backend,
    readonly handle: Handle,
    readonly dtype: DType,
    readonly numel: number,
    readonly device: Device,
  ) {}

  static alloc(dtype: DType, numel: number, device: Device): Storage {
    const backend = getBackend(device.type);
    return new Storage(backend, backend.alloc(dtype, numel, device.index), dtype, numel, device);
  }

  retain(): this {
    this.refs++;
    return this;
  }

  release(): void {
    if (--this.refs === 0) this.backend.free(this.handle);
  }
}

/** A safety net: storages of tensors that were never disposed go back when the tensor is collected. */
const finalizer = new FinalizationRegistry<Storage>((s) => s.release());

/** How a non-leaf tensor was made: its inputs and the gradient rule of its op. */
export interface GradNode {
  readonly op: string;
  readonly inputs: readonly (Tensor | null)[];
  /** Gradients of the inputs given the gradient of the output (null: none). */
  readonly backward: (grad: Tensor) => readonly (Tensor | null)[];
}

let gradEnabled = true;

/** Runs fn without recording operations for autograd. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

export interface TensorOptions {
  dtype?: DType;
  device?: DeviceName | Device | string;
  requiresGrad?: boolean;
}

export class Tensor {
  readonly shape: readonly number[];
  grad: Tensor | null = null;
  gradFn: GradNode | null = null;
  private _storage: Storage | null;
  private _requiresGrad = false;

  constructor(storage: Storage, shape: Shape) {
    if (numelOf(shape) !== storage.numel) {
      throw new Error(`tensor: shape ${fmt(shape)} does not match a storage of ${storage.numel} elements`);
    }
    this.shape = Object.freeze([...shape]);
    this._storage = storage;
    finalizer.register(this, storage, this);
  }

  get dtype(): DType {
    return this.storage('dtype').dtype;
  }
  get device(): Device {
    return this.storage('device').device;
  }
  get numel(): number {
    return numelOf(this.shape);
  }
  get ndim(): number {
    return this.shape.length;
  }
  get isDisposed(): boolean {
    return this._storage === null;
  }
  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  get requiresGrad(): boolean {
    return this._requiresGrad;
  }
  set requiresGrad(value: boolean) {
    if (value && !this.isLeaf) throw new Error('requiresGrad can only be set on leaf tensors');
    if (value && this.dtype !== 'float32') {
      throw new Error(`requiresGrad: only floating-point tensors can require gradients, got ${this.dtype}`);
    }
    this._requiresGrad = value;
  }

  /** The storage, or an error naming the op when the tensor was disposed. */
  storage(op: string): Storage {
    if (this._storage === null) throw new Error(`${op}: tensor of shape ${fmt(this.shape)} used after dispose()`);
    return this._storage;
  }

  /** The backend handle, for kernels; `op` names the caller in errors. */
  handle(op: string): Handle {
    return this.storage(op).handle;
  }

  /** Replaces the contents in place with another tensor's storage (same shape), keeping identity. */
  _assign(source: Tensor): void {
    if (source.numel !== this.numel) {
      throw new Error(`assign: shape ${fmt(source.shape)} does not match ${fmt(this.shape)}`);
    }
    const s = source.storage('assign').retain();
    this.storage('assign').release();
    finalizer.unregister(this);
    this._storage = s;
    finalizer.register(this, s, this);
  }

  dispose(): void {
    if (this._storage === null) return;
    finalizer.unregister(this);
    this._storage.release();
    this._storage = null;
    this.gradFn = null;
  }

  toArray(): HostArray {
    const s = this.storage('toArray');
    return s.backend.download(s.handle, s.dtype, s.numel);
  }

  item(): number {
    if (this.numel !== 1) throw new Error(`item: tensor of shape ${fmt(this.shape)} has ${this.numel} elements, not 1`);
    return Number(this.toArray()[0]);
  }

  /** Shares storage, drops the graph. */
  detach(): Tensor {
    return new Tensor(this.storage('detach').retain(), this.shape);
  }

  toString(): string {
    return `Tensor(${fmt(this.shape)}, ${this.dtype}, ${this.device})`;
  }

  backward(gradient?: Tensor): void {
    runBackward(this, gradient);
  }

  to(device: DeviceName | Device | string): Tensor { return ops.to(this, device); }
  clone(): Tensor { return ops.clone(this); }
  add(o: Tensor | number): Tensor { return ops.add(this, o); }
  sub(o: Tensor | number): Tensor { return ops.sub(this, o); }
  mul(o: Tensor | number): Tensor { return ops.mul(this, o); }
  div(o: Tensor | number): Tensor { return ops.div(this, o); }
  neg(): Tensor { return ops.neg(this); }
  relu(): Tensor { return ops.relu(this); }
  exp(): Tensor { return ops.exp(this); }
  log(): Tensor { return ops.log(this); }
  sqrt(): Tensor { return ops.sqrt(this); }
  matmul(o: Tensor): Tensor { return ops.matmul(this, o); }
  transpose(d0: number, d1: number): Tensor { return ops.transpose(this, d0, d1); }
  reshape(shape: Shape): Tensor { return ops.reshape(this, shape); }
  view(shape: Shape): Tensor { return ops.reshape(this, shape, 'view'); }
  flatten(startDim = 0, endDim = -1): Tensor { return ops.flatten(this, startDim, endDim); }
  sum(dims?: number | readonly number[], keepDim = false): Tensor { return ops.sum(this, dims, keepDim); }
  mean(dims?: number | readonly number[], keepDim = false): Tensor { return ops.mean(this, dims, keepDim); }
  softmax(dim: number): Tensor { return ops.softmax(this, dim); }
  logSoftmax(dim: number): Tensor { return ops.logSoftmax(this, dim); }
}

/** A fresh, uninitialised tensor: the output buffer of a kernel. */
export function empty(shape: Shape, dtype: DType = 'float32', device: Device = Device.cpu): Tensor {
  checkShape('empty', shape);
  return new Tensor(Storage.alloc(dtype, numelOf(shape), device), shape);
}

/**
 * Records `out` as produced by `op` from `inputs`, when any input requires a
 * gradient and recording is on. Each op's gradient is written once, here in
 * core, in terms of other ops and kernels, and serves every backend.
 */
export function recordOp(
  out: Tensor,
  op: string,
  inputs: readonly (Tensor | null)[],
  backward: (grad: Tensor) => readonly (Tensor | null)[],
): Tensor {
  if (gradEnabled && inputs.some((t) => t !== null && t.requiresGrad)) {
    out.gradFn = { op, inputs, backward };
    (out as unknown as { _requiresGrad: boolean })._requiresGrad = true;
  }
  return out;
}

function runBackward(root: Tensor, gradient?: Tensor): void {
  if (!root.requiresGrad) throw new Error('backward: the tensor does not require grad and has no grad_fn');
  let seed = gradient;
  if (seed === undefined) {
    if (root.numel !== 1) {
      throw new Error(`backward: grad can be implicitly created only for scalar outputs, got shape ${fmt(root.shape)}`);
    }
    seed = full(root.shape, 1, { device: root.device });
  } else if (seed.numel !== root.numel) {
    throw new Error(`backward: gradient of shape ${fmt(seed.shape)} does not match output ${fmt(root.shape)}`);
  }

  // Topological order by iterative depth-first search (deep nets would overflow recursion).
  const order: Tensor[] = [];
  const seen = new Set<Tensor>([root]);
  const stack: [Tensor, number][] = [[root, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const inputs = top[0].gradFn?.inputs ?? [];
    if (top[1] < inputs.length) {
      const next = inputs[top[1]++];
      if (next && next.requiresGrad && !seen.has(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      order.push(top[0]);
      stack.pop();
    }
  }

  const grads = new Map<Tensor, Tensor>([[root, seed.shape === root.shape ? seed : seed.reshape(root.shape)]]);
  noGrad(() => {
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i];
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      if (t.gradFn === null) {
        // A leaf keeps its own copy: grads may be shared between inputs and are mutated in place later.
        t.grad = t.grad === null ? g.clone() : t.grad.add(g);
        continue;
      }
      const inGrads = t.gradFn.backward(g);
      t.gradFn.inputs.forEach((input, k) => {
        const ig = inGrads[k];
        if (!input || !input.requiresGrad || !ig) return;
        const prev = grads.get(input);
        grads.set(input, prev ? prev.add(ig) : ig);
      });
    }
  });
}

// ---- factories ------------------------------------------------------------

type Nested = number | readonly Nested[];

function flattenNested(data: Nested, shape: number[], out: number[], depth: number): void {
  if (typeof data === 'number') {
    if (depth !== shape.length) throw new Error('tensor: ragged nested array');
    out.push(data);
    return;
  }
  if (depth === shape.length) shape.push(data.length);
  else if (shape[depth] !== data.length) throw new Error('tensor: ragged nested array');
  for (const d of data) flattenNested(d, shape, out, depth + 1);
}

export function tensor(
  data: Nested | Float32Array | Int32Array,
  opts: TensorOptions & { shape?: Shape } = {},
): Tensor {
  let flat: ArrayLike<number>;
  let shape: number[];
  if (ArrayBuffer.isView(data)) {
    flat = data;
    shape = [data.length];
  } else {
    const values: number[] = [];
    shape = [];
    flattenNested(data, shape, values, 0);
    flat = values;
  }
  if (opts.shape) {
    checkShape('tensor', opts.shape);
    if (numelOf(opts.shape) !== flat.length) {
      throw new Error(`tensor: shape ${fmt(opts.shape)} does not match ${flat.length} values`);
    }
    shape = [...opts.shape];
  }
  const dtype = opts.dtype ?? (data instanceof Int32Array ? 'int32' : 'float32');
  return fromHost(flat, shape, dtype, opts);
}

function fromHost(values: ArrayLike<number>, shape: Shape, dtype: DType, opts: TensorOptions): Tensor {
  const device = Device.parse(opts.device ?? 'cpu');
  const host = hostArray(dtype, values.length);
  if (host instanceof BigInt64Array) for (let i = 0; i < values.length; i++) host[i] = BigInt(values[i]);
  else host.set(values);
  const t = empty(shape, dtype, device);
  t.storage('tensor').backend.upload(t.handle('tensor'), host);
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

export function full(shape: Shape, value: number, opts: TensorOptions = {}): Tensor {
  const dtype = opts.dtype ?? 'float32';
  const device = Device.parse(opts.device ?? 'cpu');
  checkShape('full', shape);
  let t: Tensor;
  if (dtype === 'float32') {
    t = empty(shape, dtype, device);
    t.storage('full').backend.fill(t.handle('full'), t.numel, value);
  } else {
    t = fromHost(new Array<number>(numelOf(shape)).fill(value), shape, dtype, opts);
  }
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

export const zeros = (shape: Shape, opts: TensorOptions = {}): Tensor => full(shape, 0, opts);
export const ones = (shape: Shape, opts: TensorOptions = {}): Tensor => full(shape, 1, opts);

function sample(shape: Shape, opts: TensorOptions, draw: () => number): Tensor {
  checkShape('random', shape);
  const n = numelOf(shape);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = draw();
  return fromHost(values, shape, opts.dtype ?? 'float32', opts);
}

/** Standard normal samples from the seedable default generator. */
export const randn = (shape: Shape, opts: TensorOptions = {}): Tensor =>
  sample(shape, opts, () => defaultGenerator.normal());
/** Uniform samples in [low, high) (default [0, 1)). */
export const rand = (shape: Shape, opts: TensorOptions & { low?: number; high?: number } = {}): Tensor => {
  const low = opts.low ?? 0;
  const high = opts.high ?? 1;
  return sample(shape, opts, () => low + (high - low) * defaultGenerator.uniform());
};
