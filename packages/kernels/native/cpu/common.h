// Internal helpers of the CPU library: error reporting, argument checks,
// portable SIMD types and scratch buffers.
#pragma once

#include <stdint.h>
#include <string.h>

#include <initializer_list>

#include "bagua_kernels.h"

namespace bk {

// Records a printf-style message for bk_last_error() and returns BK_ERR_INVALID_ARGUMENT;
// fail_status returns the bk_status given (out of memory, a library that failed, ...).
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int fail_status(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// For BK_NOTNULL_IF: the index of the first NULL pointer (-1: none), and the
// failure that names it, the i-th of the macro's comma-separated argument names.
inline int first_null(std::initializer_list<const void *> ps) {
  int i = 0;
  for (const void *p : ps) {
    if (!p) return i;
    ++i;
  }
  return -1;
}
inline int fail_null(const char *func, const char *names, int i) {
  for (; i > 0 && *names; ++names)
    if (*names == ',') --i;
  while (*names == ' ') ++names;
  const char *end = strchr(names, ',');
  const int len = end ? (int)(end - names) : (int)strlen(names);
  return fail("%s: %.*s is NULL", func, len, names);
}

// The instruction set the built-in kernels use: "avx512", "avx2", "sse2" (x86-64
// without AVX2) or "generic". BAGUA_CPU_ISA (avx2, sse2) may lower it, never raise
// it: so tests can run every GEMM micro-kernel on one machine.
const char *cpu_isa();

// a * b without overflow (sizes come from JS and may be garbage).
inline bool mul_ok(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}

// A per-thread scratch buffer that grows and is reused, so hot kernels do not
// allocate on every call; NULL when memory runs out. `slot` (0..3) lets one kernel
// hold several at once; the float and double slots are distinct.
float *scratch(int slot, size_t n);
double *scratch_d(int slot, size_t n);

// Internal GEMM (no validation): row-major, C = alpha * op(A) op(B) + beta * C, on the
// calling thread's threads when large enough (each element computed the same whatever
// their number). Non-zero when its packing buffers cannot be allocated.
int sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
          int64_t ldc);

// ---- threads (threads.cc) ----
// OpenMP's runtime (libgomp) is loaded at run time, as oneDNN is, so the library links
// nothing beyond libc, libm and libdl; without it every kernel runs on one thread.

// The calling thread's kernel thread count: bk_set_num_threads, else the default
// (BAGUA_NUM_THREADS, else cores / LOCAL_WORLD_SIZE). Also given to OpenMP for this
// thread, so oneDNN, which runs on the same OpenMP, follows it.
int num_threads();

// Below this many elements a kernel stays on the calling thread: waking the pool
// costs more than it saves.
constexpr int64_t kParallelMin = 32768;

// Threads to use for `work` units when each thread should get at least `grain` of
// them; 1 inside a parallel region (no nesting), for small work, or without OpenMP.
int threads_for(int64_t work, int64_t grain);

// NULL when OpenMP runs the kernel threads, else why it does not.
const char *openmp_missing();

// Runs body(ctx, t, T) on T <= nt threads (t = 0 on the calling thread), T = 1 without
// OpenMP; returns T.
int run_parallel(void (*body)(void *ctx, int t, int nthreads), void *ctx, int nt);

// Runs f(lo, hi) on `nt` threads over [0, n) cut into contiguous ranges whose
// boundaries are multiples of `align` (so vector bodies and tails fall the same way
// whatever the thread count). f returns 0 or an error code; the codes are OR-ed.
// f must not call fail(): the message would land in a pool thread's buffer.
template <class F>
int parallel_ranges(int nt, int64_t n, int64_t align, const F &f) {
  const int64_t blocks = (n + align - 1) / align;
  if (nt > blocks) nt = (int)blocks;
  if (nt <= 1) return n > 0 ? f(int64_t(0), n) : 0;
  struct Ctx {
    const F *f;
    int64_t n, align, blocks;
    int rc;
  } ctx = {&f, n, align, blocks, 0};
  run_parallel(
      [](void *p, int t, int T) {
        Ctx &c = *(Ctx *)p;
        const int64_t lo = c.blocks * t / T * c.align, hi = c.blocks * (t + 1) / T * c.align;
        const int rc = lo < c.n ? (*c.f)(lo, hi < c.n ? hi : c.n) : 0;
        if (rc) __atomic_fetch_or(&c.rc, rc, __ATOMIC_RELAXED);
      },
      &ctx, nt);
  return ctx.rc;
}

}  // namespace bk

// The library is built without exceptions or RTTI: errors are return codes, and
// the C++ runtime it links statically stays small.

// Runtime dispatch of hot loops: GCC emits one clone per ISA and picks one at
// load time (ifunc), so the library needs no -march and still uses AVX where present.
#if defined(__x86_64__) && !defined(__clang__)
#define BK_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BK_CLONES
#endif

#define BK_INLINE inline __attribute__((always_inline))

// GCC vector extensions: 16 lanes, lowered to zmm, 2 ymm or 4 xmm depending on
// the clone being compiled. Loads/stores go through memcpy (no alignment needed).
typedef float bk_v16 __attribute__((vector_size(64)));
BK_INLINE bk_v16 v16_load(const float *p) {
  bk_v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}
BK_INLINE void v16_store(float *p, bk_v16 v) { memcpy(p, &v, sizeof v); }
BK_INLINE bk_v16 v16_splat(float x) { return bk_v16{} + x; }
// Horizontal sum by halving (a few shuffles instead of 16 scalar adds). Lanes hold
// partial sums of few terms, so summing them in float loses nothing that matters.
typedef float bk_v8 __attribute__((vector_size(32)));
typedef float bk_v4 __attribute__((vector_size(16)));
BK_INLINE double v16_hsum(bk_v16 v) {
  const bk_v8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                  __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const bk_v4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (double)((b[0] + b[2]) + (b[1] + b[3]));
}

// Argument checks; each returns from the enclosing kernel with a message that
// names it (__func__ is the C entry point).
#define BK_REQUIRE(cond, ...)                   \
  do {                                          \
    if (!(cond)) return ::bk::fail(__VA_ARGS__); \
  } while (0)
#define BK_NONNEG(v) \
  BK_REQUIRE((v) >= 0, "%s: %s must be >= 0 (got %lld)", __func__, #v, (long long)(v))
#define BK_NOTNULL(p) BK_REQUIRE((p) != nullptr, "%s: %s is NULL", __func__, #p)
// Pointers may be NULL only when nothing is read or written through them:
// BK_NOTNULL_IF(total > 0, dy, x, mean) names the first NULL one.
#define BK_NOTNULL_IF(cond, ...)                                                       \
  do {                                                                                 \
    const int bk_null_ = (cond) ? ::bk::first_null({__VA_ARGS__}) : -1;                \
    if (bk_null_ >= 0)                                                                 \
      return ::bk::fail_null(__func__, #__VA_ARGS__, bk_null_);                         \
  } while (0)
#define BK_MUL(out, a, b)                                                          \
  BK_REQUIRE(::bk::mul_ok((a), (b), &(out)), "%s: size overflow (%s * %s)", __func__, #a, \
             #b)
// The sizes of a [rows, cols] operand, each >= 0; declares `total` = rows * cols.
#define BK_SIZES2(rows, cols, total) \
  BK_NONNEG(rows);                   \
  BK_NONNEG(cols);                   \
  int64_t total;                     \
  BK_MUL(total, rows, cols)
// The sizes of an [a, b, c] operand (b: the channel or reduced axis), each >= 0;
// declares `ac` = a * c and `total` = ac * b.
#define BK_SIZES3(a, b, c, ac, total) \
  BK_NONNEG(a);                       \
  BK_NONNEG(b);                       \
  BK_NONNEG(c);                       \
  int64_t ac, total;                  \
  BK_MUL(ac, a, c);                   \
  BK_MUL(total, ac, b)

// Scratch allocation inside an entry point: out of memory is an error, not a crash.
#define BK_SCRATCH(var, expr)                                                     \
  do {                                                                            \
    if (((var) = (expr)) == nullptr)                                              \
      return ::bk::fail_status(BK_ERR_OUT_OF_MEMORY, "%s: out of memory", __func__); \
  } while (0)
