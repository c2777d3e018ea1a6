/**
 * The CUDA library (libbagua_kernels_cuda.so) through koffi: the kernels of
 * bagua_kernels.h plus the CUDA-only runtime of native/cuda/bagua_cuda_runtime.h.
 *
 * Pointers: koffi 3 represents pointers as BigInt, and a BigInt is accepted
 * wherever a pointer parameter is declared. So the kernels keep the exact C
 * signatures of the header (`float *out`, ...) and device pointers are passed
 * as BigInt values (the storage handles hold them as `ptr: bigint`), NULL as
 * `null`; host arrays (shapes, strides, geometry) are passed as typed arrays,
 * which koffi hands over by pointer without copying. Output pointers
 * (`void **ptr`) come back as BigInt in a one-element array.
 */
import { existsSync } from 'node:fs';
import { KERNEL_NAMES, KERNEL_PARAMS, type KernelFn, type KernelName } from './cpu-backend.js';
import { libraryCandidates, loadKernelLibrary, type LoadedLibrary, type NativeLibrarySpec } from './load-library.js';

export const CUDA_LIBRARY: NativeLibrarySpec = {
  name: 'CUDA kernels',
  fileName: 'libbagua_kernels_cuda.so',
  envVar: 'BAGUA_KERNELS_CUDA_LIB',
  buildHint: 'pnpm --filter @bagua/kernels native (needs nvcc on PATH)',
};

/** The CUDA-only functions (bagua_cuda_runtime.h). */
const RUNTIME_SIGNATURES = {
  bk_cuda_device_count: 'int bk_cuda_device_count(_Out_ int32_t *count)',
  bk_cuda_versions: 'int bk_cuda_versions(_Out_ int32_t *driver, _Out_ int32_t *runtime)',
  bk_cuda_device_info: 'int bk_cuda_device_info(int32_t device, _Out_ uint8_t *name, int32_t name_len, ' +
    '_Out_ int32_t *cc_major, _Out_ int32_t *cc_minor, _Out_ int64_t *total_bytes, _Out_ int32_t *sm_count)',
  bk_cuda_set_device: 'int bk_cuda_set_device(int32_t device)',
  bk_cuda_get_device: 'int bk_cuda_get_device(_Out_ int32_t *device)',
  bk_cuda_malloc: 'int bk_cuda_malloc(_Out_ void **ptr, int64_t nbytes, int32_t device)',
  bk_cuda_free: 'int bk_cuda_free(void *ptr)',
  bk_cuda_empty_cache: 'int bk_cuda_empty_cache(int32_t device)',
  bk_cuda_memory_stats: 'int bk_cuda_memory_stats(int32_t device, _Out_ int64_t *allocated, _Out_ int64_t *reserved)',
  bk_cuda_stream: 'int bk_cuda_stream(int32_t device, _Out_ void **stream)',
  bk_cuda_memcpy_h2d: 'int bk_cuda_memcpy_h2d(void *dst, const void *src, int64_t nbytes, void *stream)',
  bk_cuda_memcpy_d2h: 'int bk_cuda_memcpy_d2h(void *dst, const void *src, int64_t nbytes, void *stream)',
  bk_cuda_memcpy_d2d: 'int bk_cuda_memcpy_d2d(void *dst, const void *src, int64_t nbytes, void *stream)',
  bk_cuda_synchronize: 'int bk_cuda_synchronize(void *stream)',
  bk_cuda_cublas_info: 'int bk_cuda_cublas_info(_Out_ uint8_t *path, int32_t path_len)',
  bk_cuda_event_create: 'int bk_cuda_event_create(_Out_ void **event)',
  bk_cuda_event_record: 'int bk_cuda_event_record(void *event, void *stream)',
  bk_cuda_event_elapsed: 'int bk_cuda_event_elapsed(_Out_ float *ms, void *start, void *end)',
  bk_cuda_event_destroy: 'int bk_cuda_event_destroy(void *event)',
} as const;

export type RuntimeName = keyof typeof RUNTIME_SIGNATURES;

export interface CudaKernels {
  readonly library: LoadedLibrary;
  readonly fn: Readonly<Record<KernelName, KernelFn>>;
  readonly rt: Readonly<Record<RuntimeName, KernelFn>>;
  readonly deviceCount: number;
}

export interface CudaDeviceInfo {
  index: number;
  name: string;
  computeCapability: string;
  totalBytes: number;
  smCount: number;
}

/** Loads the CUDA library and declares every function (no device is touched). */
export function loadCudaLibrary(candidates?: readonly string[]): Omit<CudaKernels, 'deviceCount'> {
  const library = loadKernelLibrary(CUDA_LIBRARY, candidates);
  const name = library.lib.func('const char *bk_backend_name(void)')() as string;
  if (name !== 'cuda') {
    throw new Error(`@bagua/kernels: ${library.path} is the '${name}' kernel library, not the CUDA one`);
  }
  const fn = {} as Record<KernelName, KernelFn>;
  for (const k of KERNEL_NAMES) fn[k] = library.lib.func(`int ${k}(${KERNEL_PARAMS[k]}, void *stream)`) as KernelFn;
  const rt = {} as Record<RuntimeName, KernelFn>;
  for (const k of Object.keys(RUNTIME_SIGNATURES) as RuntimeName[]) {
    rt[k] = library.lib.func(RUNTIME_SIGNATURES[k]) as KernelFn;
  }
  return { library, fn, rt };
}

/**
 * Loads the library and asks the driver for devices. Throws an Error naming
 * what is missing: the library (with the paths tried), the driver or a device
 * (with the CUDA runtime's reason and the library's path).
 */
export function loadCudaKernels(candidates?: readonly string[]): CudaKernels {
  const k = loadCudaLibrary(candidates);
  const count = [0];
  if (k.rt.bk_cuda_device_count(count) !== 0) {
    throw new Error(`@bagua/kernels: ${k.library.lastError()} (library ${k.library.path})`);
  }
  return { ...k, deviceCount: count[0]! };
}

export interface CudaProbe {
  available: boolean;
  /** Why not, when not available; the library path and device count when it is. */
  reason: string;
  devices: number;
  libraryPath: string | null;
}

/**
 * Whether CUDA can be used here, without throwing: for tests that skip loudly,
 * and for tools that print what is missing.
 */
export function probeCuda(candidates?: readonly string[]): CudaProbe {
  const tried = candidates ?? libraryCandidates(CUDA_LIBRARY);
  const path = tried.find((p) => existsSync(p)) ?? null;
  try {
    const k = loadCudaKernels(candidates);
    return { available: true, reason: `${k.deviceCount} device(s), library ${k.library.path}`, devices: k.deviceCount,
      libraryPath: k.library.path };
  } catch (e) {
    return { available: false, reason: (e as Error).message, devices: 0, libraryPath: path };
  }
}

/** Decodes a NUL-terminated byte buffer. */
export function cString(buf: Uint8Array): string {
  const end = buf.indexOf(0);
  return Buffer.from(buf.subarray(0, end < 0 ? buf.length : end)).toString('utf8');
}
