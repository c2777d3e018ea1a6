/**
 * core's Backend on CUDA devices: storages are device memory from the CUDA
 * library's caching allocator, and every kernel of bagua_kernels.h runs on the
 * library's stream of the storage's device.
 *
 * Handles are CudaStorage objects: a device pointer (BigInt), its byte size,
 * dtype, element count and device index. The kernel methods are NativeBackend's;
 * the CUDA operand policy here checks that each storage has the right dtype, is
 * large enough for the sizes given, lives on the same device as the other
 * operands and was not freed, then passes its pointer, makes that device current
 * and passes its stream.
 *
 * Nothing is loaded until the first allocation: importing @bagua/kernels on a
 * machine without a GPU never fails; using a cuda device there throws an
 * Error that says what is missing (library, driver, device) and where it looked.
 */
import { bytesPerElement, hostArray, type Backend, type DType, type Handle, type HostArray } from '@bagua/core';
import {
  cString, loadCudaKernels, type CudaDeviceInfo, type CudaKernels, type RuntimeName,
} from './cuda-native.js';
import type { KernelFn, KernelName, OperandDType } from './kernel-table.js';
import { NativeBackend } from './native-backend.js';
import { KernelError } from './status.js';

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

export class CudaBackend extends NativeBackend implements Backend {
  readonly deviceType = 'cuda' as const;

  private kernels: CudaKernels | null = null;
  private loadError: Error | null = null;
  private readonly streams: bigint[] = [];
  private callDevice = -1; // device of the operands of the call being prepared
  private readonly out1: unknown[] = [null];
  private readonly totalBytes: number[] = [];

  /** `candidates` overrides where the library is looked for (see libraryCandidates). */
  constructor(private readonly candidates?: readonly string[]) {
    super();
  }

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

  private get rt(): Readonly<Record<RuntimeName, KernelFn>> {
    return this.native.rt;
  }

  protected check(op: string, rc: number): void {
    if (rc !== 0) throw new KernelError(`${op} (cuda): ${this.native.library.lastError()}`, rc);
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

  // ---- operand policy (see NativeBackend) --------------------------------------------

  private storage(op: string, name: string, h: Handle | null): CudaStorage {
    if (!(h instanceof CudaStorage)) throw new Error(`${op}: ${name} must be a CUDA storage, got ${describe(h)}`);
    if (h.freed) throw new Error(`${op}: ${name} (${describe(h)}) was already freed`);
    return h;
  }

  protected kernelFn(name: KernelName): KernelFn {
    return this.native.fn[name];
  }

  protected beginCall(): void {
    this.callDevice = -1;
  }

  /** The device pointer of an operand of `dtype` with at least `need` elements, on the call's device. */
  protected operand(op: string, name: string, h: Handle | null, need: number, dtype: OperandDType): bigint {
    const s = this.storage(op, name, h);
    if (s.dtype !== dtype) throw new Error(`${op}: ${name} must be ${dtype}, got ${describe(s)}`);
    if (!(s.numel >= need)) throw new Error(`${op}: ${name} has ${s.numel} elements, the sizes given need ${need}`);
    if (this.callDevice < 0) this.callDevice = s.device;
    else if (s.device !== this.callDevice) {
      throw new Error(`${op}: ${name} is on cuda:${s.device} but the other operands are on cuda:${this.callDevice}`);
    }
    return s.ptr;
  }

  /** Makes the operands' device current and returns its stream: the last argument of every kernel. */
  protected streamArg(): bigint {
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

  /** NHWC pooling (the pooling kernels' math with the pixels c apart); the CUDA convolution computes NCHW only. */
  nativeChannelsLast(kind: 'conv2d' | 'pool2d'): boolean {
    return kind === 'pool2d';
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
}

/**
 * The process-wide CUDA backend (registered with core by index.ts). Nothing is
 * loaded until a cuda storage is first allocated.
 */
export const cudaBackend = new CudaBackend();
