import { getBackend, hasBackend } from './backend.js';

/**
 * Kernel threads of the calling thread (each rank of the in-process `threads`
 * backend sets its own). Default: BAGUA_NUM_THREADS, else cores / LOCAL_WORLD_SIZE.
 */
export function setNumThreads(n: number): void {
  if (!hasBackend('cpu')) throw new Error("setNumThreads: no CPU backend registered: import '@bagua/kernels' first");
  const b = getBackend('cpu');
  if (!b.setNumThreads) throw new Error('setNumThreads: the CPU backend has no kernel threads to set');
  b.setNumThreads(n);
}

export function getNumThreads(): number {
  return hasBackend('cpu') ? (getBackend('cpu').getNumThreads?.() ?? 1) : 1;
}
