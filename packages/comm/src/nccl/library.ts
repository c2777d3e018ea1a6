/**
 * koffi bindings to NCCL (libnccl.so.2) and the few CUDA runtime calls the
 * 'nccl' backend needs (libcudart: stream polling, device selection,
 * scratch memory, and the communication stream and events of allReduceAsync). Both are found at run time; see find.ts.
 */
import koffi, { type LibraryHandle, type TypeObject } from 'koffi';
import { findLibrary, type FindLibraryOptions } from './find.js';

type Fn = ReturnType<LibraryHandle['func']>;

/** ncclResult_t */
export const NCCL_RESULT: Readonly<Record<number, string>> = {
  0: 'ncclSuccess',
  1: 'ncclUnhandledCudaError',
  2: 'ncclSystemError',
  3: 'ncclInternalError',
  4: 'ncclInvalidArgument',
  5: 'ncclInvalidUsage',
  6: 'ncclRemoteError',
  7: 'ncclInProgress',
};
export const NCCL_SUCCESS = 0;
export const NCCL_IN_PROGRESS = 7;

/** ncclDataType_t */
export const NCCL_DTYPE = { uint8: 1, int32: 2, int64: 4, float32: 7, float64: 8 } as const;
/** ncclRedOp_t (ncclAvg needs NCCL >= 2.10) */
export const NCCL_OP = { sum: 0, product: 1, max: 2, min: 3, avg: 4 } as const;

export const NCCL_UNIQUE_ID_BYTES = 128;

/** Thrown when libnccl.so.2 (or libcudart) cannot be found or loaded; lists every place looked at. */
export class NcclUnavailableError extends Error {
  constructor(
    readonly library: string,
    readonly tried: readonly string[],
    readonly failures: readonly string[],
    hint: string,
  ) {
    super(
      `${library} could not be loaded.\n` +
        (failures.length ? `  load errors:\n${failures.map((f) => `    ${f}`).join('\n')}\n` : '') +
        `  looked in:\n${tried.map((p) => `    ${p}`).join('\n')}\n` +
        `  ${hint}`,
    );
    this.name = 'NcclUnavailableError';
  }
}

// The struct is declared with uint8_t (not char): koffi decodes char arrays as strings.
let uniqueIdType: TypeObject | undefined;
function ncclUniqueIdType(): TypeObject {
  uniqueIdType ??= koffi.struct({ internal: koffi.array('uint8_t', NCCL_UNIQUE_ID_BYTES, 'Typed') });
  return uniqueIdType;
}

export interface NcclLibrary {
  readonly path: string;
  /** e.g. 22105 for 2.21.5 */
  readonly version: number;
  readonly getUniqueId: Fn;
  readonly commInitRank: Fn;
  readonly commDestroy: Fn;
  readonly commAbort: Fn;
  readonly commGetAsyncError: Fn;
  readonly allReduce: Fn;
  readonly allGather: Fn;
  readonly broadcast: Fn;
  /** ncclGroupStart / ncclGroupEnd: the calls between them launch as one. */
  readonly groupStart: Fn;
  readonly groupEnd: Fn;
  errorString(code: number): string;
  /** ncclGetLastError (NCCL >= 2.13), '' otherwise. */
  lastError(comm: unknown): string;
}

export interface CudaRuntime {
  readonly path: string;
  readonly streamQuery: Fn;
  readonly getDevice: Fn;
  readonly setDevice: Fn;
  readonly malloc: Fn;
  readonly free: Fn;
  readonly memset: Fn;
  /** Streams and events of the nccl group's allReduceAsync (its communication stream). */
  readonly streamCreateWithFlags: Fn;
  readonly streamDestroy: Fn;
  readonly streamWaitEvent: Fn;
  readonly eventCreateWithFlags: Fn;
  readonly eventRecord: Fn;
  readonly eventQuery: Fn;
  readonly eventDestroy: Fn;
  errorString(code: number): string;
}

/** What a library is called, where it is looked for, and what to tell a user who has none. */
interface LibrarySpec extends FindLibraryOptions {
  what: string;
  hint: string;
}

const NCCL: LibrarySpec = {
  what: 'NCCL (libnccl.so.2)',
  names: ['libnccl.so.2', 'libnccl.so'],
  envVar: 'BAGUA_NCCL_LIB',
  wheel: 'nccl',
  versionedPrefix: 'libnccl.so.',
  hint: 'install NCCL (e.g. `pip install nvidia-nccl-cu12`, or the libnccl2 package), ' +
    'or set BAGUA_NCCL_LIB to the library file or its directory',
};

const CUDART: LibrarySpec = {
  what: 'the CUDA runtime (libcudart.so)',
  names: ['libcudart.so', 'libcudart.so.12', 'libcudart.so.13', 'libcudart.so.11.0'],
  envVar: 'BAGUA_CUDART_LIB',
  wheel: 'cuda_runtime',
  versionedPrefix: 'libcudart.so.',
  hint: 'install the CUDA runtime (e.g. `pip install nvidia-cuda-runtime-cu12`), or set BAGUA_CUDART_LIB',
};

function loadFirst(spec: LibrarySpec): { lib: LibraryHandle; path: string } {
  const { what, names, envVar, hint } = spec;
  const search = findLibrary(spec);
  const failures: string[] = [];
  const explicit = process.env[envVar];
  if (explicit && search.found.length === 0) failures.push(`${envVar}=${explicit}: no such library file`);
  for (const path of search.found) {
    try {
      return { lib: koffi.load(path), path };
    } catch (e) {
      failures.push(`${path}: ${(e as Error).message}`);
    }
  }
  if (search.found.length === 0) {
    for (const n of names) {
      try {
        return { lib: koffi.load(n), path: n };
      } catch {
        /* reported through `tried` */
      }
    }
  }
  throw new NcclUnavailableError(what, search.tried, failures, hint);
}

/**
 * Loads once: later calls return the first call's result or throw its error,
 * until reset() (the test hook below).
 */
function cachedLoader<T>(load: () => T): { get(): T; reset(): void } {
  let value: { ok: true; v: T } | { ok: false; e: unknown } | undefined;
  return {
    get(): T {
      if (!value) {
        try {
          value = { ok: true, v: load() };
        } catch (e) {
          value = { ok: false, e };
        }
      }
      if (!value.ok) throw value.e;
      return value.v;
    },
    reset(): void {
      value = undefined;
    },
  };
}

const nccl = cachedLoader((): NcclLibrary => {
  const { lib, path } = loadFirst(NCCL);

  const id = ncclUniqueIdType();
  const getVersion = lib.func('int ncclGetVersion(_Out_ int *version)');
  const v = [0];
  const rc = getVersion(v) as number;
  const version = rc === NCCL_SUCCESS ? (v[0] as number) : 0;
  const errStr = lib.func('const char *ncclGetErrorString(int result)');
  let lastErr: Fn | undefined;
  try {
    lastErr = lib.func('const char *ncclGetLastError(void *comm)');
  } catch {
    lastErr = undefined;
  }
  return {
    path,
    version,
    getUniqueId: lib.func('ncclGetUniqueId', 'int', [koffi.out(koffi.pointer(id))]),
    commInitRank: lib.func('ncclCommInitRank', 'int', [koffi.out(koffi.pointer('void *')), 'int', id, 'int']),
    commDestroy: lib.func('int ncclCommDestroy(void *comm)'),
    commAbort: lib.func('int ncclCommAbort(void *comm)'),
    commGetAsyncError: lib.func('int ncclCommGetAsyncError(void *comm, _Out_ int *asyncError)'),
    allReduce: lib.func(
      'int ncclAllReduce(void *sendbuff, void *recvbuff, size_t count, int datatype, int op, void *comm, void *stream)',
    ),
    allGather: lib.func(
      'int ncclAllGather(void *sendbuff, void *recvbuff, size_t sendcount, int datatype, void *comm, void *stream)',
    ),
    broadcast: lib.func(
      'int ncclBroadcast(void *sendbuff, void *recvbuff, size_t count, int datatype, int root, void *comm, void *stream)',
    ),
    groupStart: lib.func('int ncclGroupStart(void)'),
    groupEnd: lib.func('int ncclGroupEnd(void)'),
    errorString: (code) => `${NCCL_RESULT[code] ?? `ncclResult ${code}`}: ${(errStr(code) as string | null) ?? ''}`,
    lastError: (comm) => {
      if (!lastErr) return '';
      try {
        return (lastErr(comm) as string | null) ?? '';
      } catch {
        return '';
      }
    },
  };
});

export function loadNccl(): NcclLibrary {
  return nccl.get();
}

const cudart = cachedLoader((): CudaRuntime => {
  const { lib, path } = loadFirst(CUDART);

  const errStr = lib.func('const char *cudaGetErrorString(int error)');
  return {
    path,
    streamQuery: lib.func('int cudaStreamQuery(void *stream)'),
    getDevice: lib.func('int cudaGetDevice(_Out_ int *device)'),
    setDevice: lib.func('int cudaSetDevice(int device)'),
    malloc: lib.func('int cudaMalloc(_Out_ void **devPtr, size_t size)'),
    free: lib.func('int cudaFree(void *devPtr)'),
    memset: lib.func('int cudaMemset(void *devPtr, int value, size_t count)'),
    streamCreateWithFlags: lib.func('int cudaStreamCreateWithFlags(_Out_ void **stream, unsigned int flags)'),
    streamDestroy: lib.func('int cudaStreamDestroy(void *stream)'),
    streamWaitEvent: lib.func('int cudaStreamWaitEvent(void *stream, void *event, unsigned int flags)'),
    eventCreateWithFlags: lib.func('int cudaEventCreateWithFlags(_Out_ void **event, unsigned int flags)'),
    eventRecord: lib.func('int cudaEventRecord(void *event, void *stream)'),
    eventQuery: lib.func('int cudaEventQuery(void *event)'),
    eventDestroy: lib.func('int cudaEventDestroy(void *event)'),
    errorString: (code) => `cudaError ${code}: ${(errStr(code) as string | null) ?? ''}`,
  };
});

/** The CUDA runtime, or throws NcclUnavailableError listing where it looked. */
export function loadCudaRuntime(): CudaRuntime {
  return cudart.get();
}

/** The CUDA runtime when it can be loaded, else null (never throws). */
export function tryLoadCudaRuntime(): CudaRuntime | null {
  try {
    return loadCudaRuntime();
  } catch {
    return null;
  }
}

/** Whether NCCL can be loaded here, and why not. Never throws. */
export function ncclAvailability(): { available: true; path: string; version: number } | { available: false; reason: string } {
  try {
    const l = loadNccl();
    return { available: true, path: l.path, version: l.version };
  } catch (e) {
    return { available: false, reason: (e as Error).message };
  }
}

/** Test hook: forget cached load results (e.g. after changing BAGUA_NCCL_LIB). */
export function resetNcclLoaderForTests(): void {
  nccl.reset();
  cudart.reset();
}
