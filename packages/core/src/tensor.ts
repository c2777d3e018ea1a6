import type { Handle } from './backend.js';
import { runBackward, USED_GRADIENT as USED, type BackwardOptions, type GradNode } from './autograd.js';
import { Device, type DeviceLike } from './device.js';
import { type DType, type HostArray, fromFloats, hostArray, isFloatDType, isHalfDType, toFloats } from './dtype.js';
import { clock, currentScope, handOverToStep, type Scope } from './lifetime.js';
import { GradSlot, Storage } from './memory.js';
import {
  checkFormat, checkFormatRank, formatStrides, hostPermute, isLaidOutAs, layoutAware, permuteStorage, storageFormat,
  tagStorage, type MemoryFormat,
} from './memory-format.js';
import { defaultGenerator, fillNormal, fillUniform } from './random.js';
import { checkShape, fmt, numelOf, type Shape } from './shape.js';
import * as ops from './ops/index.js';

export interface TensorOptions {
  dtype?: DType;
  /**
   * Also any string (checked at run time): test suites and tools pass device names
   * from tables and the environment. `to()` takes only DeviceLike.
   */
  device?: DeviceLike | string;
  requiresGrad?: boolean;
}

export interface ToArrayOptions {
  /** 'logical' (default): row-major whatever the memory format; 'storage': the storage's own order. */
  order?: 'logical' | 'storage';
}

/** The host arrays of each dtype (half types as their raw bits), as toArray(dtype) types them. */
interface HostArrays {
  float32: Float32Array;
  int32: Int32Array;
  int64: BigInt64Array;
  uint8: Uint8Array;
  float16: Uint16Array;
  bfloat16: Uint16Array;
}
/** What `toArray(dtype)` returns for `D`: Float32Array for 'float32', BigInt64Array for 'int64', ... */
export type HostArrayOf<D extends DType> = D extends keyof HostArrays ? HostArrays[D] : HostArray;

/** Marks a tensor owned by whoever made it (a node, a leaf), never by a scope or step. */
const OWNED = Symbol('owned');

/**
 * A tensor's memory described DLPack-style, without copying: for libraries that
 * move it themselves (collectives). Host memory is the storage itself; device
 * memory is its address and the stream that orders work on it.
 */
export interface ExportedTensor {
  readonly device: Device;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** The storage itself, on host-memory devices; null on a device. */
  readonly host: HostArray | null;
  /** The order of the elements in `host`, `ptr` and toHost/fromHost: `strides[i]` elements apart along dimension i. */
  readonly memoryFormat: MemoryFormat;
  readonly strides: readonly number[];
  /** The device address (0n on the host, or for an empty storage) and its stream. */
  readonly ptr: bigint;
  readonly stream: bigint;
  /** Copies through the host, for consumers that stage device memory. */
  toHost(): HostArray;
  fromHost(src: HostArray): void;
}

export class Tensor {
  readonly shape: readonly number[];
  private _gradFn: GradNode | null = null;
  private _grad: Tensor | null = null;
  private _gradSlot: GradSlot | null = null;
  private _storage: Storage | null;
  private _requiresGrad = false;
  /** Why the storage was released: the error a later use gets. */
  private _releasedWhy = '';
  /** The scope or step holding the user's reference (null: kept, or owned by a node or leaf). @internal */
  _owner: Scope | null = null;
  /** The step of the last use (steps release what they did not use). @internal */
  _usedIn = clock.step;
  /** A row-major copy of a channels-last storage lent to one op by floatInputs (see handle). */
  private _lent: { op: string; storage: Storage } | null = null;

  /** Takes over one reference to `storage`. */
  constructor(storage: Storage, shape: Shape, owner?: typeof OWNED) {
    if (numelOf(shape) !== storage.numel) {
      throw new Error(`tensor: shape ${fmt(shape)} does not match a storage of ${storage.numel} elements`);
    }
    if (storageFormat(storage, shape) === null) {
      throw new Error(`tensor: a channels-last storage cannot be read as shape ${fmt(shape)}; call contiguous() first`);
    }
    this.shape = Object.isFrozen(shape) ? (shape as readonly number[]) : Object.freeze([...shape]);
    this._storage = storage;
    if (owner !== OWNED) currentScope().adopt(this);
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
  /**
   * The order of the elements in the storage: 'contiguous' (row-major) or
   * 'channelsLast' (NHWC / NDHWC for a 4D / 5D tensor whose shape stays [N, C, ...]).
   */
  get memoryFormat(): MemoryFormat {
    return this.ndim < 4 ? 'contiguous' : storageFormat(this.storage('memoryFormat'), this.shape)!;
  }
  /** The distance in elements between neighbours along each dimension, in the storage. */
  get strides(): number[] {
    return formatStrides(this.shape, this.memoryFormat);
  }
  /**
   * Whether the storage is in `format` order. As in PyTorch, a tensor can be in
   * both (sizes of 1 where the orders differ: [N, C, 1, 1], [N, 1, H, W]).
   */
  isContiguous(format: MemoryFormat = 'contiguous'): boolean {
    checkFormat('isContiguous', format);
    return isLaidOutAs(this.shape, this.memoryFormat, format);
  }
  /** Whether the storage was released (by its scope or step, dispose(), or its owner). */
  get isReleased(): boolean {
    return this._storage === null;
  }
  get isLeaf(): boolean {
    return this._gradFn === null;
  }
  get gradFn(): GradNode | null {
    return this._gradFn;
  }

  get requiresGrad(): boolean {
    return this._requiresGrad;
  }
  set requiresGrad(value: boolean) {
    if (value && !this.isLeaf) throw new Error('requiresGrad can only be set on leaf tensors');
    if (value && !isFloatDType(this.dtype)) {
      throw new Error(`requiresGrad: only floating-point tensors (float32, float16, bfloat16) can require gradients, got ${this.dtype}`);
    }
    this._requiresGrad = value;
  }

  /**
   * The gradient accumulated by backward, owned by the leaf. Assigning another
   * (or null) hands the old one to the step rules, since you may still hold it;
   * zeroGrad() releases it at once.
   */
  get grad(): Tensor | null {
    return this._grad;
  }
  set grad(value: Tensor | null) {
    if (value === this._grad) return;
    const old = this._setGrad(value);
    if (old) handOverToStep(old);
  }

  /** @internal zeroGrad's: the gradient is released now. */
  _clearGrad(): void {
    this._setGrad(null)?._release('by zeroGrad()');
  }

  /** Installs the leaf's own reference to `value`; returns the old gradient. */
  private _setGrad(value: Tensor | null): Tensor | null {
    const old = this._grad;
    if (value === old) return null;
    this._grad = value === null ? null : value._alias('grad');
    // A kept leaf's gradient has no other net than the leaf's own slot.
    if (this._owner === null) (this._gradSlot ??= GradSlot.for(this)).storage = this._grad?._storage ?? null;
    else if (this._gradSlot) this._gradSlot.storage = null;
    return old;
  }

  /** The storage, or an error naming the op and why, when the tensor was released. */
  storage(op: string): Storage {
    if (this._storage === null) {
      throw new Error(`${op}: tensor of shape ${fmt(this.shape)} was released ${this._releasedWhy}; ` +
        'keep() a tensor to use it longer');
    }
    this._usedIn = clock.step;
    return this._storage;
  }

  /**
   * The backend handle, for kernels; `op` names the caller in errors. Kernels
   * read it in row-major order, so a channels-last tensor answers only ops that
   * read its storage order themselves (memory-format.ts, LAYOUT_AWARE_OPS) or
   * the op floatInputs lent a row-major copy to; any other caller gets an error
   * rather than misread data (an op writing in place must be layout-aware).
   */
  handle(op: string): Handle {
    const s = this.storage(op);
    if (this.ndim < 4 || layoutAware(op) || storageFormat(s, this.shape) !== 'channelsLast' ||
      isLaidOutAs(this.shape, 'channelsLast', 'contiguous')) return s.handle;
    if (this._lent?.op === op) return this._lent.storage.handle;
    throw new Error(`${op}: reads its input in row-major order but got a channels-last tensor of shape ` +
      `${fmt(this.shape)}; call contiguous() first`);
  }

  /** @internal floatInputs': a row-major copy of this channels-last tensor for `op` to read through handle(). */
  _lendRowMajor(op: string): void {
    const s = this.storage(op);
    this._lent?.storage.release();
    this._lent = null;
    const copy = Storage.alloc(s.dtype, s.numel, s.device);
    permuteStorage(copy, s, this.shape, 'channelsLast', 'contiguous');
    this._lent = { op, storage: copy };
  }

  /** Takes this tensor out of its scope or step: it lives until dispose() (or the collector). */
  keep(): this {
    this.storage('keep').guard();
    this._owner = null;
    return this;
  }

  /** Releases the storage now (views and the autograd graph keep their own references). */
  dispose(): void {
    this._release('by dispose()');
  }

  /** @internal */
  _release(why: string): void {
    if (this._storage === null) return;
    this._lent?.storage.release();
    this._lent = null;
    this._storage.release();
    this._storage = null;
    this._releasedWhy = why;
    this._owner = null;
    const fn = this._gradFn;
    this._gradFn = null;
    fn?.unref();
    this._grad?._release('with its leaf');
    this._grad = null;
    if (this._gradSlot) this._gradSlot.storage = null;
  }

  /** Another tensor object over the same storage, owned by the caller (a node, a leaf). @internal */
  _alias(op: string): Tensor {
    return new Tensor(this.storage(op).retain(), this.shape, OWNED);
  }

  /** @internal recordOp's: this tensor was made by `node`. */
  _setGradFn(node: GradNode): void {
    this._gradFn = node;
    this._requiresGrad = true;
  }

  /** @internal backward's: adds `g` (which the engine owns) to this leaf's gradient, in place when unshared. */
  _accumulateGrad(g: Tensor): void {
    // Gradients have the format of their tensor (as PyTorch's).
    if (this._storage !== null && !g.isContiguous(this.memoryFormat)) {
      const moved = ops.contiguous(g, this.memoryFormat);
      g._release(USED);
      g = moved;
    }
    if (this._storage !== null) {
      if (this._grad === null) this.grad = g;
      else if (!this._grad.storage('backward').isShared) ops.addInPlace(this._grad, g);
      else {
        const sum = ops.add(this._grad, g);
        this.grad = sum;
        sum._release(USED);
      }
    }
    g._release(USED);
  }

  /** @internal backward's: this (an intermediate gradient) plus `g`, in place when unshared; consumes both. */
  _addInto(g: Tensor): Tensor {
    if (!this.storage('backward').isShared) {
      ops.addInPlace(this, g);
      g._release(USED);
      return this;
    }
    const sum = ops.add(this, g);
    this._release(USED);
    g._release(USED);
    return sum;
  }

  /** @internal Replaces the contents in place with another tensor's storage (same shape), keeping identity. */
  _assign(source: Tensor): void {
    if (source.numel !== this.numel) {
      throw new Error(`assign: shape ${fmt(source.shape)} does not match ${fmt(this.shape)}`);
    }
    if (storageFormat(source.storage('assign'), this.shape) === null) {
      throw new Error(`assign: a channels-last ${fmt(source.shape)} storage cannot be read as ${fmt(this.shape)}`);
    }
    const s = source.storage('assign').retain();
    this.storage('assign').release();
    this._lent?.storage.release();
    this._lent = null;
    this._storage = s;
    if (this._owner === null) s.guard();
  }

  /** This tensor's memory for a library that moves it (see ExportedTensor). */
  dlpack(): ExportedTensor {
    const s = this.storage('dlpack');
    const host = s.backend.hostView?.(s.handle) ?? null;
    const info = host ? null : s.backend.bufferInfo?.(s.handle);
    if (!host && !info) throw new Error(`dlpack: the ${s.device.type} backend exposes neither host nor device memory`);
    return {
      device: s.device, dtype: s.dtype, shape: this.shape, host, ptr: info?.ptr ?? 0n, stream: info?.stream ?? 0n,
      memoryFormat: this.memoryFormat, strides: this.strides,
      toHost: () => this.toArray({ order: 'storage' }),
      fromHost: (src) => {
        if (src.length !== this.numel) throw new Error(`dlpack: ${src.length} elements for a tensor of ${this.numel}`);
        s.backend.upload(s.handle, src);
      },
    };
  }

  /**
   * A host copy of the values in logical (row-major, NCHW) order whatever the
   * memory format, so the same tensor reads the same in either; `order: 'storage'`
   * gives the storage's own order instead (NHWC for a channels-last tensor).
   */
  toArray(opts?: ToArrayOptions): HostArray;
  /**
   * The same, typed by dtype: `toArray('float32')` is a Float32Array, `toArray('int64')`
   * a BigInt64Array (HostArrayOf). The dtype is checked: a tensor of another one is an
   * error naming both, so the static type is never a guess.
   */
  toArray<D extends DType>(dtype: D, opts?: ToArrayOptions): HostArrayOf<D>;
  toArray(dtypeOrOpts?: DType | ToArrayOptions, orderOpts?: ToArrayOptions): HostArray {
    const s = this.storage('toArray');
    let opts = dtypeOrOpts ?? {};
    if (typeof opts === 'string') {
      if (opts !== s.dtype) {
        throw new Error(`toArray('${opts}'): this tensor is ${s.dtype}; ask toArray('${s.dtype}'), or convert it first with to()`);
      }
      opts = orderOpts ?? {};
    }
    const raw = s.backend.download(s.handle, s.dtype, s.numel);
    if (opts.order === 'storage' || this.memoryFormat === 'contiguous') return raw;
    return hostPermute(raw, this.shape, 'channelsLast', 'contiguous');
  }

  item(): number {
    if (this.numel !== 1) throw new Error(`item: tensor of shape ${fmt(this.shape)} has ${this.numel} elements, not 1`);
    const s = this.storage('item');
    // half types are held as raw bits: decoded here
    return isHalfDType(s.dtype) ? toFloats(s.dtype, this.toArray())[0]! : Number(this.toArray()[0]);
  }

  /** Shares storage, drops the graph. */
  detach(): Tensor {
    return new Tensor(this.storage('detach').retain(), this.shape);
  }

  toString(): string {
    return this._storage === null ? `Tensor(${fmt(this.shape)}, released)` : `Tensor(${fmt(this.shape)}, ${this.dtype}, ${this.device})`;
  }

  /**
   * Accumulates gradients into the leaves. The graph is freed as it runs (a
   * second backward through it is an error) unless `retainGraph` is set.
   */
  backward(gradient?: Tensor | BackwardOptions | null, opts: BackwardOptions = {}): void {
    if (gradient instanceof Tensor || gradient == null) runBackward(this, gradient ?? undefined, opts);
    else runBackward(this, undefined, gradient);
  }

  /** A copy on another device, or (given a dtype) in another float dtype, rounded to nearest even; differentiable. */
  to(target: DeviceLike | DType): Tensor { return ops.to(this, target); }
  /** This tensor in `format` order (default row-major): itself when it already is, else a differentiable copy. */
  contiguous(format: MemoryFormat = 'contiguous'): Tensor { return ops.contiguous(this, format); }
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

/** A fresh, uninitialised tensor: the output buffer of a kernel (in `format` order). */
export function empty(shape: Shape, dtype: DType = 'float32', device: Device = Device.cpu,
  format: MemoryFormat = 'contiguous'): Tensor {
  checkShape('empty', shape);
  // (the common case pays nothing: only a channels-last request is checked and tagged)
  if (format !== 'contiguous') checkFormatRank('empty', shape, checkFormat('empty', format));
  const storage = Storage.alloc(dtype, numelOf(shape), device);
  if (format !== 'contiguous') tagStorage(storage, shape, format);
  return new Tensor(storage, shape);
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

/**
 * A tensor of `data`, a nested array (float32 unless `dtype` says otherwise) or a typed
 * array: Float32Array (float32), Int32Array (int32), BigInt64Array (int64, as
 * stateDict() gives numBatchesTracked; exact while it stays int64). `shape` reshapes it.
 */
export function tensor(
  data: Nested | Float32Array | Int32Array | BigInt64Array,
  opts: TensorOptions & { shape?: Shape } = {},
): Tensor {
  let flat: ArrayLike<number> | BigInt64Array;
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
  const dtype = opts.dtype ?? (data instanceof Int32Array ? 'int32' : data instanceof BigInt64Array ? 'int64' : 'float32');
  return fromHost(flat, shape, dtype, opts);
}

function fromHostValues(values: ArrayLike<number> | BigInt64Array, dtype: DType): HostArray {
  if (dtype === 'float32' && values instanceof Float32Array) return values;
  if (values instanceof BigInt64Array) {
    if (dtype === 'int64') return values;
    values = Array.from(values, Number); // int64 into another dtype: through numbers, as tensor([...]) would
  }
  // numbers become half bits rounded to nearest even (float32 first, as PyTorch does)
  if (isHalfDType(dtype)) return fromFloats(dtype, values);
  const host = hostArray(dtype, values.length);
  if (host instanceof BigInt64Array) for (let i = 0; i < values.length; i++) host[i] = BigInt(values[i]);
  else host.set(values);
  return host;
}

function fromHost(values: ArrayLike<number> | BigInt64Array, shape: Shape, dtype: DType, opts: TensorOptions): Tensor {
  const t = empty(shape, dtype, Device.parse(opts.device ?? 'cpu'));
  t.storage('tensor').backend.upload(t.handle('tensor'), fromHostValues(values, dtype));
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

function sample(shape: Shape, opts: TensorOptions, fill: (out: Float32Array) => void): Tensor {
  checkShape('random', shape);
  const dtype = opts.dtype ?? 'float32';
  const t = empty(shape, dtype, Device.parse(opts.device ?? 'cpu'));
  const s = t.storage('random');
  // Host storages are filled where they are; device ones through one upload.
  const host = dtype === 'float32' ? s.backend.hostView?.(s.handle) as Float32Array | undefined : undefined;
  const values = host ?? new Float32Array(t.numel);
  fill(values);
  if (!host) s.backend.upload(s.handle, fromHostValues(values, dtype));
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/** Standard normal samples from the seedable default generator. */
export const randn = (shape: Shape, opts: TensorOptions = {}): Tensor =>
  sample(shape, opts, (out) => fillNormal(defaultGenerator, out));
/** Uniform samples in [low, high) (default [0, 1)). */
export const rand = (shape: Shape, opts: TensorOptions & { low?: number; high?: number } = {}): Tensor => {
  const low = opts.low ?? 0;
  const high = opts.high ?? 1;
  return sample(shape, opts, (out) => fillUniform(defaultGenerator, out, low, high));
};
