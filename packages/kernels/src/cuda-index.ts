/**
 * The CUDA half of @bagua/kernels' public API. Importing it registers the CUDA
 * backend with core; the backend loads nothing until a cuda storage is first
 * allocated, so this import never fails on a machine without a GPU.
 */
import { registerBackend } from '@bagua/core';
import { cudaBackend } from './cuda-backend.js';

export { CudaBackend, CudaStorage, cudaBackend } from './cuda-backend.js';
export {
  CUDA_LIBRARY, loadCudaKernels, loadCudaLibrary, probeCuda,
  type CudaDeviceInfo, type CudaKernels, type CudaProbe,
} from './cuda-native.js';

registerBackend(cudaBackend);
