/**
 * What a dataset item may be, and the default collate: items are stacked
 * along a new first dimension into one buffer per leaf, then each buffer
 * becomes a Tensor. The stacking half works on host values only, so that it
 * can run on the prefetching worker thread (which has no backend, hence no
 * Tensors); making the Tensors is the main thread's, synchronous, half.
 */
import { Device } from '../device.js';
import { hostArray, type DType, type HostArray } from '../dtype.js';
import { fmt, numelOf, type Shape } from '../shape.js';
import { empty, Tensor } from '../tensor.js';

/** A host array with its shape and dtype: what a dataset read on a worker thread returns for a tensor. */
export interface HostTensor {
  readonly data: HostArray;
  readonly shape: Shape;
  readonly dtype: DType;
}

/**
 * One item. Leaves: a Tensor (main thread only), a HostTensor, a typed array
 * (1-D: Float32Array float32, Int32Array int32, BigInt64Array int64,
 * Uint8Array uint8), or a number. Numbers collate to int32 when every number
 * of that leaf in the batch is an integer (class labels), else to float32:
 * JavaScript cannot tell `1` from `1.0` (PyTorch uses Python's int/float), so
 * a float target that may be whole should be a Float32Array or HostTensor.
 */
export type Sample = Tensor | HostTensor | HostArray | number | readonly Sample[] | { readonly [key: string]: Sample };

/** A collated batch of unknown structure. */
export type Batch = Tensor | Batch[] | { [key: string]: Batch };

/** The batch a sample type collates to: each leaf a Tensor with the batch dimension first. */
export type Collated<S> = Sample extends S ? Batch // the wide type: its recursion would not end
  : S extends Tensor | HostTensor | HostArray | number ? Tensor
  : S extends readonly unknown[] ? { -readonly [K in keyof S]: Collated<S[K]> }
  : S extends object ? { -readonly [K in keyof S]: Collated<S[K]> }
  : never;

/** A collated batch before it becomes Tensors: the same structure, HostTensor leaves. */
export type HostBatch = HostTensor | HostBatch[] | { [key: string]: HostBatch };

/** Hands out host buffers, reusing returned ones (the worker's pool keeps memory flat). */
export type Allocate = (dtype: DType, numel: number) => HostArray;

export const freshArray: Allocate = (dtype, numel) => hostArray(dtype, numel);

function isHostArray(v: unknown): v is HostArray {
  return v instanceof Float32Array || v instanceof Int32Array || v instanceof BigInt64Array ||
    v instanceof Uint8Array || v instanceof Uint16Array;
}

export function isHostTensor(v: unknown): v is HostTensor {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v) &&
    isHostArray((v as HostTensor).data) && Array.isArray((v as HostTensor).shape) && typeof (v as HostTensor).dtype === 'string';
}

function dtypeOfArray(a: HostArray, where: string): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Uint8Array) return 'uint8';
  throw new Error(`collate: ${where} is a Uint16Array, whose dtype (float16 or bfloat16) is ambiguous: return a HostTensor naming it`);
}

/** A leaf as a host tensor (Tensors are copied to the host: main thread only). */
function leafOf(v: Sample, where: string): HostTensor | number {
  if (typeof v === 'number') return v;
  if (v instanceof Tensor) return { data: v.toArray(), shape: v.shape, dtype: v.dtype };
  if (isHostArray(v)) return { data: v, shape: [v.length], dtype: dtypeOfArray(v, where) };
  if (isHostTensor(v)) {
    if (v.data.length !== numelOf(v.shape)) {
      throw new Error(`collate: ${where} has ${v.data.length} values for shape ${fmt(v.shape)}`);
    }
    return v;
  }
  throw new Error(`collate: ${where} is not a Tensor, HostTensor, typed array, number, array or record`);
}

function isLeaf(v: Sample): boolean {
  return typeof v === 'number' || v instanceof Tensor || isHostArray(v) || isHostTensor(v);
}

/** Stacks one leaf of every item into a buffer of shape [items, ...itemShape]. */
function stackLeaf(values: Sample[], where: string, alloc: Allocate): HostTensor {
  const leaves = values.map((v, i) => leafOf(v, `${where} of item ${i}`));
  const first = leaves[0];
  if (typeof first === 'number') {
    const nums = leaves.map((l, i) => {
      if (typeof l !== 'number') throw new Error(`collate: ${where} is a number in item 0 but not in item ${i}`);
      return l;
    });
    const dtype: DType = nums.every(Number.isInteger) ? 'int32' : 'float32';
    const data = alloc(dtype, nums.length) as Float32Array | Int32Array;
    data.set(nums);
    return { data, shape: [nums.length], dtype };
  }
  const n = numelOf(first.shape);
  const data = alloc(first.dtype, n * leaves.length);
  leaves.forEach((l, i) => {
    if (typeof l === 'number' || l.dtype !== first.dtype || l.shape.length !== first.shape.length ||
      l.shape.some((d, k) => d !== first.shape[k])) {
      const got = typeof l === 'number' ? 'a number' : `${l.dtype} ${fmt(l.shape)}`;
      throw new Error(`collate: ${where} is ${first.dtype} ${fmt(first.shape)} in item 0 but ${got} in item ${i}: items of a batch must match`);
    }
    (data as Float32Array).set(l.data as Float32Array, i * n);
  });
  return { data, shape: [leaves.length, ...first.shape], dtype: first.dtype };
}

/** The default collate's host half: the structure of item 0, each leaf stacked across items. */
export function collateHost(items: readonly Sample[], alloc: Allocate = freshArray, where = 'item'): HostBatch {
  if (items.length === 0) throw new Error('collate: a batch has at least one item');
  const first = items[0];
  if (isLeaf(first)) return stackLeaf(items as Sample[], where, alloc);
  if (Array.isArray(first)) {
    return (first as Sample[]).map((_, k) => collateHost(items.map((it, i) => {
      if (!Array.isArray(it) || it.length !== first.length) throw new Error(`collate: ${where} of item ${i} does not have item 0's ${first.length} entries`);
      return it[k] as Sample;
    }), alloc, `${where}[${k}]`));
  }
  const out: { [key: string]: HostBatch } = {};
  for (const key of Object.keys(first)) {
    out[key] = collateHost(items.map((it, i) => {
      const v = (it as { [key: string]: Sample })[key];
      if (v === undefined) throw new Error(`collate: ${where}.${key} is missing in item ${i}`);
      return v;
    }), alloc, `${where}.${key}`);
  }
  return out;
}

/** The host buffers of a batch (to return them to the pool, or to transfer them). */
export function hostBuffers(batch: HostBatch, out: HostArray[] = []): HostArray[] {
  if (isHostTensor(batch)) out.push(batch.data);
  else if (Array.isArray(batch)) for (const b of batch) hostBuffers(b, out);
  else for (const b of Object.values(batch)) hostBuffers(b, out);
  return out;
}

/** A Tensor holding a copy of a host array (on `device`). */
export function tensorFromHost(h: HostTensor, device: Device = Device.cpu): Tensor {
  const t = empty(h.shape, h.dtype, device);
  t.storage('DataLoader').backend.upload(t.handle('DataLoader'), h.data);
  return t;
}

/** The default collate's main-thread half: every leaf a Tensor (a copy: the host buffers may be reused). */
export function toTensors(batch: HostBatch, device: Device = Device.cpu): unknown {
  if (isHostTensor(batch)) return tensorFromHost(batch, device);
  if (Array.isArray(batch)) return batch.map((b) => toTensors(b, device));
  const out: Record<string, unknown> = {};
  for (const [k, b] of Object.entries(batch)) out[k] = toTensors(b, device);
  return out;
}

/** A pool of host buffers by array type and length (float16 and bfloat16 share Uint16Arrays). */
export class BufferPool {
  private readonly free = new Map<string, HostArray[]>();
  readonly alloc: Allocate = (dtype, numel) =>
    this.free.get(`${ARRAY_TYPE[dtype]}:${numel}`)?.pop() ?? hostArray(dtype, numel);

  giveArray(a: HostArray): void {
    const key = `${a.constructor.name}:${a.length}`;
    const list = this.free.get(key) ?? [];
    if (list.length < 8) list.push(a);
    this.free.set(key, list);
  }

  giveBatch(batch: HostBatch): void {
    for (const a of hostBuffers(batch)) this.giveArray(a);
  }
}

const ARRAY_TYPE: Record<DType, string> = {
  float32: 'Float32Array', int32: 'Int32Array', int64: 'BigInt64Array', uint8: 'Uint8Array',
  float16: 'Uint16Array', bfloat16: 'Uint16Array',
};
