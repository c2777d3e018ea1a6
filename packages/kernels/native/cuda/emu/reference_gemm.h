// cuBLAS's cublasSgemmStridedBatched semantics in a plain loop (column-major, its
// argument checks, beta == 0 never reads C), accumulating in double: the emulator's
// stand-in for cuBLAS and test_host.cu's reference.
#pragma once

#include <stddef.h>

// Returns 0, or 7 (CUBLAS_STATUS_INVALID_VALUE) where cuBLAS would refuse.
inline int reference_sgemm_strided_batched(int ta, int tb, int m, int n, int k, const float *alpha, const float *A,
                                           int lda, long long sa, const float *B, int ldb, long long sb,
                                           const float *beta, float *C, int ldc, long long sc, int batch) {
  auto rows = [](int r) { return r > 1 ? r : 1; };  // ld >= max(1, rows)
  if (m < 0 || n < 0 || k < 0 || batch < 0) return 7;
  if (lda < rows(ta ? k : m) || ldb < rows(tb ? n : k) || ldc < rows(m)) return 7;
  for (int bt = 0; bt < batch; bt++) {
    const float *a = A + bt * sa, *b = B + bt * sb;
    float *c = C + bt * sc;
    for (int j = 0; j < n; j++)
      for (int i = 0; i < m; i++) {
        double acc = 0;
        for (int p = 0; p < k; p++) {
          const float av = ta ? a[p + (size_t)i * lda] : a[i + (size_t)p * lda];
          const float bv = tb ? b[j + (size_t)p * ldb] : b[p + (size_t)j * ldb];
          acc += (double)av * bv;
        }
        float &cv = c[i + (size_t)j * ldc];
        cv = (float)(*alpha * acc + (*beta == 0.f ? 0.0 : (double)*beta * cv));
      }
  }
  return 0;
}
