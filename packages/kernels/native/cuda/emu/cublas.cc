// The CUDA emulator's stand-in for cuBLAS: the three entry points cublas.cu looks up.
// A plain loop (reference_gemm.h): a reference, not a fast GEMM.
#include "reference_gemm.h"

extern "C" {

int cublasCreate_v2(void **handle) {
  static int the_handle;
  *handle = &the_handle;
  return 0;
}

int cublasSetStream_v2(void *, void *) { return 0; }

int cublasSgemmStridedBatched(void *, int transa, int transb, int m, int n, int k, const float *alpha,
                              const float *a, int lda, long long sa, const float *b, int ldb, long long sb,
                              const float *beta, float *c, int ldc, long long sc, int batch) {
  return reference_sgemm_strided_batched(transa, transb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc,
                                         batch);
}

}  // extern "C"
