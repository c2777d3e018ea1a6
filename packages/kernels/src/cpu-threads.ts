/**
 * What runs the CPU library's convolutions and matmuls: oneDNN, or the built-in
 * GEMM where oneDNN cannot be loaded. (Kernel threads are core's
 * setNumThreads/getNumThreads, which the CPU backend implements.)
 */
import { cpuBackend } from './cpu-backend.js';

/**
 * What runs the CPU kernels in this thread, e.g. 'cpu (avx512, 2 threads, oneDNN 2.6.3)' or
 * 'cpu (avx2, 1 thread, built-in GEMM: oneDNN not found: tried libdnnl.so.2 (...))'.
 * Loads oneDNN if nothing has tried yet.
 */
export function cpuInfo(): string {
  const { control, library } = cpuBackend.native;
  const buf = new Uint8Array(2048);
  if (control.info(buf, buf.length) !== 0) throw new Error(`cpuInfo: ${library.lastError()}`);
  const end = buf.indexOf(0);
  return new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
}

/**
 * Whether conv2d and matmul run on oneDNN in the calling thread (true by default where it
 * loads); `false` switches this thread to the built-in GEMM, for comparisons.
 * Returns whether oneDNN is now in use here.
 */
export function useOneDnn(enabled?: boolean): boolean {
  return cpuBackend.native.control.useDnnl(enabled === undefined ? -1 : enabled ? 1 : 0) === 1;
}
