// Library identity, errors, memory movement, elementwise kernels and sums.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>

#include "common.h"

namespace bk {

static thread_local char g_error[1024] = "";

int fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_error, sizeof g_error, fmt, ap);
  va_end(ap);
  return 1;
}

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
int32_t bk_abi_version(void) { return 1; }

}  // extern "C"

// ---- memory movement ------------------------------------------------------

BK_CLONES static void fill_loop(float *out, int64_t n, float v) {
  for (int64_t i = 0; i < n; ++i) out[i] = v;
}

extern "C" int bk_fill_f32(float *out, int64_t n, float value, void *) {
  BK_NONNEG(n);
  BK_NOTNULL_IF(n > 0, out);
  fill_loop(out, n, value);
  return 0;
}

extern "C" int bk_copy_f32(float *out, const float *x, int64_t n, void *) {
  BK_NONNEG(n);
  BK_NOTNULL_IF(n > 0, out);
  BK_NOTNULL_IF(n > 0, x);
  if (n > 0 && out != x) memmove(out, x, (size_t)n * sizeof(float));
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

// Calls f(out_offset, a_offset, b_offset, len, a_stride, b_stride) per innermost run.
template <class F>
void walk(const Walk &w, F &&f) {
  if (w.numel == 0) return;
  if (w.nd == 0) {
    f(0, 0, 0, 1, 0, 0);
    return;
  }
  const int last = w.nd - 1;
  const int64_t inner = w.shape[last];
  const int64_t outer = w.numel / inner;
  int64_t idx[kMaxDims] = {0};
  int64_t oa = 0, ob = 0, oo = 0;
  for (int64_t t = 0; t < outer; ++t) {
    f(oo, oa, ob, inner, w.sa[last], w.sb[last]);
    oo += inner;
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

}  // namespace

extern "C" int bk_strided_copy_f32(float *out, const float *x, const int64_t *shape,
                                   const int64_t *x_strides, int32_t ndim, void *) {
  BK_REQUIRE(ndim >= 0 && ndim <= kMaxDims, "%s: ndim must be in [0, 8] (got %d)", __func__,
             ndim);
  BK_NOTNULL_IF(ndim > 0, shape);
  BK_NOTNULL_IF(ndim > 0, x_strides);
  Walk w;
  if (make_walk(w, shape, x_strides, nullptr, ndim, __func__)) return 1;
  BK_NOTNULL_IF(w.numel > 0, out);
  BK_NOTNULL_IF(w.numel > 0, x);
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
  BK_REQUIRE(ndim >= 0 && ndim <= kMaxDims, "%s: ndim must be in [0, 8] (got %d)", __func__,
             ndim);
  BK_NOTNULL_IF(ndim > 0, shape);
  BK_NOTNULL_IF(ndim > 0, a_strides);
  BK_NOTNULL_IF(ndim > 0, b_strides);
  Walk w;
  if (make_walk(w, shape, a_strides, b_strides, ndim, __func__)) return 1;
  BK_NOTNULL_IF(w.numel > 0, out);
  BK_NOTNULL_IF(w.numel > 0, a);
  BK_NOTNULL_IF(w.numel > 0, b);
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
  BK_NOTNULL_IF(n > 0, out);
  BK_NOTNULL_IF(n > 0, x);
  loop(out, x, n);
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
  BK_NOTNULL_IF(n > 0, out);
  BK_NOTNULL_IF(n > 0, x);
  affine_loop(out, x, n, alpha, beta);
  return 0;
}

extern "C" int bk_relu_backward_f32(float *dx, const float *dy, const float *x, int64_t n,
                                    void *) {
  BK_NONNEG(n);
  BK_NOTNULL_IF(n > 0, dx);
  BK_NOTNULL_IF(n > 0, dy);
  BK_NOTNULL_IF(n > 0, x);
  relu_bwd_loop(dx, dy, x, n);
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

BK_CLONES void add_row_d(double *acc, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

}  // namespace

extern "C" int bk_sum_f32(float *out, const float *x, int64_t outer, int64_t reduce,
                          int64_t inner, void *) {
  BK_SIZES3(outer, reduce, inner, on, total);
  BK_NOTNULL_IF(on > 0, out);
  BK_NOTNULL_IF(total > 0, x);
  if (inner == 1) {
    for (int64_t o = 0; o < outer; ++o) out[o] = (float)sum_contig(x + o * reduce, reduce);
    return 0;
  }
  double *acc;
  BK_SCRATCH(acc, bk::scratch_d(0, (size_t)inner));
  for (int64_t o = 0; o < outer; ++o) {
    std::fill(acc, acc + inner, 0.0);
    const float *xo = x + o * reduce * inner;
    for (int64_t r = 0; r < reduce; ++r) add_row_d(acc, xo + r * inner, inner);
    float *oo = out + o * inner;
    for (int64_t i = 0; i < inner; ++i) oo[i] = (float)acc[i];
  }
  return 0;
}
