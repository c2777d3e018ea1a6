/**
 * core's Backend on the CPU: handles are the host typed arrays themselves, and
 * kernels are the C functions of libbagua_kernels_cpu.so called through koffi
 * with the typed arrays passed by pointer (no copies). The kernel methods are
 * NativeBackend's; this file is the CPU's operand policy (a storage is a typed
 * array of the operand's dtype, long enough for the sizes given), its storage
 * (the host caching allocator) and the library's own settings (kernel threads).
 */
import type { Backend, DType, Handle, HostArray } from '@bagua/core';
import os from 'node:os';
import { HostAllocator } from './host-allocator.js';
import { declareKernels, type KernelFn, type KernelName, type OperandDType } from './kernel-table.js';
import { CPU_LIBRARY, loadKernelLibrary, type LoadedLibrary } from './load-library.js';
import { NativeBackend } from './native-backend.js';
import { KernelError } from './status.js';

export { KERNEL_NAMES, KERNEL_PARAMS, type KernelFn, type KernelName } from './kernel-table.js';

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
  const fn = declareKernels(library.lib);
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

function describe(h: unknown): string {
  if (h === null || h === undefined) return String(h);
  if (ArrayBuffer.isView(h)) return `${h.constructor.name}(${(h as Float32Array).length})`;
  return typeof h === 'object' ? (h.constructor?.name ?? 'object') : typeof h;
}

/** The typed array a CPU storage of each operand dtype is. */
const HOST_ARRAYS = { float32: Float32Array, int32: Int32Array, float16: Uint16Array, bfloat16: Uint16Array } as const;

/**
 * The CPU's operand policy: a storage is the host typed array itself, of the
 * operand's dtype and long enough for the sizes given; there is no stream.
 */
export class CpuBackend extends NativeBackend implements Backend {
  readonly deviceType = 'cpu' as const;

  private kernels: CpuKernels | null = null;
  private readonly allocator = new HostAllocator();

  /** `candidates` overrides where the library is looked for (see libraryCandidates). */
  constructor(private readonly candidates?: readonly string[]) {
    super();
  }

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

  /** NHWC pooling always; NHWC convolution where oneDNN runs in this thread (the built-in one computes NCHW). */
  nativeChannelsLast(kind: 'conv2d' | 'pool2d'): boolean {
    return kind === 'pool2d' || this.native.control.useDnnl(-1) === 1;
  }

  // ---- operand policy (see NativeBackend) ------------------------------------------

  protected kernelFn(name: KernelName): KernelFn {
    return this.native.fn[name];
  }

  protected beginCall(): void {
    // host arrays: nothing to track across the operands of a call
  }

  protected operand(op: string, name: string, h: Handle | null, need: number, dtype: OperandDType): unknown {
    const Ctor = HOST_ARRAYS[dtype];
    if (!(h instanceof Ctor)) {
      const article = /^[aeiou]/.test(dtype) ? 'an' : 'a';
      throw new Error(`${op}: ${name} must be ${article} ${dtype} CPU storage (${Ctor.name}), got ${describe(h)}`);
    }
    if (!(h.length >= need)) {
      throw new Error(`${op}: ${name} has ${h.length} elements, the sizes given need ${need}`);
    }
    return h;
  }

  protected streamArg(): null {
    return null; // the CPU library ignores it
  }

  /** Every library call goes through here: a status other than BK_OK is described by bk_last_error. */
  protected check(op: string, rc: number): void {
    if (rc !== 0) throw new KernelError(`${op}: ${this.native.library.lastError()}`, rc);
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
}

/** The process-wide CPU backend, registered with core when the package is imported. */
export const cpuBackend = new CpuBackend();
