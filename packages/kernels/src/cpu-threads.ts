/**
 * Kernel threads of the CPU library, and what runs its convolutions and matmuls
 * (oneDNN, or the built-in GEMM where oneDNN cannot be loaded).
 *
 * The thread count belongs to the calling JS thread: each rank of the in-process
 * `threads` backend is a worker thread and sets its own. Default:
 * BAGUA_NUM_THREADS, else max(1, floor(cores / LOCAL_WORLD_SIZE)).
 */
import { cpuBackend } from './cpu-backend.js';

/** The most threads bk_set_num_threads accepts. */
export const MAX_NUM_THREADS = 1024;

interface CpuControl {
  readonly setNumThreads: (n: number) => number;
  readonly getNumThreads: () => number;
  readonly info: (buf: Uint8Array, len: number) => number;
  readonly useDnnl: (enable: number) => number;
  readonly lastError: () => string;
}

let declared: { lib: unknown; control: CpuControl } | null = null;

/** The control functions of the loaded CPU library (declared once per library). */
function control(): CpuControl {
  const library = cpuBackend.native.library;
  if (declared?.lib !== library.lib) {
    const lib = library.lib;
    declared = {
      lib,
      control: {
        setNumThreads: lib.func('int bk_set_num_threads(int32_t n)') as (n: number) => number,
        getNumThreads: lib.func('int32_t bk_get_num_threads(void)') as () => number,
        info: lib.func('int bk_cpu_info(_Out_ uint8_t *buf, int64_t len)') as CpuControl['info'],
        useDnnl: lib.func('int32_t bk_cpu_use_dnnl(int32_t enable)') as (e: number) => number,
        lastError: library.lastError,
      },
    };
  }
  return declared.control;
}

/** Sets the calling thread's kernel thread count (also oneDNN's). */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_NUM_THREADS) {
    throw new Error(`setNumThreads: n must be an integer from 1 to ${MAX_NUM_THREADS}, got ${n}`);
  }
  const c = control();
  if (c.setNumThreads(n) !== 0) throw new Error(`setNumThreads: ${c.lastError()}`);
}

/** The calling thread's kernel thread count. */
export function getNumThreads(): number {
  return control().getNumThreads();
}

/**
 * What runs the CPU kernels in this thread, e.g. 'cpu (avx512, 2 threads, oneDNN 2.6.3)' or
 * 'cpu (avx2, 1 thread, built-in GEMM: oneDNN not found: tried libdnnl.so.2 (...))'.
 * Loads oneDNN if nothing has tried yet.
 */
export function cpuInfo(): string {
  const c = control();
  const buf = new Uint8Array(2048);
  if (c.info(buf, buf.length) !== 0) throw new Error(`cpuInfo: ${c.lastError()}`);
  const end = buf.indexOf(0);
  return new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
}

/**
 * Whether conv2d and matmul run on oneDNN in the calling thread (true by default where it
 * loads); `false` switches this thread to the built-in GEMM, for comparisons.
 * Returns whether oneDNN is now in use here.
 */
export function useOneDnn(enabled?: boolean): boolean {
  return control().useDnnl(enabled === undefined ? -1 : enabled ? 1 : 0) === 1;
}
