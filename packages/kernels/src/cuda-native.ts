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
import { join } from 'node:path';
import { findInWheels, type WheelSearch } from '@bagua/nvidia-libs';
import koffi from 'koffi';
import { declareKernels, type KernelFn, type KernelName } from './kernel-table.js';
import { libraryCandidates, loadKernelLibrary, type LoadedLibrary, type NativeLibrarySpec } from './load-library.js';

export const CUDA_LIBRARY: NativeLibrarySpec = {
  name: 'CUDA kernels',
  fileName: 'libbagua_kernels_cuda.so',
  envVar: 'BAGUA_KERNELS_CUDA_LIB',
  buildHint: 'pnpm build:cuda (needs nvcc on PATH)',
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
  bk_cuda_memory_stats: 'int bk_cuda_memory_stats(int32_t device, _Out_ int64_t *allocated, _Out_ int64_t *reserved, ' +
    '_Out_ int64_t *system_allocs)',
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

// ---- cuBLAS in Python's site-packages -------------------------------------------
//
// The CUDA library finds cuBLAS itself (native/cuda/cublas.cu: BAGUA_CUBLAS_LIB,
// LD_LIBRARY_PATH, CUDA_HOME/CUDA_PATH, /usr/local/cuda, the wheels under a few fixed
// prefixes and VIRTUAL_ENV, then the loader). A machine whose only cuBLAS is the one
// PyTorch's wheels brought (site-packages/nvidia/cu13/lib for CUDA 13,
// nvidia/cublas/lib for CUDA 12) in a virtual environment that `python3` runs without
// VIRTUAL_ENV set is missed by that search. So before the library is loaded, when
// none of the places the native search looks at first holds a cuBLAS, the
// site-packages of that Python are searched here and the file found is handed to the
// native search through BAGUA_CUBLAS_LIB (set in the process environment with libc's
// setenv, which the native getenv sees from any thread).

/**
 * Where cuBLAS sits under site-packages/nvidia/: the CUDA 13 wheel first, then CUDA 12's
 * (the reverse of WHEEL_DIRS.cublas, which the NCCL/cudart search uses).
 */
export const CUBLAS_WHEEL_DIRS = ['cu13', 'cublas'] as const;
const CUBLAS_SONAMES = ['libcublas.so.13', 'libcublas.so.12'] as const;

export type CublasSearch = WheelSearch;

/** Looks for libcublas.so.13 / .12 under nvidia/cu13/lib and nvidia/cublas/lib of each site-packages directory. */
export function findCublasInPython(env: NodeJS.ProcessEnv = process.env, askPython = true): CublasSearch {
  return findInWheels({ dirs: CUBLAS_WHEEL_DIRS, names: CUBLAS_SONAMES, env, askPython });
}

/** Directories the native search looks at before any wheel (cublas.cu's order). */
export function cublasSystemDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs = (env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  for (const v of ['CUDA_HOME', 'CUDA_PATH'] as const) if (env[v]) dirs.push(join(env[v]!, 'lib64'));
  dirs.push('/usr/local/cuda/lib64', '/usr/local/cuda/targets/x86_64-linux/lib', '/usr/local/cuda/targets/sbsa-linux/lib');
  return dirs;
}

/** The cuBLAS the native search would take before looking at any wheel, or null. */
export function cublasBeforeWheels(env: NodeJS.ProcessEnv = process.env, dirs = cublasSystemDirs(env)): string | null {
  for (const d of dirs) for (const so of CUBLAS_SONAMES) if (existsSync(join(d, so))) return join(d, so);
  return null;
}

export interface CublasPreparation {
  /** What was decided, in words (for logs and the gpu-check summary). */
  note: string;
  /** The file handed over through BAGUA_CUBLAS_LIB, or null when nothing was set. */
  set: string | null;
  /** The site-packages search, when it ran. */
  search: CublasSearch | null;
}

let cublasPreparation: CublasPreparation | undefined;

type SetenvFn = (name: string, value: string, overwrite: number) => number;
type GetenvFn = (name: string) => string | null;
let libcSetenv: SetenvFn | null | undefined;
let libcGetenv: GetenvFn | null | undefined;
function loadLibcEnv(): void {
  if (libcSetenv !== undefined) return;
  try {
    const libc = koffi.load('libc.so.6');
    libcSetenv = libc.func('int setenv(const char *name, const char *value, int overwrite)') as unknown as SetenvFn;
    libcGetenv = libc.func('const char *getenv(const char *name)') as unknown as GetenvFn;
  } catch {
    libcSetenv = null;
    libcGetenv = null;
  }
}

/**
 * Sets a variable in the process environment that native code reads with getenv.
 * On the main thread process.env does that; a worker thread's process.env is a
 * private copy, so libc's setenv is called as well.
 */
function setProcessEnv(name: string, value: string): void {
  process.env[name] = value;
  loadLibcEnv();
  if (libcSetenv && libcGetenv && libcGetenv(name) !== value) libcSetenv(name, value, 1);
}

/**
 * Points the CUDA library's cuBLAS search at Python's site-packages when it would
 * otherwise miss them (see above). Runs once per thread, before the library is loaded;
 * `env` and `dirs` are for tests (no environment is changed when `env` is not process.env).
 */
export function prepareCublasSearch(env: NodeJS.ProcessEnv = process.env, dirs?: string[]): CublasPreparation {
  if (env === process.env && cublasPreparation) return cublasPreparation;
  let prep: CublasPreparation;
  const explicit = env.BAGUA_CUBLAS_LIB;
  const before = explicit ? null : cublasBeforeWheels(env, dirs ?? cublasSystemDirs(env));
  if (explicit) {
    prep = { note: `BAGUA_CUBLAS_LIB=${explicit} (set by the caller)`, set: null, search: null };
  } else if (before) {
    prep = { note: `${before} (ahead of any Python wheel in the CUDA library's search)`, set: null, search: null };
  } else {
    const search = findCublasInPython(env);
    if (search.found) {
      prep = { note: `${search.found} (Python site-packages, via BAGUA_CUBLAS_LIB)`, set: search.found, search };
      if (env === process.env) setProcessEnv('BAGUA_CUBLAS_LIB', search.found);
    } else {
      prep = {
        note: `none in Python's site-packages (${search.sitePackages.dirs.length} director(ies): ` +
          `${search.sitePackages.sources.join(', ') || 'no python3, no BAGUA_PYTHON_SITE_PACKAGES, no VIRTUAL_ENV'})`,
        set: null, search,
      };
    }
  }
  if (env === process.env) cublasPreparation = prep;
  return prep;
}

/** What prepareCublasSearch decided in this thread (null before the CUDA library was loaded). */
export function cublasPreparationNote(): CublasPreparation | null {
  return cublasPreparation ?? null;
}

/** Appends the site-packages files looked at to a 'cuBLAS was not found' message, so it names every path tried. */
function withPythonPaths(message: string): string {
  const prep = cublasPreparation;
  if (!/cuBLAS \(libcublas[^)]*\) was not found/.test(message) || !prep?.search || message.includes('Python site-packages')) {
    return message;
  }
  const { tried, sitePackages } = prep.search;
  return `${message}\nPython site-packages (${sitePackages.sources.join(', ') || 'none known: no python3, ' +
    'no BAGUA_PYTHON_SITE_PACKAGES, no VIRTUAL_ENV'}):` + tried.map((p) => `\n  ${p} (absent)`).join('');
}

/** Loads the CUDA library and declares every function (no device is touched). */
export function loadCudaLibrary(candidates?: readonly string[]): Omit<CudaKernels, 'deviceCount'> {
  prepareCublasSearch();
  const loaded = loadKernelLibrary(CUDA_LIBRARY, candidates);
  const library: LoadedLibrary = { ...loaded, lastError: () => withPythonPaths(loaded.lastError()) };
  const name = library.lib.func('const char *bk_backend_name(void)')() as string;
  if (name !== 'cuda') {
    throw new Error(`@bagua/kernels: ${library.path} is the '${name}' kernel library, not the CUDA one`);
  }
  const fn = declareKernels(library.lib);
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
