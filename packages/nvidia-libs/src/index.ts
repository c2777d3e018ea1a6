/**
 * @bagua/nvidia-libs: where NVIDIA's shared libraries are on this machine: env
 * overrides, system and CUDA directories, and the nvidia-* Python wheels. No
 * dependencies, so both @bagua/comm (NCCL, cudart) and @bagua/kernels (cuBLAS) use
 * the one search without depending on each other.
 */
export {
  WHEEL_DIRS, wheelDirs, findLibrary, findInWheels,
  type FindLibraryOptions, type LibrarySearch, type WheelSearch, type WheelSearchOptions,
} from './find.js';
export {
  askFirstPython, askPythonSitePackages, prefixSitePackages, pythonCandidates, pythonSitePackages,
  systemPythonPrefixes, whichExecutable,
  type PythonSitePackages, type SitePackagesOptions,
} from './python.js';
