/**
 * core's Backend on the CPU: handles are the host typed arrays themselves, and
 * kernels are the C functions of libbagua_kernels_cpu.so called through koffi
 * with the typed arrays passed by pointer (no copies).
 *
 * The C library cannot see buffer lengths, so every call checks here that each
 * storage is the right kind of typed array and long enough for the sizes it is
 * given: a bad call throws instead of corrupting memory.
 */
import {
  type Backend, type BinaryOp, type Conv2dGeometry, type DType, type Handle, type HostArray,
  type Pool2dGeometry, type UnaryOp,
} from '@bagua/core';
import { CPU_LIBRARY, loadKernelLibrary, type LoadedLibrary } from './load-library.js';
import { conv2dSizes, packConv2d, packPool2d } from './geometry.js';
import { HostAllocator } from './host-allocator.js';
import os from 'node:os';

/** Every kernel of bagua_kernels.h: its parameters before the trailing `void *stream`. */
export const KERNEL_PARAMS = {
  bk_fill_f32: 'float *out, int64_t n, float value',
  bk_copy_f32: 'float *out, const float *x, int64_t n',
  bk_strided_copy_f32: 'float *out, const float *x, const int64_t *shape, const int64_t *x_strides, int32_t ndim',
  bk_binary_f32: 'int32_t op, float *out, const float *a, const int64_t *a_strides, const float *b, ' +
    'const int64_t *b_strides, const int64_t *shape, int32_t ndim',
  bk_unary_f32: 'int32_t op, float *out, const float *x, int64_t n',
  bk_affine_f32: 'float *out, const float *x, int64_t n, float alpha, float beta',
  bk_relu_backward_f32: 'float *dx, const float *dy, const float *x, int64_t n',
  bk_sum_f32: 'float *out, const float *x, int64_t outer, int64_t reduce, int64_t inner',
  bk_gemm_f32: 'float *c, const float *a, const float *b, int32_t trans_a, int32_t trans_b, ' +
    'int64_t m, int64_t n, int64_t k, float alpha, float beta, int64_t lda, int64_t ldb, int64_t ldc, ' +
    'int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c',
  bk_softmax_f32: 'float *out, const float *x, int64_t rows, int64_t cols, int32_t log',
  bk_softmax_backward_f32: 'float *dx, const float *dy, const float *y, int64_t rows, int64_t cols, int32_t log',
  bk_nll_loss_f32: 'float *out, const float *logp, const int32_t *target, int64_t rows, int64_t cols',
  bk_nll_loss_backward_f32: 'float *dlogp, const float *dout, const int32_t *target, int64_t rows, int64_t cols',
  bk_conv2d_f32: 'float *y, const float *x, const float *w, const float *bias, const int32_t *geom',
  bk_conv2d_backward_input_f32: 'float *dx, const float *dy, const float *w, const int32_t *geom',
  bk_conv2d_backward_weight_f32: 'float *dw, const float *dy, const float *x, const int32_t *geom',
  bk_max_pool2d_f32: 'float *y, int32_t *indices, const float *x, const int32_t *geom',
  bk_max_pool2d_backward_f32: 'float *dx, const float *dy, const int32_t *indices, const int32_t *geom',
  bk_avg_pool2d_f32: 'float *y, const float *x, const int32_t *geom',
  bk_avg_pool2d_backward_f32: 'float *dx, const float *dy, const int32_t *geom',
  bk_adaptive_avg_pool2d_f32: 'float *y, const float *x, const int32_t *geom',
  bk_adaptive_avg_pool2d_backward_f32: 'float *dx, const float *dy, const int32_t *geom',
  bk_bn_stats_f32: 'float *stats, const float *x, int64_t n, int64_t c, int64_t hw',
  bk_bn_merge_stats_f32: 'float *mean, float *invstd, float *count, const float *stats, int64_t ranks, ' +
    'int64_t c, float eps, float *running_mean, float *running_var, float factor',
  bk_bn_invstd_f32: 'float *invstd, const float *var, int64_t c, float eps',
  bk_bn_elemt_f32: 'float *y, const float *x, const float *mean, const float *invstd, const float *weight, ' +
    'const float *bias, int64_t n, int64_t c, int64_t hw',
  bk_bn_backward_reduce_f32: 'float *sums, float *grad_weight, float *grad_bias, const float *dy, ' +
    'const float *x, const float *mean, const float *invstd, int64_t n, int64_t c, int64_t hw',
  bk_bn_backward_elemt_f32: 'float *dx, const float *dy, const float *x, const float *mean, ' +
    'const float *invstd, const float *weight, const float *sums, const float *count, int64_t n, int64_t c, int64_t hw',
  bk_sgd_f32: 'float *param, float *momentum_buf, const float *grad, int64_t n, float lr, float momentum, ' +
    'float dampening, float weight_decay, int32_t nesterov, int32_t first_step',
} as const;

export type KernelName = keyof typeof KERNEL_PARAMS;
export const KERNEL_NAMES = Object.keys(KERNEL_PARAMS) as KernelName[];

/** A declared C kernel: returns 0 or an error code (see bk_last_error). */
export type KernelFn = (...args: unknown[]) => number;

/** The library's own settings: kernel threads and the convolution engine, per calling thread. */
export interface CpuControl {
  readonly setNumThreads: (n: number) => number;
  readonly getNumThreads: () => number;
  readonly info: (buf: Uint8Array, len: number) => number;
  readonly useDnnl: (enable: number) => number;
}

export interface CpuKernels {
  readonly library: LoadedLibrary;
  readonly fn: Readonly<Record<KernelName, KernelFn>>;
  readonly backendName: string;
  readonly control: CpuControl;
}

/** The most threads bk_set_num_threads accepts. */
export const MAX_NUM_THREADS = 1024;

/**
 * Kernel threads when nothing was set: BAGUA_NUM_THREADS, else the cores shared by the
 * launcher's local ranks. Read from this thread's process.env: a thread rank's
 * LOCAL_WORLD_SIZE is in its worker's env, which the C library's getenv cannot see.
 */
function defaultNumThreads(): number {
  const given = Number(process.env.BAGUA_NUM_THREADS);
  if (Number.isInteger(given) && given >= 1) return Math.min(given, MAX_NUM_THREADS);
  const local = Number(process.env.LOCAL_WORLD_SIZE);
  return Math.max(1, Math.floor(os.availableParallelism() / (Number.isInteger(local) && local >= 1 ? local : 1)));
}

/** Loads the CPU library and declares every kernel once. */
export function loadCpuKernels(candidates?: readonly string[]): CpuKernels {
  const library = loadKernelLibrary(CPU_LIBRARY, candidates);
  const fn = {} as Record<KernelName, KernelFn>;
  for (const name of KERNEL_NAMES) {
    fn[name] = library.lib.func(`int ${name}(${KERNEL_PARAMS[name]}, void *stream)`) as KernelFn;
  }
  const backendName = library.lib.func('const char *bk_backend_name(void)')() as string;
  const lib = library.lib;
  const control: CpuControl = {
    setNumThreads: lib.func('int bk_set_num_threads(int32_t n)') as CpuControl['setNumThreads'],
    getNumThreads: lib.func('int32_t bk_get_num_threads(void)') as CpuControl['getNumThreads'],
    info: lib.func('int bk_cpu_info(_Out_ uint8_t *buf, int64_t len)') as CpuControl['info'],
    useDnnl: lib.func('int32_t bk_cpu_use_dnnl(int32_t enable)') as CpuControl['useDnnl'],
  };
  return { library, fn, backendName, control };
}

const BINARY_CODES: Readonly<Record<BinaryOp, number>> = { add: 0, sub: 1, mul: 2, div: 3 };
const UNARY_CODES: Readonly<Record<UnaryOp, number>> = { neg: 0, relu: 1, exp: 2, log: 3, sqrt: 4 };
const MAX_DIMS = 8;

function describe(h: unknown): string {
  if (h === null || h === undefined) return String(h);
  if (ArrayBuffer.isView(h)) return `${h.constructor.name}(${(h as Float32Array).length})`;
  return typeof h === 'object' ? (h.constructor?.name ?? 'object') : typeof h;
}

/** A float32 storage with at least `need` elements. */
function f32(op: string, name: string, h: Handle | null, need: number): Float32Array {
  if (!(h instanceof Float32Array)) {
    throw new Error(`${op}: ${name} must be a float32 CPU storage (Float32Array), got ${describe(h)}`);
  }
  if (!(h.length >= need)) {
    throw new Error(`${op}: ${name} has ${h.length} elements, the sizes given need ${need}`);
  }
  return h;
}

function f32OrNull(op: string, name: string, h: Handle | null, need: number): Float32Array | null {
  return h === null ? null : f32(op, name, h, need);
}

function i32(op: string, name: string, h: Handle, need: number): Int32Array {
  if (!(h instanceof Int32Array)) {
    throw new Error(`${op}: ${name} must be an int32 CPU storage (Int32Array), got ${describe(h)}`);
  }
  if (!(h.length >= need)) {
    throw new Error(`${op}: ${name} has ${h.length} elements, the sizes given need ${need}`);
  }
  return h;
}

/**
 * Elements a strided view must reach: 1 + the largest offset, or 0 when empty.
 * Negative strides would read before the start: rejected.
 */
function stridedExtent(op: string, name: string, shape: readonly number[], strides: readonly number[]): number {
  if (strides.length !== shape.length) {
    throw new Error(`${op}: ${name} has ${strides.length} strides for ${shape.length} dimensions`);
  }
  let last = 0, empty = false;
  for (let d = 0; d < shape.length; d++) {
    const st = strides[d]!;
    if (!Number.isSafeInteger(st) || st < 0) throw new Error(`${op}: ${name}[${d}] = ${st} is not a valid stride (integer >= 0)`);
    if (shape[d] === 0) empty = true;
    last += (shape[d]! - 1) * st;
  }
  return empty ? 0 : last + 1;
}

function numelOfShape(op: string, shape: readonly number[]): number {
  if (shape.length > MAX_DIMS) throw new Error(`${op}: at most ${MAX_DIMS} dimensions are supported (got ${shape.length})`);
  let n = 1;
  for (let d = 0; d < shape.length; d++) {
    const v = shape[d]!;
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${op}: shape[${d}] = ${v} is not a valid size (integer >= 0)`);
    n *= v;
  }
  return n;
}

/**
 * Writes a non-negative integer < 2^53 as element d of an int64 array seen through its
 * 32-bit halves (little-endian), which avoids allocating a BigInt per element.
 * Sizes and strides were validated as non-negative before this is called.
 */
function setInt64(u32: Uint32Array, d: number, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`not a valid size or stride: ${v}`);
  u32[2 * d] = v >>> 0;
  u32[2 * d + 1] = Math.floor(v / 4294967296);
}

/** Elements a (possibly batched, strided) row-major matrix occupies: rows x cols with leading dimension ld. */
function matrixExtent(rows: number, cols: number, ld: number, batch: number, stride: number): number {
  if (rows <= 0 || cols <= 0 || batch <= 0) return 0;
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

export class CpuBackend implements Backend {
  readonly deviceType = 'cpu' as const;

  private kernels: CpuKernels | null = null;
  // preallocated argument arrays: no allocation per call on hot paths
  private readonly shape64 = new BigInt64Array(MAX_DIMS);
  private readonly strideA64 = new BigInt64Array(MAX_DIMS);
  private readonly strideB64 = new BigInt64Array(MAX_DIMS);
  // 32-bit views of the same memory, written without creating BigInts
  private readonly shape32 = new Uint32Array(this.shape64.buffer);
  private readonly strideA32 = new Uint32Array(this.strideA64.buffer);
  private readonly strideB32 = new Uint32Array(this.strideB64.buffer);
  private readonly convGeom = new Int32Array(16);
  private readonly poolGeom = new Int32Array(14);
  private readonly allocator = new HostAllocator();

  /** `candidates` overrides where the library is looked for (see libraryCandidates). */
  constructor(private readonly candidates?: readonly string[]) {}

  /** The loaded library (loaded on first use, so importing the package never fails). */
  get native(): CpuKernels {
    if (!this.kernels) {
      this.kernels = loadCpuKernels(this.candidates);
      this.setNumThreads(defaultNumThreads());
    }
    return this.kernels;
  }

  /** Kernel threads of the calling thread (each rank of the `threads` backend sets its own); also oneDNN's. */
  setNumThreads(n: number): void {
    if (!Number.isInteger(n) || n < 1 || n > MAX_NUM_THREADS) {
      throw new Error(`setNumThreads: n must be an integer from 1 to ${MAX_NUM_THREADS}, got ${n}`);
    }
    this.check('setNumThreads', this.native.control.setNumThreads(n));
  }

  getNumThreads(): number {
    return this.native.control.getNumThreads();
  }

  private get fn(): Readonly<Record<KernelName, KernelFn>> {
    return this.native.fn;
  }

  /** Every kernel call goes through here: non-zero means failure, described by bk_last_error. */
  private check(op: string, rc: number): void {
    if (rc !== 0) throw new Error(`${op}: ${this.native.library.lastError()}`);
  }

  // ---- storage ---------------------------------------------------------------

  alloc(dtype: DType, numel: number, deviceIndex: number): Handle {
    if (deviceIndex !== 0) throw new Error(`alloc: the CPU has only device index 0 (got ${deviceIndex})`);
    return this.allocator.alloc(dtype, numel);
  }

  /** Back to the host allocator's cache: core calls it only when no tensor refers to the storage. */
  free(handle: Handle): void {
    this.allocator.free(handle as HostArray);
  }

  allocatorStats(): { reserved: number; systemAllocs: number } {
    return this.allocator.stats();
  }

  emptyCache(): void {
    this.allocator.emptyCache();
  }

  reclaimToken(handle: Handle): unknown {
    return this.allocator.token(handle as HostArray);
  }

  reclaim(token: unknown): void {
    this.allocator.reclaim(token as number);
  }

  upload(handle: Handle, src: HostArray): void {
    const dst = handle as HostArray;
    if (src.length > dst.length) throw new Error(`upload: ${src.length} elements do not fit a storage of ${dst.length}`);
    (dst as Float32Array).set(src as Float32Array);
  }

  download(handle: Handle, _dtype: DType, numel: number): HostArray {
    const src = handle as HostArray;
    if (numel > src.length) throw new Error(`download: ${numel} elements requested from a storage of ${src.length}`);
    return src.slice(0, numel);
  }

  synchronize(): void {
    // CPU kernels are synchronous
  }

  /** CPU storages are host typed arrays already: collectives can work on them in place. */
  hostView(handle: Handle): HostArray {
    return handle as HostArray;
  }

  // ---- memory movement ------------------------------------------------------

  fill(out: Handle, n: number, value: number): void {
    this.check('fill', this.fn.bk_fill_f32(f32('fill', 'out', out, n), n, value, null));
  }

  copy(out: Handle, x: Handle, n: number): void {
    this.check('copy', this.fn.bk_copy_f32(f32('copy', 'out', out, n), f32('copy', 'x', x, n), n, null));
  }

  stridedCopy(out: Handle, x: Handle, shape: readonly number[], xStrides: readonly number[]): void {
    const op = 'stridedCopy';
    const numel = numelOfShape(op, shape);
    const o = f32(op, 'out', out, numel);
    const xs = f32(op, 'x', x, stridedExtent(op, 'xStrides', shape, xStrides));
    for (let d = 0; d < shape.length; d++) {
      setInt64(this.shape32, d, shape[d]!);
      setInt64(this.strideA32, d, xStrides[d]!);
    }
    this.check(op, this.fn.bk_strided_copy_f32(o, xs, this.shape64, this.strideA64, shape.length, null));
  }

  // ---- elementwise ------------------------------------------------------------

  binary(op: BinaryOp, out: Handle, a: Handle, aStrides: readonly number[], b: Handle,
    bStrides: readonly number[], shape: readonly number[]): void {
    const code = BINARY_CODES[op];
    if (code === undefined) throw new Error(`binary: unknown op '${String(op)}' (expected add, sub, mul, div)`);
    const numel = numelOfShape('binary', shape);
    const o = f32('binary', 'out', out, numel);
    const av = f32('binary', 'a', a, stridedExtent('binary', 'aStrides', shape, aStrides));
    const bv = f32('binary', 'b', b, stridedExtent('binary', 'bStrides', shape, bStrides));
    for (let d = 0; d < shape.length; d++) {
      setInt64(this.shape32, d, shape[d]!);
      setInt64(this.strideA32, d, aStrides[d]!);
      setInt64(this.strideB32, d, bStrides[d]!);
    }
    this.check('binary', this.fn.bk_binary_f32(code, o, av, this.strideA64, bv, this.strideB64, this.shape64,
      shape.length, null));
  }

  unary(op: UnaryOp, out: Handle, x: Handle, n: number): void {
    const code = UNARY_CODES[op];
    if (code === undefined) throw new Error(`unary: unknown op '${String(op)}' (expected neg, relu, exp, log, sqrt)`);
    this.check('unary', this.fn.bk_unary_f32(code, f32('unary', 'out', out, n), f32('unary', 'x', x, n), n, null));
  }

  affine(out: Handle, x: Handle, n: number, alpha: number, beta: number): void {
    this.check('affine', this.fn.bk_affine_f32(f32('affine', 'out', out, n), f32('affine', 'x', x, n), n, alpha, beta, null));
  }

  reluBackward(dx: Handle, dy: Handle, x: Handle, n: number): void {
    const op = 'reluBackward';
    this.check(op, this.fn.bk_relu_backward_f32(f32(op, 'dx', dx, n), f32(op, 'dy', dy, n), f32(op, 'x', x, n), n, null));
  }

  // ---- reductions and products -----------------------------------------------

  sum(out: Handle, x: Handle, outer: number, reduce: number, inner: number): void {
    this.check('sum', this.fn.bk_sum_f32(f32('sum', 'out', out, outer * inner), f32('sum', 'x', x, outer * reduce * inner),
      outer, reduce, inner, null));
  }

  gemm(c: Handle, a: Handle, b: Handle, transA: boolean, transB: boolean,
    m: number, n: number, k: number, alpha: number, beta: number,
    lda: number, ldb: number, ldc: number,
    batch: number, strideA: number, strideB: number, strideC: number): void {
    const op = 'gemm';
    const cv = f32(op, 'c', c, matrixExtent(m, n, ldc, batch, strideC));
    const av = f32(op, 'a', a, transA ? matrixExtent(k, m, lda, batch, strideA) : matrixExtent(m, k, lda, batch, strideA));
    const bv = f32(op, 'b', b, transB ? matrixExtent(n, k, ldb, batch, strideB) : matrixExtent(k, n, ldb, batch, strideB));
    this.check(op, this.fn.bk_gemm_f32(cv, av, bv, transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, beta, lda, ldb, ldc,
      batch, strideA, strideB, strideC, null));
  }

  // ---- softmax and losses -------------------------------------------------------

  softmax(out: Handle, x: Handle, rows: number, cols: number, log: boolean): void {
    const n = rows * cols;
    this.check('softmax', this.fn.bk_softmax_f32(f32('softmax', 'out', out, n), f32('softmax', 'x', x, n), rows, cols,
      log ? 1 : 0, null));
  }

  softmaxBackward(dx: Handle, dy: Handle, y: Handle, rows: number, cols: number, log: boolean): void {
    const op = 'softmaxBackward';
    const n = rows * cols;
    this.check(op, this.fn.bk_softmax_backward_f32(f32(op, 'dx', dx, n), f32(op, 'dy', dy, n), f32(op, 'y', y, n), rows,
      cols, log ? 1 : 0, null));
  }

  nllLoss(out: Handle, logp: Handle, target: Handle, rows: number, cols: number): void {
    const op = 'nllLoss';
    this.check(op, this.fn.bk_nll_loss_f32(f32(op, 'out', out, rows), f32(op, 'logp', logp, rows * cols),
      i32(op, 'target', target, rows), rows, cols, null));
  }

  nllLossBackward(dlogp: Handle, dout: Handle, target: Handle, rows: number, cols: number): void {
    const op = 'nllLossBackward';
    this.check(op, this.fn.bk_nll_loss_backward_f32(f32(op, 'dlogp', dlogp, rows * cols), f32(op, 'dout', dout, rows),
      i32(op, 'target', target, rows), rows, cols, null));
  }

  // ---- convolution and pooling ------------------------------------------------

  conv2d(y: Handle, x: Handle, w: Handle, bias: Handle | null, g: Conv2dGeometry): void {
    const op = 'conv2d';
    const s = conv2dSizes(g);
    this.check(op, this.fn.bk_conv2d_f32(f32(op, 'y', y, s.y), f32(op, 'x', x, s.x), f32(op, 'w', w, s.w),
      f32OrNull(op, 'bias', bias, g.k), packConv2d(g, this.convGeom), null));
  }

  conv2dBackwardInput(dx: Handle, dy: Handle, w: Handle, g: Conv2dGeometry): void {
    const op = 'conv2dBackwardInput';
    const s = conv2dSizes(g);
    this.check(op, this.fn.bk_conv2d_backward_input_f32(f32(op, 'dx', dx, s.x), f32(op, 'dy', dy, s.y),
      f32(op, 'w', w, s.w), packConv2d(g, this.convGeom), null));
  }

  conv2dBackwardWeight(dw: Handle, dy: Handle, x: Handle, g: Conv2dGeometry): void {
    const op = 'conv2dBackwardWeight';
    const s = conv2dSizes(g);
    this.check(op, this.fn.bk_conv2d_backward_weight_f32(f32(op, 'dw', dw, s.w), f32(op, 'dy', dy, s.y),
      f32(op, 'x', x, s.x), packConv2d(g, this.convGeom), null));
  }

  maxPool2d(y: Handle, indices: Handle, x: Handle, g: Pool2dGeometry): void {
    const op = 'maxPool2d';
    const no = g.planes * g.oh * g.ow;
    this.check(op, this.fn.bk_max_pool2d_f32(f32(op, 'y', y, no), i32(op, 'indices', indices, no),
      f32(op, 'x', x, g.planes * g.h * g.w), packPool2d(g, this.poolGeom), null));
  }

  maxPool2dBackward(dx: Handle, dy: Handle, indices: Handle, g: Pool2dGeometry): void {
    const op = 'maxPool2dBackward';
    const no = g.planes * g.oh * g.ow;
    this.check(op, this.fn.bk_max_pool2d_backward_f32(f32(op, 'dx', dx, g.planes * g.h * g.w), f32(op, 'dy', dy, no),
      i32(op, 'indices', indices, no), packPool2d(g, this.poolGeom), null));
  }

  avgPool2d(y: Handle, x: Handle, g: Pool2dGeometry): void {
    const op = 'avgPool2d';
    this.check(op, this.fn.bk_avg_pool2d_f32(f32(op, 'y', y, g.planes * g.oh * g.ow), f32(op, 'x', x, g.planes * g.h * g.w),
      packPool2d(g, this.poolGeom), null));
  }

  avgPool2dBackward(dx: Handle, dy: Handle, g: Pool2dGeometry): void {
    const op = 'avgPool2dBackward';
    this.check(op, this.fn.bk_avg_pool2d_backward_f32(f32(op, 'dx', dx, g.planes * g.h * g.w),
      f32(op, 'dy', dy, g.planes * g.oh * g.ow), packPool2d(g, this.poolGeom), null));
  }

  adaptiveAvgPool2d(y: Handle, x: Handle, g: Pool2dGeometry): void {
    const op = 'adaptiveAvgPool2d';
    this.check(op, this.fn.bk_adaptive_avg_pool2d_f32(f32(op, 'y', y, g.planes * g.oh * g.ow),
      f32(op, 'x', x, g.planes * g.h * g.w), packPool2d(g, this.poolGeom), null));
  }

  adaptiveAvgPool2dBackward(dx: Handle, dy: Handle, g: Pool2dGeometry): void {
    const op = 'adaptiveAvgPool2dBackward';
    this.check(op, this.fn.bk_adaptive_avg_pool2d_backward_f32(f32(op, 'dx', dx, g.planes * g.h * g.w),
      f32(op, 'dy', dy, g.planes * g.oh * g.ow), packPool2d(g, this.poolGeom), null));
  }

  // ---- batch normalisation --------------------------------------------------------

  bnStats(stats: Handle, x: Handle, n: number, c: number, hw: number): void {
    const op = 'bnStats';
    this.check(op, this.fn.bk_bn_stats_f32(f32(op, 'stats', stats, 2 * c + 1), f32(op, 'x', x, n * c * hw), n, c, hw, null));
  }

  bnMergeStats(mean: Handle, invstd: Handle, count: Handle, stats: Handle, ranks: number, c: number,
    eps: number, runningMean: Handle | null, runningVar: Handle | null, factor: number): void {
    const op = 'bnMergeStats';
    this.check(op, this.fn.bk_bn_merge_stats_f32(f32(op, 'mean', mean, c), f32(op, 'invstd', invstd, c),
      f32(op, 'count', count, 1), f32(op, 'stats', stats, ranks * (2 * c + 1)), ranks, c, eps,
      f32OrNull(op, 'runningMean', runningMean, c), f32OrNull(op, 'runningVar', runningVar, c), factor, null));
  }

  bnInvstd(invstd: Handle, variance: Handle, c: number, eps: number): void {
    const op = 'bnInvstd';
    this.check(op, this.fn.bk_bn_invstd_f32(f32(op, 'invstd', invstd, c), f32(op, 'variance', variance, c), c, eps, null));
  }

  bnElemt(y: Handle, x: Handle, mean: Handle, invstd: Handle, weight: Handle | null,
    bias: Handle | null, n: number, c: number, hw: number): void {
    const op = 'bnElemt';
    const total = n * c * hw;
    this.check(op, this.fn.bk_bn_elemt_f32(f32(op, 'y', y, total), f32(op, 'x', x, total), f32(op, 'mean', mean, c),
      f32(op, 'invstd', invstd, c), f32OrNull(op, 'weight', weight, c), f32OrNull(op, 'bias', bias, c), n, c, hw, null));
  }

  bnBackwardReduce(sums: Handle, gradWeight: Handle | null, gradBias: Handle | null, dy: Handle,
    x: Handle, mean: Handle, invstd: Handle, n: number, c: number, hw: number): void {
    const op = 'bnBackwardReduce';
    const total = n * c * hw;
    this.check(op, this.fn.bk_bn_backward_reduce_f32(f32(op, 'sums', sums, 2 * c),
      f32OrNull(op, 'gradWeight', gradWeight, c), f32OrNull(op, 'gradBias', gradBias, c), f32(op, 'dy', dy, total),
      f32(op, 'x', x, total), f32(op, 'mean', mean, c), f32(op, 'invstd', invstd, c), n, c, hw, null));
  }

  bnBackwardElemt(dx: Handle, dy: Handle, x: Handle, mean: Handle, invstd: Handle,
    weight: Handle | null, sums: Handle, count: Handle, n: number, c: number, hw: number): void {
    const op = 'bnBackwardElemt';
    const total = n * c * hw;
    this.check(op, this.fn.bk_bn_backward_elemt_f32(f32(op, 'dx', dx, total), f32(op, 'dy', dy, total),
      f32(op, 'x', x, total), f32(op, 'mean', mean, c), f32(op, 'invstd', invstd, c),
      f32OrNull(op, 'weight', weight, c), f32(op, 'sums', sums, 2 * c), f32(op, 'count', count, 1), n, c, hw, null));
  }

  // ---- optimiser ------------------------------------------------------------------

  sgd(param: Handle, momentumBuf: Handle | null, grad: Handle, n: number, lr: number,
    momentum: number, dampening: number, weightDecay: number, nesterov: boolean,
    firstStep: boolean): void {
    const op = 'sgd';
    this.check(op, this.fn.bk_sgd_f32(f32(op, 'param', param, n), f32OrNull(op, 'momentumBuf', momentumBuf, n),
      f32(op, 'grad', grad, n), n, lr, momentum, dampening, weightDecay, nesterov ? 1 : 0, firstStep ? 1 : 0, null));
  }
}

/** The process-wide CPU backend, registered with core when the package is imported. */
export const cpuBackend = new CpuBackend();
