/**
 * core's Backend kernel methods, written once for every native library: each method
 * of the kernel table (kernel-table.ts) checks its operands against the size rules,
 * converts its other arguments to the C ones and calls the kernel. What differs
 * between the CPU and the CUDA backends is only their operand policy, the hooks
 * below: what a storage handle must be and what is passed for it (a host typed
 * array, a device pointer), the stream argument and the library to call.
 *
 * The C library cannot see buffer lengths, so nothing reaches it before every
 * storage was checked here to have the right dtype and enough elements for the
 * sizes given: a bad call throws instead of corrupting memory.
 */
import type { Backend, Conv2dGeometry, Handle, Pool2dGeometry } from '@bagua/core';
import { CONV2D_GEOM_FIELDS, packConv2d, packPool2d, POOL2D_GEOM_FIELDS } from './geometry.js';
import {
  KERNEL_METHODS, KERNELS, type CallArgs, type KernelFn, type KernelMethod, type KernelName, type KernelParam,
  type KernelSpec, type OperandDType, type OperandParam,
} from './kernel-table.js';

/** The most dimensions a shape or strides argument may have (the header's ndim <= 8). */
export const MAX_DIMS = 8;

/** A kernel's table entry, prepared once: its JavaScript parameters and a reused argument record. */
export interface Prepared {
  readonly op: KernelMethod;
  readonly spec: KernelSpec;
  /** The parameters that take a JavaScript argument (all but ndim), in order. */
  readonly js: readonly KernelParam[];
  readonly record: Record<string, unknown>;
  readonly hasShape: boolean;
}

// The kernel methods are installed on the prototype from the table (below).
export interface NativeBackend extends Pick<Backend, KernelMethod> {}

export abstract class NativeBackend {
  // preallocated host arguments: no allocation per call on hot paths
  private readonly shape64 = new BigInt64Array(MAX_DIMS);
  private readonly strides64 = [new BigInt64Array(MAX_DIMS), new BigInt64Array(MAX_DIMS)];
  // 32-bit views of the same memory, written without creating BigInts
  private readonly shape32 = new Uint32Array(this.shape64.buffer);
  private readonly strides32 = this.strides64.map((a) => new Uint32Array(a.buffer));
  private readonly convGeom = new Int32Array(CONV2D_GEOM_FIELDS);
  private readonly poolGeom = new Int32Array(POOL2D_GEOM_FIELDS);

  // ---- the operand policy ---------------------------------------------------------

  /** The declared kernel (loads the library on first use; throws when it cannot). */
  protected abstract kernelFn(name: KernelName): KernelFn;
  /** Starts checking the operands of one call. */
  protected abstract beginCall(): void;
  /** What is passed for a storage of `dtype` that must hold at least `need` elements; throws when it cannot be. */
  protected abstract operand(op: string, name: string, h: Handle | null, need: number, dtype: OperandDType): unknown;
  /** The trailing `void *stream` argument, after every operand was checked. */
  protected abstract streamArg(): unknown;
  /** Throws (KernelError) when a library call returned a status other than BK_OK. */
  protected abstract check(op: string, rc: number): void;

  // ---- one call -----------------------------------------------------------------------

  /** Every kernel method: the table entry `k` applied to the method's arguments. */
  protected invoke(k: Prepared, args: readonly unknown[]): void {
    const { spec, js, record } = k;
    const fn = this.kernelFn(spec.cname as KernelName);
    for (let i = 0; i < js.length; i++) record[js[i]!.name] = args[i];
    try {
      this.call(k, fn, record);
    } finally {
      // the record is reused: it must not keep the storages of this call alive
      for (let i = 0; i < js.length; i++) record[js[i]!.name] = undefined;
    }
  }

  private call(k: Prepared, fn: KernelFn, a: CallArgs): void {
    const { op, spec } = k;
    if (k.hasShape) checkShape(op, a.shape);
    const c = new Array<unknown>(spec.params.length + 1);
    let nStrides = 0;
    // everything but the storages first: shapes, strides and codes are validated here
    for (let i = 0; i < spec.params.length; i++) {
      const p = spec.params[i]!;
      if (p.kind !== 'operand') c[i] = this.value(op, p, a, p.kind === 'strides' ? nStrides++ : 0);
    }
    this.beginCall();
    for (let i = 0; i < spec.params.length; i++) {
      const p = spec.params[i]!;
      if (p.kind !== 'operand') continue;
      const h = a[p.name] as Handle | null;
      c[i] = h === null && p.optional ? null : this.operand(op, p.name, h, p.size(a), p.dtype);
    }
    c[spec.params.length] = this.streamArg();
    this.check(op, fn(...c));
  }

  /** The C argument of a non-storage parameter. */
  private value(op: string, p: Exclude<KernelParam, OperandParam>, a: CallArgs, stridesIndex: number): unknown {
    const v = a[p.name];
    switch (p.kind) {
      case 'int64': case 'float': return v;
      case 'flag': return v ? 1 : 0;
      case 'ndim': return (a.shape as readonly number[]).length;
      case 'code': {
        const codes = p.codes!;
        if (typeof v !== 'string' || !Object.hasOwn(codes, v)) {
          throw new Error(`${op}: unknown ${p.name} '${String(v)}' (expected ${Object.keys(codes).join(', ')})`);
        }
        return codes[v];
      }
      case 'shape': {
        const shape = v as readonly number[];
        for (let d = 0; d < shape.length; d++) setInt64(this.shape32, d, shape[d]!);
        return this.shape64;
      }
      case 'strides': {
        const st = v as readonly number[];
        checkStrides(op, p.name, a.shape, st);
        for (let d = 0; d < st.length; d++) setInt64(this.strides32[stridesIndex]!, d, st[d]!);
        return this.strides64[stridesIndex];
      }
      case 'conv': return packConv2d(v as Conv2dGeometry, this.convGeom);
      case 'pool': return packPool2d(v as Pool2dGeometry, this.poolGeom);
    }
  }
}

function checkShape(op: string, shape: readonly number[]): void {
  if (shape.length > MAX_DIMS) throw new Error(`${op}: at most ${MAX_DIMS} dimensions are supported (got ${shape.length})`);
  for (let d = 0; d < shape.length; d++) {
    const v = shape[d]!;
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${op}: shape[${d}] = ${v} is not a valid size (integer >= 0)`);
  }
}

/** Strides of a view of `shape`: one per dimension, each an integer >= 0 (a negative one would read before the start). */
function checkStrides(op: string, name: string, shape: readonly number[], st: readonly number[]): void {
  if (st.length !== shape.length) throw new Error(`${op}: ${name} has ${st.length} strides for ${shape.length} dimensions`);
  for (let d = 0; d < st.length; d++) {
    const v = st[d]!;
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${op}: ${name}[${d}] = ${v} is not a valid stride (integer >= 0)`);
  }
}

/**
 * Writes a non-negative integer < 2^53 as element d of an int64 array seen through its
 * 32-bit halves (little-endian), which avoids allocating a BigInt per element.
 * Sizes and strides were validated as non-negative before this is called.
 */
function setInt64(u32: Uint32Array, d: number, v: number): void {
  u32[2 * d] = v >>> 0;
  u32[2 * d + 1] = Math.floor(v / 4294967296);
}

// One method per table entry, the same for every native backend.
for (const op of KERNEL_METHODS) {
  const spec: KernelSpec = KERNELS[op];
  const js = spec.params.filter((p) => p.kind !== 'ndim');
  const record: Record<string, unknown> = {};
  for (const p of js) record[p.name] = undefined;
  const k: Prepared = { op, spec, js, record, hasShape: js.some((p) => p.kind === 'shape') };
  Object.defineProperty(NativeBackend.prototype, op, {
    value: { [op](this: NativeBackend, ...args: unknown[]): void { (this as unknown as Invoker).invoke(k, args); } }[op],
    writable: true, configurable: true,
  });
}

type Invoker = { invoke(k: Prepared, args: readonly unknown[]): void };
