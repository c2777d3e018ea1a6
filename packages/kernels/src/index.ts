/**
 * @bagua/kernels: the native kernels behind core's Backend interface.
 * Importing the package registers the CPU backend with @bagua/core (the
 * library itself is loaded on the first kernel call).
 */
import { registerBackend } from '@bagua/core';
import { cpuBackend } from './cpu-backend.js';

export {
  CpuBackend, cpuBackend, loadCpuKernels, MAX_NUM_THREADS, type CpuControl, type CpuKernels,
} from './cpu-backend.js';
export {
  KERNELS, KERNEL_METHODS, KERNEL_NAMES, KERNEL_PARAMS, kernelSignature,
  type KernelFn, type KernelMethod, type KernelName, type KernelParam, type KernelSpec,
} from './kernel-table.js';
export { NativeBackend } from './native-backend.js';
export { BK_STATUS, KernelError, statusName, type BkStatusName } from './status.js';
export { cpuInfo, useOneDnn } from './cpu-threads.js';
export {
  BK_ABI_VERSION, CPU_LIBRARY, libraryCandidates, loadKernelLibrary, locateLibrary,
  type LoadedLibrary, type NativeLibrarySpec,
} from './load-library.js';

registerBackend(cpuBackend);

// The CUDA backend registers itself too; it loads nothing until a cuda storage is
// allocated, so this never fails on a machine without a GPU.
export * from './cuda-index.js';
