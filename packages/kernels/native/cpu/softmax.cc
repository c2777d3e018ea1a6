// Softmax / log-softmax over the last axis, and the negative log-likelihood loss.
#include <math.h>

#include "common.h"

namespace {

BK_CLONES float row_max(const float *x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// Subtracting the row max keeps exp() in range (no overflow for large logits).
void softmax_row(float *o, const float *x, int64_t n, bool log) {
  float m = row_max(x, n);
  if (!(m > -INFINITY)) m = 0.0f;  // all -inf (or NaN): avoid inf - inf
  double s = 0;
  if (log) {
    for (int64_t i = 0; i < n; ++i) s += expf(x[i] - m);
    // (x - m) - log(s): x - m is exact near the max, so the large m never rounds the result
    const float ls = logf((float)s);  // s in [1, n]: float is plenty, and logf is an old symbol
    for (int64_t i = 0; i < n; ++i) o[i] = (x[i] - m) - ls;
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const float e = expf(x[i] - m);
      o[i] = e;
      s += e;
    }
    const float inv = (float)(1.0 / s);
    for (int64_t i = 0; i < n; ++i) o[i] *= inv;
  }
}

// Runs f(r) for every row, rows split over the threads when there are enough elements.
template <class F>
void by_rows(int64_t rows, int64_t cols, const F &f) {
  bk::parallel_ranges(bk::threads_for(rows * cols, bk::kParallelMin), rows, 1,
                      [&](int64_t lo, int64_t hi) {
                        for (int64_t r = lo; r < hi; ++r) f(r);
                        return 0;
                      });
}

}  // namespace

extern "C" int bk_softmax_f32(float *out, const float *x, int64_t rows, int64_t cols, int32_t log,
                              void *) {
  BK_SIZES2(rows, cols, total);
  BK_NOTNULL_IF(total > 0, out, x);
  if (cols == 0) return 0;
  by_rows(rows, cols, [&](int64_t r) { softmax_row(out + r * cols, x + r * cols, cols, log != 0); });
  return 0;
}

extern "C" int bk_softmax_backward_f32(float *dx, const float *dy, const float *y, int64_t rows,
                                       int64_t cols, int32_t log, void *) {
  BK_SIZES2(rows, cols, total);
  BK_NOTNULL_IF(total > 0, dx, dy, y);
  by_rows(rows, cols, [&](int64_t r) {
    float *d = dx + r * cols;
    const float *g = dy + r * cols, *o = y + r * cols;
    double s = 0;
    if (log) {
      // dx = dy - exp(y) * sum(dy), y = log-softmax
      for (int64_t i = 0; i < cols; ++i) s += g[i];
      const float fs = (float)s;
      for (int64_t i = 0; i < cols; ++i) d[i] = g[i] - expf(o[i]) * fs;
    } else {
      // dx = y * (dy - sum(dy * y))
      for (int64_t i = 0; i < cols; ++i) s += (double)g[i] * o[i];
      const float fs = (float)s;
      for (int64_t i = 0; i < cols; ++i) d[i] = o[i] * (g[i] - fs);
    }
  });
  return 0;
}

// All targets are checked before anything is written, so a bad batch leaves out untouched.
static int check_targets(const int32_t *target, int64_t rows, int64_t cols, const char *fn) {
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t t = target[r];
    if (t < 0 || t >= cols)
      return bk::fail("%s: target %d out of range [0, %lld) at row %lld", fn, t, (long long)cols,
                      (long long)r);
  }
  return 0;
}

extern "C" int bk_nll_loss_f32(float *out, const float *logp, const int32_t *target, int64_t rows,
                               int64_t cols, void *) {
  BK_SIZES2(rows, cols, total);
  BK_NOTNULL_IF(rows > 0, out, target);
  BK_NOTNULL_IF(total > 0, logp);
  if (check_targets(target, rows, cols, __func__)) return 1;
  for (int64_t r = 0; r < rows; ++r) out[r] = -logp[r * cols + target[r]];
  return 0;
}

extern "C" int bk_nll_loss_backward_f32(float *dlogp, const float *dout, const int32_t *target,
                                        int64_t rows, int64_t cols, void *) {
  BK_SIZES2(rows, cols, total);
  BK_NOTNULL_IF(total > 0, dlogp);
  BK_NOTNULL_IF(rows > 0, dout, target);
  if (check_targets(target, rows, cols, __func__)) return 1;
  for (int64_t i = 0; i < total; ++i) dlogp[i] = 0.0f;
  for (int64_t r = 0; r < rows; ++r) dlogp[r * cols + target[r]] = -dout[r];
  return 0;
}
