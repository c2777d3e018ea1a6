// The CUDA emulator's stand-in for cuBLAS: the three entry points cublas.cu
// looks up, with cuBLAS's column-major semantics (beta == 0 never reads C).
// A plain loop, accumulating in double: a reference, not a fast GEMM.
#include <stdint.h>

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
  if (m < 0 || n < 0 || k < 0 || batch < 0) return 7;  // CUBLAS_STATUS_INVALID_VALUE
  auto rows = [](int r) { return r > 1 ? r : 1; };  // cuBLAS: ld >= max(1, rows)
  if (lda < rows(transa ? k : m) || ldb < rows(transb ? n : k) || ldc < rows(m)) return 7;
  for (int p = 0; p < batch; p++) {
    const float *ap = a + p * sa, *bp = b + p * sb;
    float *cp = c + p * sc;
    for (int j = 0; j < n; j++)
      for (int i = 0; i < m; i++) {
        double s = 0;
        for (int q = 0; q < k; q++) {
          const float av = transa ? ap[q + (int64_t)i * lda] : ap[i + (int64_t)q * lda];
          const float bv = transb ? bp[j + (int64_t)q * ldb] : bp[q + (int64_t)j * ldb];
          s += (double)av * bv;
        }
        float &out = cp[i + (int64_t)j * ldc];
        out = *beta == 0.f ? (float)(*alpha * s) : (float)(*alpha * s + (double)*beta * out);
      }
  }
  return 0;
}

}  // extern "C"
