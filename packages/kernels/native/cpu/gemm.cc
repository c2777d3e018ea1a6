// Cache-blocked single-precision GEMM (GotoBLAS structure): op(B) is packed
// into KC x NC panels, alpha * op(A) into MC x KC panels, and an MR x NR
// register-blocked micro-kernel runs over them. Packing makes every transpose
// combination and leading dimension look the same to the micro-kernel.
// The micro-kernel is picked at run time: AVX-512, AVX2+FMA, or portable C++.
// bk_gemm_f32 runs on oneDNN's sgemm where oneDNN loads (onednn.cc); this GEMM is
// the fallback, and the one the fallback conv2d uses.
#include <stdlib.h>

#include <algorithm>

#include "common.h"
#include "onednn.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

// C[0:me, 0:ne] += Ap (kc x MR, MR-interleaved) * Bp (kc x NR, NR-interleaved)
typedef void (*MicroKernel)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                            int me, int ne);

struct Kernel {
  int mr, nr;
  int64_t mc, kc, nc;  // cache blocks
  MicroKernel micro;
};

// Adds a full MR x NR tile held in `acc` (row-major, stride nr) to C, clipped to me x ne.
inline void add_tile(float *c, int64_t ldc, const float *acc, int nr, int me, int ne) {
  for (int i = 0; i < me; ++i)
    for (int j = 0; j < ne; ++j) c[i * ldc + j] += acc[i * nr + j];
}

// Portable fallback: plain loops the compiler vectorises for the baseline ISA.
template <int MR, int NR>
void micro_generic(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int me,
                   int ne) {
  float acc[MR * NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const float *a = ap + p * MR;
    const float *b = bp + p * NR;
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i * NR + j] += a[i] * b[j];
  }
  add_tile(c, ldc, acc, NR, me, ne);
}

#if defined(__x86_64__)

// AVX2 + FMA: 6 x 16 tile, 12 accumulators in ymm registers, written out by hand:
// as an unrolled array loop (the AVX-512 kernel's form) GCC spills them (half the speed).
__attribute__((target("avx2,fma"))) void micro_avx2(int64_t kc, const float *ap, const float *bp,
                                                     float *c, int64_t ldc, int me, int ne) {
  enum { MR = 6, NR = 16 };
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
    __m256 a;
    a = _mm256_broadcast_ss(ap + 0);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(ap + 1);
    c10 = _mm256_fmadd_ps(a, b0, c10);
    c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(ap + 2);
    c20 = _mm256_fmadd_ps(a, b0, c20);
    c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(ap + 3);
    c30 = _mm256_fmadd_ps(a, b0, c30);
    c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(ap + 4);
    c40 = _mm256_fmadd_ps(a, b0, c40);
    c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(ap + 5);
    c50 = _mm256_fmadd_ps(a, b0, c50);
    c51 = _mm256_fmadd_ps(a, b1, c51);
    ap += MR;
    bp += NR;
  }
  const __m256 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                              {c30, c31}, {c40, c41}, {c50, c51}};
  if (me == MR && ne == NR) {
    for (int i = 0; i < MR; ++i) {
      float *ci = c + i * ldc;
      _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(ci), rows[i][0]));
      _mm256_storeu_ps(ci + 8, _mm256_add_ps(_mm256_loadu_ps(ci + 8), rows[i][1]));
    }
    return;
  }
  alignas(32) float acc[MR * NR];
  for (int i = 0; i < MR; ++i) {
    _mm256_store_ps(acc + i * NR, rows[i][0]);
    _mm256_store_ps(acc + i * NR + 8, rows[i][1]);
  }
  add_tile(c, ldc, acc, NR, me, ne);
}

// AVX-512: 12 x 32 tile, 24 accumulators in zmm registers (of 32).
__attribute__((target("avx512f,avx2,fma"))) void micro_avx512(int64_t kc, const float *ap,
                                                               const float *bp, float *c,
                                                               int64_t ldc, int me, int ne) {
  enum { MR = 12, NR = 32 };
  __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[i]);
      acc0[i] = _mm512_fmadd_ps(a, b0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(a, b1, acc1[i]);
    }
    ap += MR;
    bp += NR;
  }
  if (me == MR && ne == NR) {
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      float *ci = c + i * ldc;
      _mm512_storeu_ps(ci, _mm512_add_ps(_mm512_loadu_ps(ci), acc0[i]));
      _mm512_storeu_ps(ci + 16, _mm512_add_ps(_mm512_loadu_ps(ci + 16), acc1[i]));
    }
    return;
  }
  // Edge tile: masked loads/stores on the columns, rows clipped by the loop.
  const uint32_t bits = ne >= 32 ? 0xffffffffu : ((1u << ne) - 1u);
  const __mmask16 m0 = (__mmask16)(bits & 0xffff), m1 = (__mmask16)(bits >> 16);
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    if (i < me) {
      float *ci = c + i * ldc;
      _mm512_mask_storeu_ps(ci, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), acc0[i]));
      _mm512_mask_storeu_ps(ci + 16, m1,
                            _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), acc1[i]));
    }
  }
}

#endif

Kernel pick_kernel() {
  const char *isa = bk::cpu_isa();
#if defined(__x86_64__)
  if (!strcmp(isa, "avx512")) return Kernel{12, 32, 96, 384, 3072, micro_avx512};
  if (!strcmp(isa, "avx2")) return Kernel{6, 16, 96, 256, 3072, micro_avx2};
#endif
  return Kernel{4, 16, 96, 256, 2048, micro_generic<4, 16>};
}

// Picked once when the library is loaded (a function-local static would need the
// C++ runtime's thread-safe guards).
Kernel g_kernel;
__attribute__((constructor)) void init_kernel() { g_kernel = pick_kernel(); }

const Kernel &kernel() { return g_kernel; }

// Packs alpha * op(A)[i0:i0+mc, p0:p0+kc] into MR-row panels, zero-padding the last.
void pack_a(float *dst, const float *a, int64_t lda, bool trans, int64_t i0, int64_t mc,
            int64_t p0, int64_t kc, float alpha, int mr) {
  for (int64_t ip = 0; ip < mc; ip += mr) {
    const int rows = (int)std::min<int64_t>(mr, mc - ip);
    float *d = dst + ip * kc;
    if (!trans) {
      // A[i, p] at a[i * lda + p]: walk each row contiguously
      for (int i = 0; i < rows; ++i) {
        const float *src = a + (i0 + ip + i) * lda + p0;
        for (int64_t p = 0; p < kc; ++p) d[p * mr + i] = alpha * src[p];
      }
    } else {
      // op(A)[i, p] = A[p, i] at a[p * lda + i]: contiguous in i
      for (int64_t p = 0; p < kc; ++p) {
        const float *src = a + (p0 + p) * lda + i0 + ip;
        for (int i = 0; i < rows; ++i) d[p * mr + i] = alpha * src[i];
      }
    }
    if (rows < mr)
      for (int64_t p = 0; p < kc; ++p)
        for (int i = rows; i < mr; ++i) d[p * mr + i] = 0.0f;
  }
}

// Packs op(B)[p0:p0+kc, j0:j0+nc] into NR-column panels, zero-padding the last.
void pack_b(float *dst, const float *b, int64_t ldb, bool trans, int64_t p0, int64_t kc,
            int64_t j0, int64_t nc, int nr) {
  for (int64_t jp = 0; jp < nc; jp += nr) {
    const int cols = (int)std::min<int64_t>(nr, nc - jp);
    float *d = dst + jp * kc;
    if (!trans) {
      for (int64_t p = 0; p < kc; ++p) {
        const float *src = b + (p0 + p) * ldb + j0 + jp;
        float *dp = d + p * nr;
        int j = 0;
        for (; j < cols; ++j) dp[j] = src[j];
        for (; j < nr; ++j) dp[j] = 0.0f;
      }
    } else {
      // op(B)[p, j] = B[j, p] at b[j * ldb + p]
      for (int j = 0; j < cols; ++j) {
        const float *src = b + (j0 + jp + j) * ldb + p0;
        for (int64_t p = 0; p < kc; ++p) d[p * nr + j] = src[p];
      }
      for (int j = cols; j < nr; ++j)
        for (int64_t p = 0; p < kc; ++p) d[p * nr + j] = 0.0f;
    }
  }
}

void scale_c(float *c, int64_t ldc, int64_t m, int64_t n, float beta) {
  if (beta == 1.0f) return;
  for (int64_t i = 0; i < m; ++i) {
    float *ci = c + i * ldc;
    // beta == 0 overwrites (BLAS semantics: C is not read, NaNs in it do not leak)
    if (beta == 0.0f)
      std::fill(ci, ci + n, 0.0f);
    else
      for (int64_t j = 0; j < n; ++j) ci[j] *= beta;
  }
}

// One thread's GEMM.
int sgemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc) {
  if (m <= 0 || n <= 0) return 0;
  scale_c(c, ldc, m, n, beta);
  if (k <= 0 || alpha == 0.0f) return 0;
  const Kernel &K = kernel();
  const int64_t kcb = std::min(K.kc, k);
  const int64_t ncb = std::min(K.nc, (n + K.nr - 1) / K.nr * K.nr);
  const int64_t mcb = std::min(K.mc, (m + K.mr - 1) / K.mr * K.mr);
  // slots 2 and 3: conv2d holds slots 0 and 1 for its column buffers
  float *bpack = bk::scratch(2, (size_t)(kcb * ncb));
  float *apack = bk::scratch(3, (size_t)(mcb * kcb));
  if (!bpack || !apack) return 1;
  for (int64_t jc = 0; jc < n; jc += K.nc) {
    const int64_t nc = std::min(K.nc, n - jc);
    for (int64_t pc = 0; pc < k; pc += K.kc) {
      const int64_t kc = std::min(K.kc, k - pc);
      pack_b(bpack, b, ldb, trans_b, pc, kc, jc, nc, K.nr);
      for (int64_t ic = 0; ic < m; ic += K.mc) {
        const int64_t mc = std::min(K.mc, m - ic);
        pack_a(apack, a, lda, trans_a, ic, mc, pc, kc, alpha, K.mr);
        for (int64_t jr = 0; jr < nc; jr += K.nr) {
          const int ne = (int)std::min<int64_t>(K.nr, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += K.mr) {
            const int me = (int)std::min<int64_t>(K.mr, mc - ir);
            K.micro(kc, apack + ir * kc, bpack + jr * kc, c + (ic + ir) * ldc + jc + jr, ldc,
                    me, ne);
          }
        }
      }
    }
  }
  return 0;
}

// Multiply-adds per thread below which another thread does not pay for waking it.
constexpr int64_t kGemmGrain = 1 << 17;

// m * n * k, saturated (sizes come from JS).
int64_t gemm_work(int64_t m, int64_t n, int64_t k) {
  int64_t mn, mnk;
  if (__builtin_mul_overflow(m, n, &mn) || __builtin_mul_overflow(mn, k, &mnk)) return INT64_MAX;
  return mnk;
}

}  // namespace

namespace bk {

int sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
          int64_t ldc) {
  if (m <= 0 || n <= 0) return 0;
  const int nt = threads_for(gemm_work(m, n, k), kGemmGrain);
  if (nt <= 1) return sgemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  // Threads take slices of the longer side of C, each packing its own panels: every
  // element is computed exactly as on one thread, whatever the thread count.
  const Kernel &K = kernel();
  if (n >= m)
    return parallel_ranges(nt, n, K.nr, [&](int64_t lo, int64_t hi) {
      return sgemm_serial(trans_a, trans_b, m, hi - lo, k, alpha, a, lda,
                          b + (trans_b ? lo * ldb : lo), ldb, beta, c + lo, ldc);
    });
  return parallel_ranges(nt, m, K.mr, [&](int64_t lo, int64_t hi) {
    return sgemm_serial(trans_a, trans_b, hi - lo, n, k, alpha, a + (trans_a ? lo : lo * lda),
                        lda, b, ldb, beta, c + lo * ldc, ldc);
  });
}

}  // namespace bk

extern "C" int bk_gemm_f32(float *c, const float *a, const float *b, int32_t trans_a,
                           int32_t trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                           float beta, int64_t lda, int64_t ldb, int64_t ldc, int64_t batch,
                           int64_t stride_a, int64_t stride_b, int64_t stride_c, void *) {
  BK_NONNEG(m);
  BK_NONNEG(n);
  BK_NONNEG(k);
  BK_NONNEG(batch);
  // row-major: a row of the stored matrix must fit within its leading dimension
  const int64_t a_width = trans_a ? m : k, b_width = trans_b ? k : n;
  BK_REQUIRE(lda >= a_width, "%s: lda (%lld) must be >= %s (%lld)", __func__, (long long)lda,
             trans_a ? "m" : "k", (long long)a_width);
  BK_REQUIRE(ldb >= b_width, "%s: ldb (%lld) must be >= %s (%lld)", __func__, (long long)ldb,
             trans_b ? "k" : "n", (long long)b_width);
  BK_REQUIRE(ldc >= n, "%s: ldc (%lld) must be >= n (%lld)", __func__, (long long)ldc,
             (long long)n);
  const bool any = batch > 0 && m > 0 && n > 0;
  BK_NOTNULL_IF(any, c);
  BK_NOTNULL_IF(any && k > 0 && alpha != 0.0f, a, b);
  if (!any) return 0;
  // oneDNN where it loaded; the built-in GEMM also when there is no product to form
  const bool dnnl = k > 0 && alpha != 0.0f && bk::dnnl_on();
  // items [lo, hi): 0, a dnnl_status_t, or -1 when the built-in GEMM runs out of memory
  auto items = [&](int64_t lo, int64_t hi) -> int {
    for (int64_t i = lo; i < hi; ++i) {
      const float *ai = a + i * stride_a, *bi = b + i * stride_b;
      float *ci = c + i * stride_c;
      const int rc =
          dnnl ? bk::dnnl_gemm(trans_a, trans_b, m, n, k, alpha, ai, lda, bi, ldb, beta, ci, ldc)
               : -bk::sgemm(trans_a, trans_b, m, n, k, alpha, ai, lda, bi, ldb, beta, ci, ldc);
      if (rc) return rc;
    }
    return 0;
  };
  // Many products, or products too small to split: whole items per thread (each on
  // one thread, as a GEMM inside a parallel region runs). Otherwise one at a time,
  // each split over the threads.
  const int64_t work = gemm_work(m, n, k);
  const int nt = bk::threads_for(batch > 1 ? gemm_work(batch, work, 1) : 0, kGemmGrain);
  const bool by_item = nt > 1 && (batch >= 2 * nt || (batch >= nt && work < nt * kGemmGrain));
  const int rc = by_item ? bk::parallel_ranges(nt, batch, 1, items) : items(0, batch);
  if (rc == -1) return bk::fail_status(BK_ERR_OUT_OF_MEMORY, "%s: out of memory", __func__);
  if (rc) return bk::fail_status(BK_ERR_LIBRARY, "%s: dnnl_sgemm failed: %s", __func__, bk::dnnl_status_name(rc));
  return 0;
}

const char *bk::cpu_isa() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  const char *want = getenv("BAGUA_CPU_ISA");
  const bool lower_to_sse2 = want && !strcmp(want, "sse2");
  const bool lower_to_avx2 = lower_to_sse2 || (want && !strcmp(want, "avx2"));
  if (!lower_to_avx2 && __builtin_cpu_supports("avx512f")) return "avx512";
  if (!lower_to_sse2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
  return "sse2";
#else
  return "generic";
#endif
}
