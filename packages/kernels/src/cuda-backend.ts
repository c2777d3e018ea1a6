/**
 * core's Backend on CUDA devices: storages are device memory from the CUDA
 * library's caching allocator, and every kernel of bagua_kernels.h runs on the
 * library's stream of the storage's device.
 *
 * Handles are CudaStorage objects: a device pointer (BigInt), its byte size,
 * dtype, element count and device index. As on the CPU, the C library cannot
 * see sizes, so every call checks here that each storage has the right dtype,
 * is large enough for the sizes given, lives on the same device as the other
 * operands, and was not freed.
 *
 * Nothing is loaded until the first allocation: importing @bagua/kernels on a
 * machine without a GPU never fails; using a cuda device there throws an
 * Error that says what is missing (library, driver, device) and where it looked.
 */
import {
  bytesPerElement, hostArray,
  type Backend, type BinaryOp, type Conv2dGeometry, type DType, type Handle, type HostArray,
  type Pool2dGeometry, type UnaryOp,
} from '@bagua/core';
import type { KernelFn, KernelName } from './cpu-backend.js';
import {
  cString, loadCudaKernels, type CudaDeviceInfo, type CudaKernels, type RuntimeName,
} from './cuda-native.js';
import { conv2dSizes, packConv2d, packPool2d } from './geometry.js';

const BINARY_CODES: Readonly<Record<BinaryOp, number>> = { add: 0, sub: 1, mul: 2, div: 3 };
const UNARY_CODES: Readonly<Record<UnaryOp, number>> = { neg: 0, relu: 1, exp: 2, log: 3, sqrt: 4 };
const MAX_DIMS = 8;

/**
 * The device current on this thread, shared by every CudaBackend of it (CUDA's current
 * device is per host thread, and each worker thread has its own copy of this module).
 */
const thisThread = { currentDevice: -1 };

/** One device allocation. `ptr` is 0n for an empty storage. */
export class CudaStorage {
  freed = false;
  constructor(
    readonly ptr: bigint,
    readonly nbytes: number,
    readonly dtype: DType,
    readonly numel: number,
    readonly device: number,
  ) {}
}

function describe(h: unknown): string {
  if (h === null || h === undefined) return String(h);
  if (h instanceof CudaStorage) return `${h.dtype} storage of ${h.numel} on cuda:${h.device}`;
  if (ArrayBuffer.isView(h)) return `a CPU storage (${h.constructor.name})`;
  return typeof h === 'object' ? (h.constructor?.name ?? 'object') : typeof h;
}

function stridedExtent(op: string, name: string, shape: readonly number[], strides: readonly number[]): number {
  if (strides.length !== shape.length) {
    throw new Error(`${op}: ${name} has ${strides.length} strides for ${shape.length} dimensions`);
  }
  let last = 0;
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 0) return 0;
    if (strides[d]! < 0) throw new Error(`${op}: negative stride ${strides[d]} in ${name}`);
    last += (shape[d]! - 1) * strides[d]!;
  }
  return last + 1;
}

function numelOfShape(op: string, shape: readonly number[]): number {
  if (shape.length > MAX_DIMS) throw new Error(`${op}: at most ${MAX_DIMS} dimensions are supported (got ${shape.length})`);
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

function matrixExtent(rows: number, cols: number, ld: number, batch: number, stride: number): number {
  if (rows <= 0 || cols <= 0 || batch <= 0) return 0;
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

export class CudaBackend implements Backend {
  readonly deviceType = 'cuda' as const;

  private kernels: CudaKernels | null = null;
  private loadError: Error | null = null;
  private readonly streams: bigint[] = [];
  private callDevice = -1; // device of the operands of the call being prepared
  private readonly shape64 = new BigInt64Array(MAX_DIMS);
  private readonly strideA64 = new BigInt64Array(MAX_DIMS);
  private readonly strideB64 = new BigInt64Array(MAX_DIMS);
  private readonly convGeom = new Int32Array(16);
  private readonly poolGeom = new Int32Array(14);
  private readonly out1: unknown[] = [null];
  private readonly totalBytes: number[] = [];

  /** `candidates` overrides where the library is looked for (see libraryCandidates). */
  constructor(private readonly candidates?: readonly string[]) {}

  /** The loaded library; loading (and its failure) happens once. */
  get native(): CudaKernels {
    if (this.kernels) return this.kernels;
    if (this.loadError) throw this.loadError;
    try {
      this.kernels = loadCudaKernels(this.candidates);
    } catch (e) {
      this.loadError = e as Error;
      throw e;
    }
    return this.kernels;
  }

  private get fn(): Readonly<Record<KernelName, KernelFn>> {
    return this.native.fn;
  }

  private get rt(): Readonly<Record<RuntimeName, KernelFn>> {
    return this.native.rt;
  }

  private check(op: string, rc: number): void {
    if (rc !== 0) throw new Error(`${op} (cuda): ${this.native.library.lastError()}`);
  }

  // ---- devices and streams -----------------------------------------------------

  deviceCount(): number {
    return this.native.deviceCount;
  }

  private checkDevice(op: string, device: number): void {
    if (!Number.isInteger(device) || device < 0 || device >= this.native.deviceCount) {
      throw new Error(`${op}: cuda:${device} does not exist (${this.native.deviceCount} CUDA device(s) present)`);
    }
  }

  /**
   * Makes `device` current on this thread (cached: a no-op when it already is). Every call
   * that touches a device selects it first, so the library never switches devices itself:
   * a switch there (and back to the default cuda:0) would open a context on cuda:0 in
   * every rank of a multi-GPU job.
   */
  private use(device: number): void {
    if (thisThread.currentDevice !== device) {
      this.check('cudaSetDevice', this.rt.bk_cuda_set_device(device));
      thisThread.currentDevice = device;
    }
  }

  /** The library's stream of `device` (a cudaStream_t as BigInt), e.g. for NCCL. */
  streamOf(device: number): bigint {
    let s = this.streams[device];
    if (s === undefined) {
      this.checkDevice('stream', device);
      this.use(device);
      this.out1[0] = null;
      this.check('stream', this.rt.bk_cuda_stream(device, this.out1));
      s = (this.out1[0] as bigint | null) ?? 0n;
      this.streams[device] = s;
    }
    return s;
  }

  deviceInfo(device: number): CudaDeviceInfo {
    this.checkDevice('deviceInfo', device);
    const name = new Uint8Array(256);
    const major = [0], minor = [0], total = [0], sms = [0];
    this.check('deviceInfo', this.rt.bk_cuda_device_info(device, name, name.length, major, minor, total, sms));
    return { index: device, name: cString(name), computeCapability: `${major[0]}.${minor[0]}`,
      totalBytes: Number(total[0]), smCount: sms[0]! };
  }

  /** Driver and runtime versions, e.g. '13.0' (major.minor). */
  versions(): { driver: string; runtime: string } {
    const d = [0], r = [0];
    this.rt.bk_cuda_versions(d, r);
    const fmt = (v: number) => `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
    return { driver: fmt(d[0]!), runtime: fmt(r[0]!) };
  }

  /** Path of the cuBLAS library in use (loads it): throws with the paths tried when absent. */
  cublasPath(): string {
    const buf = new Uint8Array(4096);
    this.check('cuBLAS', this.rt.bk_cuda_cublas_info(buf, buf.length));
    return cString(buf);
  }

  /** The caching allocator of `device`: bytes handed out and held, and cudaMalloc calls so far. */
  memoryStats(device: number): { allocated: number; reserved: number; systemAllocs: number } {
    this.checkDevice('memoryStats', device);
    const a = [0], r = [0], n = [0];
    this.check('memoryStats', this.rt.bk_cuda_memory_stats(device, a, r, n));
    return { allocated: Number(a[0]), reserved: Number(r[0]), systemAllocs: Number(n[0]) };
  }

  allocatorStats(device: number): { reserved: number; systemAllocs: number } {
    return this.memoryStats(device);
  }

  /** Returns cached, unused device memory to the driver (all devices when omitted). */
  emptyCache(device = -1): void {
    this.check('emptyCache', this.rt.bk_cuda_empty_cache(device));
  }

  /** The device pointer is all the safety net needs to give a block back. */
  reclaimToken(handle: Handle): unknown {
    return (handle as CudaStorage).ptr;
  }

  reclaim(token: unknown): void {
    if (token !== 0n && this.kernels) this.rt.bk_cuda_free(token as bigint);
  }

  /** The device pointer, device and stream of a storage: what a collective library needs. */
  bufferInfo(handle: Handle): { ptr: bigint; device: number; stream: bigint; nbytes: number; dtype: DType } {
    const s = this.storage('bufferInfo', 'buffer', handle);
    return { ptr: s.ptr, device: s.device, stream: this.streamOf(s.device), nbytes: s.nbytes, dtype: s.dtype };
  }

  // ---- CUDA events, for timing ------------------------------------------------------

  /** An event of `device` (events record only on their own device's streams). */
  eventCreate(device: number): bigint {
    this.checkDevice('eventCreate', device);
    this.use(device);
    this.out1[0] = null;
    this.check('eventCreate', this.rt.bk_cuda_event_create(this.out1));
    return this.out1[0] as bigint;
  }

  eventRecord(event: bigint, device: number): void {
    this.use(device);
    this.check('eventRecord', this.rt.bk_cuda_event_record(event, this.streamOf(device)));
  }

  /** Milliseconds between two recorded events (waits for `end`). */
  eventElapsed(start: bigint, end: bigint): number {
    const ms = [0];
    this.check('eventElapsed', this.rt.bk_cuda_event_elapsed(ms, start, end));
    return ms[0]!;
  }

  eventDestroy(event: bigint): void {
    this.check('eventDestroy', this.rt.bk_cuda_event_destroy(event));
  }

  // ---- operand checks ----------------------------------------------------------------

  private storage(op: string, name: string, h: Handle | null): CudaStorage {
    if (!(h instanceof CudaStorage)) throw new Error(`${op}: ${name} must be a CUDA storage, got ${describe(h)}`);
    if (h.freed) throw new Error(`${op}: ${name} (${describe(h)}) was already freed`);
    return h;
  }

  /** Starts checking the operands of one call. */
  private begin(): void {
    this.callDevice = -1;
  }

  /** The device pointer of an operand of `dtype` with at least `need` elements. */
  private p(op: string, name: string, h: Handle | null, need: number, dtype: DType = 'float32'): bigint {
    const s = this.storage(op, name, h);
    if (s.dtype !== dtype) throw new Error(`${op}: ${name} must be ${dtype}, got ${describe(s)}`);
    if (!(s.numel >= need)) throw new Error(`${op}: ${name} has ${s.numel} elements, the sizes given need ${need}`);
    if (this.callDevice < 0) this.callDevice = s.device;
    else if (s.device !== this.callDevice) {
      throw new Error(`${op}: ${name} is on cuda:${s.device} but the other operands are on cuda:${this.callDevice}`);
    }
    return s.ptr;
  }

  private pOrNull(op: string, name: string, h: Handle | null, need: number): bigint | null {
    return h === null ? null : this.p(op, name, h, need);
  }

  /** Makes the operands' device current and returns its stream: the last argument of every kernel. */
  private s(): bigint {
    const d = this.callDevice < 0 ? 0 : this.callDevice;
    this.use(d);
    return this.streamOf(d);
  }

  // ---- storage -------------------------------------------------------------------------

  alloc(dtype: DType, numel: number, deviceIndex: number): Handle {
    if (!Number.isSafeInteger(numel) || numel < 0) throw new Error(`alloc: numel must be an integer >= 0 (got ${numel})`);
    this.checkDevice('alloc', deviceIndex);
    const nbytes = numel * bytesPerElement(dtype);
    const total = (this.totalBytes[deviceIndex] ??= this.deviceInfo(deviceIndex).totalBytes);
    if (nbytes > total) {
      // Refused before asking the driver: the error names the request and the card.
      throw new Error(`alloc: ${numel} ${dtype} elements (${(nbytes / 2 ** 30).toFixed(1)} GiB) do not fit ` +
        `cuda:${deviceIndex}, which has ${(total / 2 ** 30).toFixed(1)} GiB`);
    }
    this.use(deviceIndex);
    this.out1[0] = null;
    this.check('alloc', this.rt.bk_cuda_malloc(this.out1, nbytes, deviceIndex));
    return new CudaStorage((this.out1[0] as bigint | null) ?? 0n, nbytes, dtype, numel, deviceIndex);
  }

  /** Returns the block to the allocator's cache (reused in stream order, so no wait). */
  free(handle: Handle): void {
    const s = this.storage('free', 'handle', handle);
    s.freed = true;
    if (s.ptr !== 0n) this.check('free', this.rt.bk_cuda_free(s.ptr));
  }

  upload(handle: Handle, src: HostArray): void {
    const s = this.storage('upload', 'handle', handle);
    if (src.byteLength > s.nbytes) throw new Error(`upload: ${src.length} elements do not fit a storage of ${s.numel}`);
    if (src.byteLength === 0) return;
    this.use(s.device);
    this.check('upload', this.rt.bk_cuda_memcpy_h2d(s.ptr, src, src.byteLength, this.streamOf(s.device)));
  }

  /** Copies to a new host array after the stream's queued work (reports kernels' input errors). */
  download(handle: Handle, dtype: DType, numel: number): HostArray {
    const s = this.storage('download', 'handle', handle);
    const out = hostArray(dtype, numel);
    if (out.byteLength > s.nbytes) throw new Error(`download: ${numel} elements requested from a storage of ${s.numel}`);
    this.use(s.device);
    this.check('download', this.rt.bk_cuda_memcpy_d2h(out, s.ptr, out.byteLength, this.streamOf(s.device)));
    return out;
  }

  synchronize(): void {
    if (!this.kernels) return; // nothing was ever queued
    for (let d = 0; d < this.streams.length; d++) {
      const st = this.streams[d];
      if (st === undefined) continue;
      this.use(d);
      this.check('synchronize', this.rt.bk_cuda_synchronize(st));
    }
  }

  // ---- memory movement -------------------------------------------------------------------

  fill(out: Handle, n: number, value: number): void {
    this.begin();
    this.check('fill', this.fn.bk_fill_f32(this.p('fill', 'out', out, n), n, value, this.s()));
  }

  copy(out: Handle, x: Handle, n: number): void {
    this.begin();
    this.check('copy', this.fn.bk_copy_f32(this.p('copy', 'out', out, n), this.p('copy', 'x', x, n), n, this.s()));
  }

  stridedCopy(out: Handle, x: Handle, shape: readonly number[], xStrides: readonly number[]): void {
    const op = 'stridedCopy';
    const numel = numelOfShape(op, shape);
    this.begin();
    const o = this.p(op, 'out', out, numel);
    const xs = this.p(op, 'x', x, stridedExtent(op, 'xStrides', shape, xStrides));
    for (let d = 0; d < shape.length; d++) {
      this.shape64[d] = BigInt(shape[d]!);
      this.strideA64[d] = BigInt(xStrides[d]!);
    }
    this.check(op, this.fn.bk_strided_copy_f32(o, xs, this.shape64, this.strideA64, shape.length, this.s()));
  }

  // ---- elementwise ------------------------------------------------------------------------

  binary(op: BinaryOp, out: Handle, a: Handle, aStrides: readonly number[], b: Handle,
    bStrides: readonly number[], shape: readonly number[]): void {
    const code = BINARY_CODES[op];
    if (code === undefined) throw new Error(`binary: unknown op '${String(op)}' (expected add, sub, mul, div)`);
    const numel = numelOfShape('binary', shape);
    this.begin();
    const o = this.p('binary', 'out', out, numel);
    const av = this.p('binary', 'a', a, stridedExtent('binary', 'aStrides', shape, aStrides));
    const bv = this.p('binary', 'b', b, stridedExtent('binary', 'bStrides', shape, bStrides));
    for (let d = 0; d < shape.length; d++) {
      this.shape64[d] = BigInt(shape[d]!);
      this.strideA64[d] = BigInt(aStrides[d]!);
      this.strideB64[d] = BigInt(bStrides[d]!);
    }
    this.check('binary', this.fn.bk_binary_f32(code, o, av, this.strideA64, bv, this.strideB64, this.shape64,
      shape.length, this.s()));
  }

  unary(op: UnaryOp, out: Handle, x: Handle, n: number): void {
    const code = UNARY_CODES[op];
    if (code === undefined) throw new Error(`unary: unknown op '${String(op)}' (expected neg, relu, exp, log, sqrt)`);
    this.begin();
    this.check('unary', this.fn.bk_unary_f32(code, this.p('unary', 'out', out, n), this.p('unary', 'x', x, n), n,
      this.s()));
  }

  affine(out: Handle, x: Handle, n: number, alpha: number, beta: number): void {
    this.begin();
    this.check('affine', this.fn.bk_affine_f32(this.p('affine', 'out', out, n), this.p('affine', 'x', x, n), n, alpha,
      beta, this.s()));
  }

  reluBackward(dx: Handle, dy: Handle, x: Handle, n: number): void {
    const op = 'reluBackward';
    this.begin();
    this.check(op, this.fn.bk_relu_backward_f32(this.p(op, 'dx', dx, n), this.p(op, 'dy', dy, n), this.p(op, 'x', x, n),
      n, this.s()));
  }

  // ---- reductions and products ------------------------------------------------------------

  sum(out: Handle, x: Handle, outer: number, reduce: number, inner: number): void {
    this.begin();
    this.check('sum', this.fn.bk_sum_f32(this.p('sum', 'out', out, outer * inner),
      this.p('sum', 'x', x, outer * reduce * inner), outer, reduce, inner, this.s()));
  }

  gemm(c: Handle, a: Handle, b: Handle, transA: boolean, transB: boolean,
    m: number, n: number, k: number, alpha: number, beta: number,
    lda: number, ldb: number, ldc: number,
    batch: number, strideA: number, strideB: number, strideC: number): void {
    const op = 'gemm';
    this.begin();
    const cv = this.p(op, 'c', c, matrixExtent(m, n, ldc, batch, strideC));
    const av = this.p(op, 'a', a, transA ? matrixExtent(k, m, lda, batch, strideA) : matrixExtent(m, k, lda, batch, strideA));
    const bv = this.p(op, 'b', b, transB ? matrixExtent(n, k, ldb, batch, strideB) : matrixExtent(k, n, ldb, batch, strideB));
    this.check(op, this.fn.bk_gemm_f32(cv, av, bv, transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, beta, lda, ldb, ldc,
      batch, strideA, strideB, strideC, this.s()));
  }

  // ---- softmax and losses -------------------------------------------------------------------

  softmax(out: Handle, x: Handle, rows: number, cols: number, log: boolean): void {
    const n = rows * cols;
    this.begin();
    this.check('softmax', this.fn.bk_softmax_f32(this.p('softmax', 'out', out, n), this.p('softmax', 'x', x, n), rows,
      cols, log ? 1 : 0, this.s()));
  }

  softmaxBackward(dx: Handle, dy: Handle, y: Handle, rows: number, cols: number, log: boolean): void {
    const op = 'softmaxBackward';
    const n = rows * cols;
    this.begin();
    this.check(op, this.fn.bk_softmax_backward_f32(this.p(op, 'dx', dx, n), this.p(op, 'dy', dy, n),
      this.p(op, 'y', y, n), rows, cols, log ? 1 : 0, this.s()));
  }

  /** A target out of range is reported when the result is next read (download / synchronize). */
  nllLoss(out: Handle, logp: Handle, target: Handle, rows: number, cols: number): void {
    const op = 'nllLoss';
    this.begin();
    this.check(op, this.fn.bk_nll_loss_f32(this.p(op, 'out', out, rows), this.p(op, 'logp', logp, rows * cols),
      this.p(op, 'target', target, rows, 'int32'), rows, cols, this.s()));
  }

  nllLossBackward(dlogp: Handle, dout: Handle, target: Handle, rows: number, cols: number): void {
    const op = 'nllLossBackward';
    this.begin();
    this.check(op, this.fn.bk_nll_loss_backward_f32(this.p(op, 'dlogp', dlogp, rows * cols),
      this.p(op, 'dout', dout, rows), this.p(op, 'target', target, rows, 'int32'), rows, cols, this.s()));
  }

  // ---- convolution and pooling ---------------------------------------------------------------

  conv2d(y: Handle, x: Handle, w: Handle, bias: Handle | null, g: Conv2dGeometry): void {
    const op = 'conv2d';
    const z = conv2dSizes(g);
    this.begin();
    this.check(op, this.fn.bk_conv2d_f32(this.p(op, 'y', y, z.y), this.p(op, 'x', x, z.x), this.p(op, 'w', w, z.w),
      this.pOrNull(op, 'bias', bias, g.k), packConv2d(g, this.convGeom), this.s()));
  }

  conv2dBackwardInput(dx: Handle, dy: Handle, w: Handle, g: Conv2dGeometry): void {
    const op = 'conv2dBackwardInput';
    const z = conv2dSizes(g);
    this.begin();
    this.check(op, this.fn.bk_conv2d_backward_input_f32(this.p(op, 'dx', dx, z.x), this.p(op, 'dy', dy, z.y),
      this.p(op, 'w', w, z.w), packConv2d(g, this.convGeom), this.s()));
  }

  conv2dBackwardWeight(dw: Handle, dy: Handle, x: Handle, g: Conv2dGeometry): void {
    const op = 'conv2dBackwardWeight';
    const z = conv2dSizes(g);
    this.begin();
    this.check(op, this.fn.bk_conv2d_backward_weight_f32(this.p(op, 'dw', dw, z.w), this.p(op, 'dy', dy, z.y),
      this.p(op, 'x', x, z.x), packConv2d(g, this.convGeom), this.s()));
  }

  maxPool2d(y: Handle, indices: Handle, x: Handle, g: Pool2dGeometry): void {
    const op = 'maxPool2d';
    const no = g.planes * g.oh * g.ow;
    this.begin();
    this.check(op, this.fn.bk_max_pool2d_f32(this.p(op, 'y', y, no), this.p(op, 'indices', indices, no, 'int32'),
      this.p(op, 'x', x, g.planes * g.h * g.w), packPool2d(g, this.poolGeom), this.s()));
  }

  maxPool2dBackward(dx: Handle, dy: Handle, indices: Handle, g: Pool2dGeometry): void {
    const op = 'maxPool2dBackward';
    const no = g.planes * g.oh * g.ow;
    this.begin();
    this.check(op, this.fn.bk_max_pool2d_backward_f32(this.p(op, 'dx', dx, g.planes * g.h * g.w),
      this.p(op, 'dy', dy, no), this.p(op, 'indices', indices, no, 'int32'), packPool2d(g, this.poolGeom), this.s()));
  }

  avgPool2d(y: Handle, x: Handle, g: Pool2dGeometry): void {
    const op = 'avgPool2d';
    this.begin();
    this.check(op, this.fn.bk_avg_pool2d_f32(this.p(op, 'y', y, g.planes * g.oh * g.ow),
      this.p(op, 'x', x, g.planes * g.h * g.w), packPool2d(g, this.poolGeom), this.s()));
  }

  avgPool2dBackward(dx: Handle, dy: Handle, g: Pool2dGeometry): void {
    const op = 'avgPool2dBackward';
    this.begin();
    this.check(op, this.fn.bk_avg_pool2d_backward_f32(this.p(op, 'dx', dx, g.planes * g.h * g.w),
      this.p(op, 'dy', dy, g.planes * g.oh * g.ow), packPool2d(g, this.poolGeom), this.s()));
  }

  adaptiveAvgPool2d(y: Handle, x: Handle, g: Pool2dGeometry): void {
    const op = 'adaptiveAvgPool2d';
    this.begin();
    this.check(op, this.fn.bk_adaptive_avg_pool2d_f32(this.p(op, 'y', y, g.planes * g.oh * g.ow),
      this.p(op, 'x', x, g.planes * g.h * g.w), packPool2d(g, this.poolGeom), this.s()));
  }

  adaptiveAvgPool2dBackward(dx: Handle, dy: Handle, g: Pool2dGeometry): void {
    const op = 'adaptiveAvgPool2dBackward';
    this.begin();
    this.check(op, this.fn.bk_adaptive_avg_pool2d_backward_f32(this.p(op, 'dx', dx, g.planes * g.h * g.w),
      this.p(op, 'dy', dy, g.planes * g.oh * g.ow), packPool2d(g, this.poolGeom), this.s()));
  }

  // ---- batch normalisation -------------------------------------------------------------------

  bnStats(stats: Handle, x: Handle, n: number, c: number, hw: number): void {
    const op = 'bnStats';
    this.begin();
    this.check(op, this.fn.bk_bn_stats_f32(this.p(op, 'stats', stats, 2 * c + 1), this.p(op, 'x', x, n * c * hw), n, c,
      hw, this.s()));
  }

  /** A negative or NaN rank count is reported when a result is next read. */
  bnMergeStats(mean: Handle, invstd: Handle, count: Handle, stats: Handle, ranks: number, c: number,
    eps: number, runningMean: Handle | null, runningVar: Handle | null, factor: number): void {
    const op = 'bnMergeStats';
    this.begin();
    this.check(op, this.fn.bk_bn_merge_stats_f32(this.p(op, 'mean', mean, c), this.p(op, 'invstd', invstd, c),
      this.p(op, 'count', count, 1), this.p(op, 'stats', stats, ranks * (2 * c + 1)), ranks, c, eps,
      this.pOrNull(op, 'runningMean', runningMean, c), this.pOrNull(op, 'runningVar', runningVar, c), factor,
      this.s()));
  }

  bnInvstd(invstd: Handle, variance: Handle, c: number, eps: number): void {
    const op = 'bnInvstd';
    this.begin();
    this.check(op, this.fn.bk_bn_invstd_f32(this.p(op, 'invstd', invstd, c), this.p(op, 'variance', variance, c), c,
      eps, this.s()));
  }

  bnElemt(y: Handle, x: Handle, mean: Handle, invstd: Handle, weight: Handle | null,
    bias: Handle | null, n: number, c: number, hw: number): void {
    const op = 'bnElemt';
    const total = n * c * hw;
    this.begin();
    this.check(op, this.fn.bk_bn_elemt_f32(this.p(op, 'y', y, total), this.p(op, 'x', x, total),
      this.p(op, 'mean', mean, c), this.p(op, 'invstd', invstd, c), this.pOrNull(op, 'weight', weight, c),
      this.pOrNull(op, 'bias', bias, c), n, c, hw, this.s()));
  }

  bnBackwardReduce(sums: Handle, gradWeight: Handle | null, gradBias: Handle | null, dy: Handle,
    x: Handle, mean: Handle, invstd: Handle, n: number, c: number, hw: number): void {
    const op = 'bnBackwardReduce';
    const total = n * c * hw;
    this.begin();
    this.check(op, this.fn.bk_bn_backward_reduce_f32(this.p(op, 'sums', sums, 2 * c),
      this.pOrNull(op, 'gradWeight', gradWeight, c), this.pOrNull(op, 'gradBias', gradBias, c),
      this.p(op, 'dy', dy, total), this.p(op, 'x', x, total), this.p(op, 'mean', mean, c),
      this.p(op, 'invstd', invstd, c), n, c, hw, this.s()));
  }

  bnBackwardElemt(dx: Handle, dy: Handle, x: Handle, mean: Handle, invstd: Handle,
    weight: Handle | null, sums: Handle, count: Handle, n: number, c: number, hw: number): void {
    const op = 'bnBackwardElemt';
    const total = n * c * hw;
    this.begin();
    this.check(op, this.fn.bk_bn_backward_elemt_f32(this.p(op, 'dx', dx, total), this.p(op, 'dy', dy, total),
      this.p(op, 'x', x, total), this.p(op, 'mean', mean, c), this.p(op, 'invstd', invstd, c),
      this.pOrNull(op, 'weight', weight, c), this.p(op, 'sums', sums, 2 * c), this.p(op, 'count', count, 1), n, c, hw,
      this.s()));
  }

  // ---- optimiser -------------------------------------------------------------------------------

  sgd(param: Handle, momentumBuf: Handle | null, grad: Handle, n: number, lr: number,
    momentum: number, dampening: number, weightDecay: number, nesterov: boolean,
    firstStep: boolean): void {
    const op = 'sgd';
    this.begin();
    this.check(op, this.fn.bk_sgd_f32(this.p(op, 'param', param, n), this.pOrNull(op, 'momentumBuf', momentumBuf, n),
      this.p(op, 'grad', grad, n), n, lr, momentum, dampening, weightDecay, nesterov ? 1 : 0, firstStep ? 1 : 0,
      this.s()));
  }
}

/**
 * The process-wide CUDA backend (registered with core by index.ts). Nothing is
 * loaded until a cuda storage is first allocated.
 */
export const cudaBackend = new CudaBackend();
