// Library identity, errors, memory movement, elementwise kernels and sums.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>

#include "common.h"
#include "bagua_errors.h"

namespace bk {

static thread_local char g_error[1024] = "";

BK_DEFINE_FAIL(g_error)

// Scratch buffers live per thread and only grow, so steady-state calls allocate
// nothing. They are returned when the thread (e.g. a worker) exits, through glibc's
// __cxa_thread_atexit_impl (glibc >= 2.18): a C++ thread_local destructor would
// pull the C++ exception runtime, and with it symbols of much newer glibcs.
extern "C" int __cxa_thread_atexit_impl(void (*fn)(void *), void *obj, void *dso);
extern "C" void *__dso_handle;

namespace {
struct Scratch {
  void *p[8];
  size_t cap[8];
  bool registered;
};
thread_local Scratch g_scratch;  // zero-initialised, no constructor or destructor

void release_scratch(void *obj) {
  Scratch *s = (Scratch *)obj;
  for (int i = 0; i < 8; ++i) {
    free(s->p[i]);
    s->p[i] = nullptr;
    s->cap[i] = 0;
  }
}

void *scratch_get(int slot, size_t n, size_t elem) {
  Scratch &s = g_scratch;
  if (!s.registered) {
    __cxa_thread_atexit_impl(release_scratch, &s, &__dso_handle);
    s.registered = true;
  }
  if (n > SIZE_MAX / elem - 64) return nullptr;
  const size_t bytes = n * elem;
  if (s.cap[slot] < bytes || !s.p[slot]) {
    free(s.p[slot]);
    s.cap[slot] = 0;
    // 64-byte aligned, whole cache lines
    s.p[slot] = aligned_alloc(64, (bytes + 64) / 64 * 64);
    if (!s.p[slot]) return nullptr;
    s.cap[slot] = bytes;
  }
  return s.p[slot];
}
}  // namespace

float *scratch(int slot, size_t n) { return (float *)scratch_get(slot, n, sizeof(float)); }
double *scratch_d(int slot, size_t n) { return (double *)scratch_get(4 + slot, n, sizeof(double)); }

}  // namespace bk

using bk::fail;

extern "C" {

const char *bk_last_error(void) { return bk::g_error; }
const char *bk_backend_name(void) { return "cpu"; }
int32_t bk_abi_version(void) { return BK_ABI_VERSION; }

}  // extern "C"

// ---- threads over elements ----------------------------------------------------

namespace {

// Runs f(lo, hi) over [0, n) on the calling thread's threads when n is large enough,
// in ranges of whole 64-byte lines.
template <class F>
void elementwise(int64_t n, const F &f) {
  bk::parallel_ranges(bk::threads_for(n, bk::kParallelMin), n, 16, [&](int64_t lo, int64_t hi) {
    f(lo, hi);
    return 0;
  });
}

}  // namespace

// ---- memory movement ------------------------------------------------------

BK_CLONES static void fill_loop(float *out, int64_t n, float v) {
  for (int64_t i = 0; i < n; ++i) out[i] = v;
}

extern "C" int bk_fill_f32(float *out, int64_t n, float value, void *) {
  BK_NONNEG(n);
  BK_NOTNULL_IF(n > 0, out);
  elementwise(n, [&](int64_t lo, int64_t hi) { fill_loop(out + lo, hi - lo, value); });
  return 0;
}

extern "C" int bk_copy_f32(float *out, const float *x, int64_t n, void *) {
  BK_NONNEG(n);
  BK_NOTNULL_IF(n > 0, out, x);
  if (n == 0 || out == x) return 0;
  // overlapping ranges need memmove's one pass in the right direction
  if (out < x + n && x < out + n) {
    memmove(out, x, (size_t)n * sizeof(float));
    return 0;
  }
  elementwise(n, [&](int64_t lo, int64_t hi) {
    memcpy(out + lo, x + lo, (size_t)(hi - lo) * sizeof(float));
  });
  return 0;
}

namespace {

enum { kMaxDims = 8 };

// A strided walk over a contiguous output: dimensions of size 1 are dropped and
// neighbours merged whenever both inputs allow it, so the innermost loop is as long
// (and usually as contiguous) as possible.
struct Walk {
  int nd = 0;
  int64_t shape[kMaxDims], sa[kMaxDims], sb[kMaxDims];
  int64_t numel = 1;
};

int make_walk(Walk &w, const int64_t *shape, const int64_t *sa, const int64_t *sb, int ndim,
              const char *fn) {
  if (ndim < 0 || ndim > kMaxDims)
    return fail("%s: ndim must be in [0, %d] (got %d)", fn, kMaxDims, ndim);
  if (ndim > 0 && !shape) return fail("%s: shape is NULL", fn);
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] < 0)
      return fail("%s: shape[%d] must be >= 0 (got %lld)", fn, d, (long long)shape[d]);
    if (!bk::mul_ok(w.numel, shape[d], &w.numel)) return fail("%s: size overflow", fn);
  }
  w.nd = 0;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    const int64_t a = sa ? sa[d] : 0, b = sb ? sb[d] : 0;
    if (w.nd > 0) {
      const int i = w.nd - 1;
      // the previous (outer) dim steps exactly over this one: merge them
      if (w.sa[i] == a * shape[d] && w.sb[i] == b * shape[d]) {
        w.shape[i] *= shape[d];
        w.sa[i] = a;
        w.sb[i] = b;
        continue;
      }
    }
    w.shape[w.nd] = shape[d];
    w.sa[w.nd] = a;
    w.sb[w.nd] = b;
    ++w.nd;
  }
  return 0;
}

// Calls f(out_offset, a_offset, b_offset, len, a_stride, b_stride) per innermost run
// of the output elements [e0, e1) (runs at either end cut to fit).
template <class F>
void walk_span(const Walk &w, int64_t e0, int64_t e1, const F &f) {
  if (e0 >= e1) return;
  if (w.nd == 0) {
    f(0, 0, 0, 1, 0, 0);
    return;
  }
  const int last = w.nd - 1;
  const int64_t inner = w.shape[last];
  // the multi-index of element e0
  int64_t idx[kMaxDims] = {0};
  int64_t oa = 0, ob = 0, rest = e0 / inner, pos = e0 % inner;
  for (int d = last - 1; d >= 0; --d) {
    idx[d] = rest % w.shape[d];
    rest /= w.shape[d];
    oa += idx[d] * w.sa[d];
    ob += idx[d] * w.sb[d];
  }
  for (int64_t oo = e0; oo < e1; pos = 0) {
    const int64_t len = std::min(inner - pos, e1 - oo);
    f(oo, oa + pos * w.sa[last], ob + pos * w.sb[last], len, w.sa[last], w.sb[last]);
    oo += len;
    for (int d = last - 1; d >= 0; --d) {
      oa += w.sa[d];
      ob += w.sb[d];
      if (++idx[d] < w.shape[d]) break;
      oa -= w.sa[d] * w.shape[d];
      ob -= w.sb[d] * w.shape[d];
      idx[d] = 0;
    }
  }
}

// walk_span over all elements, split over threads when there are enough of them.
template <class F>
void walk(const Walk &w, const F &f) {
  elementwise(w.numel, [&](int64_t lo, int64_t hi) { walk_span(w, lo, hi, f); });
}

// A transpose inside the walk: the innermost output dimension (cols) steps over the input
// by `s` while the one outside it (rows) is contiguous in the input, as in NCHW <-> NHWC
// (a [rows = HW, cols = C] block per image, or the reverse). Element by element the walk
// reads (or writes) a cache line per element; here tiles of kTileR rows x kTileC columns
// (64 KB a side, in L2; input runs of 1 KB) move as 8 x 8 blocks transposed in registers:
// 8 vector loads, 24 shuffles, 8 vector stores. The tile sizes were the fastest of
// 16-512 x 8-128 on [8 and 32, 64, 56, 56] and [32, 256, 14, 14], both directions.
constexpr int64_t kTileR = 256, kTileC = 64;


typedef float bk_t8 __attribute__((vector_size(32)));
BK_INLINE bk_t8 t8_load(const float *p) {
  bk_t8 v;
  memcpy(&v, p, sizeof v);
  return v;
}
BK_INLINE void t8_store(float *p, bk_t8 v) { memcpy(p, &v, sizeof v); }

bool transpose_walk(const Walk &w) {
  if (w.nd < 2) return false;
  const int last = w.nd - 1;
  return w.sa[last] != 1 && w.sa[last] != 0 && w.sa[last - 1] == 1 && w.shape[last] >= 4 &&
         w.shape[last - 1] >= 4;
}

// out[i * ld + j] = x[i + j * s] for i, j < 8.
BK_INLINE void transpose8(float *out, int64_t ld, const float *x, int64_t s) {
  const bk_t8 a0 = t8_load(x), a1 = t8_load(x + s), a2 = t8_load(x + 2 * s), a3 = t8_load(x + 3 * s);
  const bk_t8 a4 = t8_load(x + 4 * s), a5 = t8_load(x + 5 * s), a6 = t8_load(x + 6 * s), a7 = t8_load(x + 7 * s);
  // pairs within 128-bit halves, then quads, then the halves swapped across
  const bk_t8 t0 = __builtin_shufflevector(a0, a1, 0, 8, 1, 9, 4, 12, 5, 13);
  const bk_t8 t1 = __builtin_shufflevector(a0, a1, 2, 10, 3, 11, 6, 14, 7, 15);
  const bk_t8 t2 = __builtin_shufflevector(a2, a3, 0, 8, 1, 9, 4, 12, 5, 13);
  const bk_t8 t3 = __builtin_shufflevector(a2, a3, 2, 10, 3, 11, 6, 14, 7, 15);
  const bk_t8 t4 = __builtin_shufflevector(a4, a5, 0, 8, 1, 9, 4, 12, 5, 13);
  const bk_t8 t5 = __builtin_shufflevector(a4, a5, 2, 10, 3, 11, 6, 14, 7, 15);
  const bk_t8 t6 = __builtin_shufflevector(a6, a7, 0, 8, 1, 9, 4, 12, 5, 13);
  const bk_t8 t7 = __builtin_shufflevector(a6, a7, 2, 10, 3, 11, 6, 14, 7, 15);
  const bk_t8 u0 = __builtin_shufflevector(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13);
  const bk_t8 u1 = __builtin_shufflevector(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
  const bk_t8 u2 = __builtin_shufflevector(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13);
  const bk_t8 u3 = __builtin_shufflevector(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
  const bk_t8 u4 = __builtin_shufflevector(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13);
  const bk_t8 u5 = __builtin_shufflevector(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15);
  const bk_t8 u6 = __builtin_shufflevector(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13);
  const bk_t8 u7 = __builtin_shufflevector(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15);
  t8_store(out, __builtin_shufflevector(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11));
  t8_store(out + ld, __builtin_shufflevector(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11));
  t8_store(out + 2 * ld, __builtin_shufflevector(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11));
  t8_store(out + 3 * ld, __builtin_shufflevector(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11));
  t8_store(out + 4 * ld, __builtin_shufflevector(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15));
  t8_store(out + 5 * ld, __builtin_shufflevector(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15));
  t8_store(out + 6 * ld, __builtin_shufflevector(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15));
  t8_store(out + 7 * ld, __builtin_shufflevector(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15));
}

// out[r, c] = x[r + c * s] for rows [r0, r1) and columns [c0, c1) of a [rows, cols] block.
BK_CLONES void transpose_tile(float *out, const float *x, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                              int64_t cols, int64_t s) {
  int64_t r = r0;
  for (; r + 8 <= r1; r += 8) {
    int64_t c = c0;
    for (; c + 8 <= c1; c += 8) transpose8(out + r * cols + c, cols, x + r + c * s, s);
    for (; c < c1; ++c)
      for (int64_t i = 0; i < 8; ++i) out[(r + i) * cols + c] = x[r + i + c * s];
  }
  for (; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) out[r * cols + c] = x[r + c * s];
}

void transpose_copy(float *out, const float *x, const Walk &w) {
  const int last = w.nd - 1;
  const int64_t rows = w.shape[last - 1], cols = w.shape[last], s = w.sa[last];
  const int64_t blocks = w.numel / (rows * cols), bands = (rows + kTileR - 1) / kTileR;
  bk::parallel_ranges(bk::threads_for(w.numel, bk::kParallelMin), blocks * bands, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t b = t / bands, r0 = t % bands * kTileR;
      // the input offset of block b (the dimensions outside the transposed pair)
      int64_t off = 0, rest = b;
      for (int d = last - 2; d >= 0; --d) {
        off += rest % w.shape[d] * w.sa[d];
        rest /= w.shape[d];
      }
      const int64_t r1 = std::min(rows, r0 + kTileR);
      for (int64_t c0 = 0; c0 < cols; c0 += kTileC)
        transpose_tile(out + b * rows * cols, x + off, r0, r1, c0, std::min(cols, c0 + kTileC), cols, s);
    }
    return 0;
  });
}

}  // namespace

extern "C" int bk_strided_copy_f32(float *out, const float *x, const int64_t *shape,
                                   const int64_t *x_strides, int32_t ndim, void *) {
  BK_NOTNULL_IF(ndim > 0, x_strides);
  Walk w;
  if (make_walk(w, shape, x_strides, nullptr, ndim, __func__)) return 1;
  BK_NOTNULL_IF(w.numel > 0, out, x);
  // out must not overlap x there (a permutation reads what it would overwrite); the walk's
  // memmove covers the overlapping cases of plain copies only
  if (w.numel > 0 && transpose_walk(w) && (out + w.numel <= x || x + w.numel <= out)) {
    transpose_copy(out, x, w);
    return 0;
  }
  walk(w, [&](int64_t oo, int64_t oa, int64_t, int64_t len, int64_t s, int64_t) {
    float *o = out + oo;
    const float *a = x + oa;
    if (s == 1) {
      memmove(o, a, (size_t)len * sizeof(float));
    } else if (s == 0) {
      const float v = *a;
      for (int64_t i = 0; i < len; ++i) o[i] = v;
    } else {
      for (int64_t i = 0; i < len; ++i) o[i] = a[i * s];
    }
  });
  return 0;
}

// ---- elementwise ----------------------------------------------------------

namespace {

// One contiguous loop per op and broadcast pattern; the clones vectorise them
// for each ISA. out may alias a (or b) exactly.
#define BK_BINARY_LOOPS(NAME, EXPR)                                                          \
  BK_CLONES void NAME##_vv(float *o, const float *a, const float *b, int64_t n) {            \
    for (int64_t i = 0; i < n; ++i) {                                                        \
      const float x = a[i], y = b[i];                                                        \
      o[i] = EXPR;                                                                           \
    }                                                                                        \
  }                                                                                          \
  BK_CLONES void NAME##_vs(float *o, const float *a, float y, int64_t n) {                   \
    for (int64_t i = 0; i < n; ++i) {                                                        \
      const float x = a[i];                                                                  \
      o[i] = EXPR;                                                                           \
    }                                                                                        \
  }                                                                                          \
  BK_CLONES void NAME##_sv(float *o, float x, const float *b, int64_t n) {                   \
    for (int64_t i = 0; i < n; ++i) {                                                        \
      const float y = b[i];                                                                  \
      o[i] = EXPR;                                                                           \
    }                                                                                        \
  }                                                                                          \
  void NAME##_gen(float *o, const float *a, int64_t sa, const float *b, int64_t sb,          \
                  int64_t n) {                                                               \
    for (int64_t i = 0; i < n; ++i) {                                                        \
      const float x = a[i * sa], y = b[i * sb];                                              \
      o[i] = EXPR;                                                                           \
    }                                                                                        \
  }                                                                                          \
  void NAME##_run(float *o, const float *a, int64_t sa, const float *b, int64_t sb,          \
                  int64_t n) {                                                               \
    if (sa == 1 && sb == 1) NAME##_vv(o, a, b, n);                                           \
    else if (sa == 1 && sb == 0) NAME##_vs(o, a, *b, n);                                     \
    else if (sa == 0 && sb == 1) NAME##_sv(o, *a, b, n);                                     \
    else NAME##_gen(o, a, sa, b, sb, n);                                                     \
  }

BK_BINARY_LOOPS(add, x + y)
BK_BINARY_LOOPS(sub, x - y)
BK_BINARY_LOOPS(mul, x * y)
BK_BINARY_LOOPS(div, x / y)

typedef void (*BinaryRun)(float *, const float *, int64_t, const float *, int64_t, int64_t);

}  // namespace

extern "C" int bk_binary_f32(int32_t op, float *out, const float *a, const int64_t *a_strides,
                             const float *b, const int64_t *b_strides, const int64_t *shape,
                             int32_t ndim, void *) {
  BinaryRun run;
  switch (op) {
    case BK_ADD: run = add_run; break;
    case BK_SUB: run = sub_run; break;
    case BK_MUL: run = mul_run; break;
    case BK_DIV: run = div_run; break;
    default:
      return fail("%s: unknown binary op %d (expected 0..3: add, sub, mul, div)", __func__, op);
  }
  BK_NOTNULL_IF(ndim > 0, a_strides, b_strides);
  Walk w;
  if (make_walk(w, shape, a_strides, b_strides, ndim, __func__)) return 1;
  BK_NOTNULL_IF(w.numel > 0, out, a, b);
  walk(w, [&](int64_t oo, int64_t oa, int64_t ob, int64_t len, int64_t sa, int64_t sb) {
    run(out + oo, a + oa, sa, b + ob, sb, len);
  });
  return 0;
}

namespace {
BK_CLONES void neg_loop(float *o, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = -x[i];
}
// NaN passes through, as torch.relu does.
BK_CLONES void relu_loop(float *o, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = (x[i] > 0.0f || x[i] != x[i]) ? x[i] : 0.0f;
}
BK_CLONES void sqrt_loop(float *o, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = sqrtf(x[i]);
}
void exp_loop(float *o, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = expf(x[i]);
}
void log_loop(float *o, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = logf(x[i]);
}
}  // namespace

extern "C" int bk_unary_f32(int32_t op, float *out, const float *x, int64_t n, void *) {
  void (*loop)(float *, const float *, int64_t);
  switch (op) {
    case BK_NEG: loop = neg_loop; break;
    case BK_RELU: loop = relu_loop; break;
    case BK_EXP: loop = exp_loop; break;
    case BK_LOG: loop = log_loop; break;
    case BK_SQRT: loop = sqrt_loop; break;
    default:
      return fail("%s: unknown unary op %d (expected 0..4: neg, relu, exp, log, sqrt)", __func__,
                  op);
  }
  BK_NONNEG(n);
  BK_NOTNULL_IF(n > 0, out, x);
  elementwise(n, [&](int64_t lo, int64_t hi) { loop(out + lo, x + lo, hi - lo); });
  return 0;
}

namespace {
BK_CLONES void affine_loop(float *o, const float *x, int64_t n, float alpha, float beta) {
  for (int64_t i = 0; i < n; ++i) o[i] = alpha * x[i] + beta;
}
BK_CLONES void relu_bwd_loop(float *dx, const float *dy, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}
}  // namespace

extern "C" int bk_affine_f32(float *out, const float *x, int64_t n, float alpha, float beta,
                             void *) {
  BK_NONNEG(n);
  BK_NOTNULL_IF(n > 0, out, x);
  elementwise(n, [&](int64_t lo, int64_t hi) {
    affine_loop(out + lo, x + lo, hi - lo, alpha, beta);
  });
  return 0;
}

extern "C" int bk_relu_backward_f32(float *dx, const float *dy, const float *x, int64_t n,
                                    void *) {
  BK_NONNEG(n);
  BK_NOTNULL_IF(n > 0, dx, dy, x);
  elementwise(n, [&](int64_t lo, int64_t hi) {
    relu_bwd_loop(dx + lo, dy + lo, x + lo, hi - lo);
  });
  return 0;
}

// ---- sums -----------------------------------------------------------------

namespace {

// Accumulates in double (8 + 8 lanes, converted from float as loaded): exact enough
// for long reductions with cancellation, and still memory-bound.
typedef double bk_v8d __attribute__((vector_size(64)));
typedef float bk_v8f __attribute__((vector_size(32)));

BK_CLONES double sum_contig(const float *x, int64_t n) {
  bk_v8d a0 = {}, a1 = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    bk_v8f f0, f1;
    memcpy(&f0, x + i, sizeof f0);
    memcpy(&f1, x + i + 8, sizeof f1);
    a0 += __builtin_convertvector(f0, bk_v8d);
    a1 += __builtin_convertvector(f1, bk_v8d);
  }
  a0 += a1;
  double total = 0;
  for (int j = 0; j < 8; ++j) total += a0[j];
  for (; i < n; ++i) total += x[i];
  return total;
}

// Long rows are summed in blocks of this many elements (see bk_sum_f32).
constexpr int64_t kSumBlock = 1 << 16;

// A row of any length as blocks of kSumBlock added in order: the blocks of a long
// row can then be summed on several threads with the same result.
double sum_blocks(const float *x, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; i += kSumBlock) sum += sum_contig(x + i, std::min(kSumBlock, n - i));
  return sum;
}

BK_CLONES void add_row_d(double *acc, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

}  // namespace

extern "C" int bk_sum_f32(float *out, const float *x, int64_t outer, int64_t reduce,
                          int64_t inner, void *) {
  BK_SIZES3(outer, reduce, inner, on, total);
  BK_NOTNULL_IF(on > 0, out);
  BK_NOTNULL_IF(total > 0, x);
  // Every split below computes each output exactly as one thread would.
  const int nt = bk::threads_for(total, bk::kParallelMin);
  if (inner == 1) {
    if (outer >= nt) {
      bk::parallel_ranges(nt, outer, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t o = lo; o < hi; ++o) out[o] = (float)sum_blocks(x + o * reduce, reduce);
        return 0;
      });
      return 0;
    }
    // few long rows: the blocks of each over the threads, then added in order
    const int64_t nb = (reduce + kSumBlock - 1) / kSumBlock;
    double *part;
    BK_SCRATCH(part, bk::scratch_d(0, (size_t)nb));
    for (int64_t o = 0; o < outer; ++o) {
      const float *xo = x + o * reduce;
      bk::parallel_ranges(nt, nb, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t b = lo; b < hi; ++b)
          part[b] = sum_contig(xo + b * kSumBlock, std::min(kSumBlock, reduce - b * kSumBlock));
        return 0;
      });
      double sum = 0;
      for (int64_t b = 0; b < nb; ++b) sum += part[b];
      out[o] = (float)sum;
    }
    return 0;
  }
  if (inner < 64 && outer >= nt) {
    // short rows, many slices: whole slices per thread, accumulators on its stack
    bk::parallel_ranges(nt, outer, 1, [&](int64_t lo, int64_t hi) {
      double acc[64];
      for (int64_t o = lo; o < hi; ++o) {
        std::fill(acc, acc + inner, 0.0);
        const float *xo = x + o * reduce * inner;
        for (int64_t r = 0; r < reduce; ++r) add_row_d(acc, xo + r * inner, inner);
        for (int64_t i = 0; i < inner; ++i) out[o * inner + i] = (float)acc[i];
      }
      return 0;
    });
    return 0;
  }
  // each thread owns a range of columns through every slice
  double *acc;
  BK_SCRATCH(acc, bk::scratch_d(0, (size_t)inner));
  bk::parallel_ranges(nt, inner, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t o = 0; o < outer; ++o) {
      std::fill(acc + lo, acc + hi, 0.0);
      const float *xo = x + o * reduce * inner;
      for (int64_t r = 0; r < reduce; ++r) add_row_d(acc + lo, xo + r * inner + lo, hi - lo);
      float *oo = out + o * inner;
      for (int64_t i = lo; i < hi; ++i) oo[i] = (float)acc[i];
    }
    return 0;
  });
  return 0;
}
