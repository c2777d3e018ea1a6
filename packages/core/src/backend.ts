import type { DType, HostArray } from './dtype.js';
import type { DeviceType } from './device.js';

/**
 * A backend's handle to one storage: a typed array on the CPU, a device
 * pointer on CUDA. Core never looks inside; it only passes handles back.
 */
export type Handle = object;

/** conv2d geometry; the C ABI takes it as int32[16] in this order. */
export interface Conv2dGeometry {
  n: number; c: number; h: number; w: number;
  k: number; r: number; s: number; oh: number; ow: number;
  strideH: number; strideW: number; padH: number; padW: number;
  dilH: number; dilW: number; groups: number;
  /** x and y (dx, dy) stored NHWC (the weight stays [K, C/groups, R, S]); only to a backend whose nativeChannelsLast says so. */
  channelsLast?: boolean;
}

/** Pooling geometry over [planes, h, w]; the C ABI takes it as int32[14] in this order. */
export interface Pool2dGeometry {
  planes: number; h: number; w: number; oh: number; ow: number;
  kh: number; kw: number; strideH: number; strideW: number; padH: number; padW: number;
  dilH: number; dilW: number; countIncludePad: boolean;
  /** planes stored NHWC, `channels` per image (indices too); only to a backend whose nativeChannelsLast says so. */
  channelsLast?: boolean; channels?: number;
}

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div';
export type UnaryOp = 'neg' | 'relu' | 'exp' | 'log' | 'sqrt';

/**
 * What a device offers core: storage, and the kernels of the C ABI in
 * packages/kernels/native/include/bagua_kernels.h, one method each, same
 * argument order (outputs first). Kernels write into storages core allocated;
 * gradients are defined once in core on top of these.
 */
export interface Backend {
  readonly deviceType: DeviceType;

  /** From the device's caching allocator; a request the device cannot hold throws before allocating. */
  alloc(dtype: DType, numel: number, deviceIndex: number): Handle;
  /** Back to the caching allocator, at once (core calls it when the last reference goes). */
  free(handle: Handle): void;
  /** The caching allocator's reserve (bytes) and how many blocks it got fresh from the OS or driver. */
  allocatorStats(deviceIndex: number): { reserved: number; systemAllocs: number };
  /** Returns the cached free blocks to the OS or driver. */
  emptyCache(deviceIndex: number): void;
  /**
   * For the collector's safety net: a value, holding no reference to the memory,
   * with which `reclaim` takes back a storage whose tensors were dropped unreleased.
   */
  reclaimToken(handle: Handle): unknown;
  reclaim(token: unknown): void;
  /** Kernel threads of the calling thread (CPU backends; others ignore it). */
  setNumThreads?(n: number): void;
  getNumThreads?(): number;
  /** host -> storage (src.length elements, starting at element 0) */
  upload(handle: Handle, src: HostArray): void;
  /** storage -> a new host array (waits for pending work on the device) */
  download(handle: Handle, dtype: DType, numel: number): HostArray;
  /** Waits for all queued work (a no-op on the CPU). */
  synchronize(): void;
  /** Host-memory backends: the storage itself as a typed array (no copy), for in-place collectives. */
  hostView?(handle: Handle): HostArray;
  /** Device backends: the device address and the stream that orders work on it (for NCCL). */
  bufferInfo?(handle: Handle): { ptr: bigint; device: number; stream: bigint };

  fill(out: Handle, n: number, value: number): void;
  copy(out: Handle, x: Handle, n: number): void;
  stridedCopy(out: Handle, x: Handle, shape: readonly number[], xStrides: readonly number[]): void;
  /**
   * float32 <-> float16 / bfloat16 (round to nearest even). Optional, as every half-type
   * kernel below: a backend without them refuses those dtypes by name.
   */
  castF32ToBf16?(out: Handle, x: Handle, n: number): void;
  castF32ToF16?(out: Handle, x: Handle, n: number): void;
  castBf16ToF32?(out: Handle, x: Handle, n: number): void;
  castF16ToF32?(out: Handle, x: Handle, n: number): void;

  binary(op: BinaryOp, out: Handle, a: Handle, aStrides: readonly number[], b: Handle,
    bStrides: readonly number[], shape: readonly number[]): void;
  unary(op: UnaryOp, out: Handle, x: Handle, n: number): void;
  affine(out: Handle, x: Handle, n: number, alpha: number, beta: number): void;
  reluBackward(dx: Handle, dy: Handle, x: Handle, n: number): void;

  sum(out: Handle, x: Handle, outer: number, reduce: number, inner: number): void;
  gemm(c: Handle, a: Handle, b: Handle, transA: boolean, transB: boolean,
    m: number, n: number, k: number, alpha: number, beta: number,
    lda: number, ldb: number, ldc: number,
    batch: number, strideA: number, strideB: number, strideC: number): void;

  softmax(out: Handle, x: Handle, rows: number, cols: number, log: boolean): void;
  softmaxBackward(dx: Handle, dy: Handle, y: Handle, rows: number, cols: number, log: boolean): void;
  /** target is an int32 storage */
  nllLoss(out: Handle, logp: Handle, target: Handle, rows: number, cols: number): void;
  nllLossBackward(dlogp: Handle, dout: Handle, target: Handle, rows: number, cols: number): void;

  /**
   * Whether this backend's conv2d or pooling kernels read and write channels-last (NHWC)
   * storage themselves when the geometry says `channelsLast`, in the calling thread (the
   * CPU's convolution only where oneDNN runs); absent or false: core permutes for them.
   */
  nativeChannelsLast?(kind: 'conv2d' | 'pool2d'): boolean;
  conv2d(y: Handle, x: Handle, w: Handle, bias: Handle | null, g: Conv2dGeometry): void;
  conv2dBackwardInput(dx: Handle, dy: Handle, w: Handle, g: Conv2dGeometry): void;
  conv2dBackwardWeight(dw: Handle, dy: Handle, x: Handle, g: Conv2dGeometry): void;
  /** indices is an int32 storage */
  maxPool2d(y: Handle, indices: Handle, x: Handle, g: Pool2dGeometry): void;
  maxPool2dBackward(dx: Handle, dy: Handle, indices: Handle, g: Pool2dGeometry): void;
  avgPool2d(y: Handle, x: Handle, g: Pool2dGeometry): void;
  avgPool2dBackward(dx: Handle, dy: Handle, g: Pool2dGeometry): void;
  adaptiveAvgPool2d(y: Handle, x: Handle, g: Pool2dGeometry): void;
  adaptiveAvgPool2dBackward(dx: Handle, dy: Handle, g: Pool2dGeometry): void;

  /** stats: float[2c + 2] = mean, biased var, count, tag (written as given) */
  bnStats(stats: Handle, x: Handle, n: number, c: number, hw: number, tag: number): void;
  /** stats: `ranks` records `stride` (>= 2c + 1) floats apart, each mean, var, count (the rest unread) */
  bnMergeStats(mean: Handle, invstd: Handle, count: Handle, stats: Handle, ranks: number, c: number, stride: number,
    eps: number, runningMean: Handle | null, runningVar: Handle | null, factor: number): void;
  /**
   * sums: float[2c + 1 + ranks] = sum(x - shift), sum((x - shift)^2) per channel, count, then
   * `ranks` tag slots (tag in slot `rank`, 0 elsewhere): the record SyncBatchNorm all-reduces.
   */
  bnStatsSums(sums: Handle, x: Handle, shift: Handle | null, n: number, c: number, hw: number, ranks: number,
    rank: number, tag: number): void;
  /** Merge of all-reduced sums (S1, S2, count); shift (inout) becomes the merged mean when the count is > 0. */
  bnMergeSums(mean: Handle, invstd: Handle, count: Handle, shift: Handle, sums: Handle, c: number, eps: number,
    runningMean: Handle | null, runningVar: Handle | null, factor: number): void;
  bnInvstd(invstd: Handle, variance: Handle, c: number, eps: number): void;
  bnElemt(y: Handle, x: Handle, mean: Handle, invstd: Handle, weight: Handle | null,
    bias: Handle | null, n: number, c: number, hw: number): void;
  /** sums: float[2c] = sum_dy, sum_dy_xmu */
  bnBackwardReduce(sums: Handle, gradWeight: Handle | null, gradBias: Handle | null, dy: Handle,
    x: Handle, mean: Handle, invstd: Handle, n: number, c: number, hw: number): void;
  bnBackwardElemt(dx: Handle, dy: Handle, x: Handle, mean: Handle, invstd: Handle,
    weight: Handle | null, sums: Handle, count: Handle, n: number, c: number, hw: number): void;
  /**
   * The five kernels above on bfloat16 / float16 x, y, dy and dx (raw-bit storages of that
   * dtype); statistics, records, sums and per-channel operands stay float32. Optional.
   */
  bnStatsBf16?(stats: Handle, x: Handle, n: number, c: number, hw: number, tag: number): void;
  bnStatsSumsBf16?(sums: Handle, x: Handle, shift: Handle | null, n: number, c: number, hw: number, ranks: number,
    rank: number, tag: number): void;
  bnElemtBf16?(y: Handle, x: Handle, mean: Handle, invstd: Handle, weight: Handle | null,
    bias: Handle | null, n: number, c: number, hw: number): void;
  bnBackwardReduceBf16?(sums: Handle, gradWeight: Handle | null, gradBias: Handle | null, dy: Handle,
    x: Handle, mean: Handle, invstd: Handle, n: number, c: number, hw: number): void;
  bnBackwardElemtBf16?(dx: Handle, dy: Handle, x: Handle, mean: Handle, invstd: Handle,
    weight: Handle | null, sums: Handle, count: Handle, n: number, c: number, hw: number): void;
  bnStatsF16?(stats: Handle, x: Handle, n: number, c: number, hw: number, tag: number): void;
  bnStatsSumsF16?(sums: Handle, x: Handle, shift: Handle | null, n: number, c: number, hw: number, ranks: number,
    rank: number, tag: number): void;
  bnElemtF16?(y: Handle, x: Handle, mean: Handle, invstd: Handle, weight: Handle | null,
    bias: Handle | null, n: number, c: number, hw: number): void;
  bnBackwardReduceF16?(sums: Handle, gradWeight: Handle | null, gradBias: Handle | null, dy: Handle,
    x: Handle, mean: Handle, invstd: Handle, n: number, c: number, hw: number): void;
  bnBackwardElemtF16?(dx: Handle, dy: Handle, x: Handle, mean: Handle, invstd: Handle,
    weight: Handle | null, sums: Handle, count: Handle, n: number, c: number, hw: number): void;

  sgd(param: Handle, momentumBuf: Handle | null, grad: Handle, n: number, lr: number,
    momentum: number, dampening: number, weightDecay: number, nesterov: boolean,
    firstStep: boolean): void;
  /**
   * PyTorch's Adam / AdamW step on one parameter, in place (bk_adam_f32): paramScale is AdamW's
   * 1 - lr * wd (1 for Adam), weightDecay Adam's L2 term (0 for AdamW); stepSize = lr / (1 - beta1^t)
   * and biasCorrection2Sqrt = sqrt(1 - beta2^t) come from the caller, in double.
   */
  adam(param: Handle, expAvg: Handle, expAvgSq: Handle, maxExpAvgSq: Handle | null, grad: Handle, n: number,
    beta1: number, beta2: number, oneMinusBeta1: number, oneMinusBeta2: number, eps: number, weightDecay: number,
    paramScale: number, stepSize: number, biasCorrection2Sqrt: number, amsgrad: boolean, maximize: boolean): void;
  /**
   * LayerNorm / GroupNorm over `rows` contiguous rows of `len` (bk_row_norm_f32): per-row mean and
   * rstd out; y = (x - mean) * rstd * w[a] + b[a], a = (r % groups) * (len / inner) + p / inner.
   */
  rowNorm(y: Handle, mean: Handle, rstd: Handle, x: Handle, weight: Handle | null, bias: Handle | null,
    rows: number, len: number, groups: number, inner: number, eps: number): void;
  /** Its backward: dx, and dweight / dbias summed per affine entry (each nullable). */
  rowNormBackward(dx: Handle | null, dweight: Handle | null, dbias: Handle | null, dy: Handle, x: Handle,
    mean: Handle, rstd: Handle, weight: Handle | null, rows: number, len: number, groups: number, inner: number): void;
}

const backends = new Map<DeviceType, Backend>();

/** Backends register themselves (as TensorFlow.js backends do), keeping core free of native code. */
export function registerBackend(backend: Backend): void {
  backends.set(backend.deviceType, backend);
}

export function getBackend(type: DeviceType): Backend {
  const b = backends.get(type);
  if (!b) {
    throw new Error(
      `no backend registered for device type '${type}': import '@bagua/kernels' ` +
        `(or 'bagua') to register the ${type} backend`);
  }
  return b;
}

export function hasBackend(type: DeviceType): boolean {
  return backends.has(type);
}
