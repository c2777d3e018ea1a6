/**
 * Finding libnccl.so.2 and libcudart.so.* at run time: the search lives in
 * @bagua/nvidia-libs, shared with @bagua/kernels' cuBLAS lookup (comm does not depend
 * on kernels, nor kernels on comm). Re-exported here under comm's existing names.
 */
export { findLibrary, type FindLibraryOptions, type LibrarySearch } from '@bagua/nvidia-libs';
