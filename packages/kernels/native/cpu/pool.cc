// 2-D pooling: the per-element math of bagua_pool_math.h (the CUDA library's), run
// over ranges of elements on the kernel threads.
#include <math.h>
#include <stdlib.h>

#include <algorithm>

#include "bagua_geom.h"
#include "bagua_pool_math.h"
#include "common.h"

using bk::PGeom;
using bk::PlanePos;
using bk::pool_parse;
using bk::Span;

namespace {

// Runs f(i0, i1) over [0, n) on as many threads as `work` units are worth. Ranges are
// cut at multiples of 16 elements, so no two threads write one cache line.
template <class F>
void by_ranges(int64_t n, int64_t work, const F &f) {
  bk::parallel_ranges(bk::threads_for(work, bk::kParallelMin), n, 16, [&](int64_t i0, int64_t i1) {
    f(i0, i1);
    return 0;
  });
}

// a * b, or INT64_MAX where it overflows (a thread count only)
int64_t work_of(int64_t a, int64_t b) {
  int64_t r;
  return bk::mul_ok(a, b, &r) ? r : INT64_MAX;
}

// Calls f(p, y, x0, x1, i0) for the row pieces of elements [lo, hi) of [planes, rows,
// cols]: columns [x0, x1) of row y of plane p, whose first element is i0. One division
// per range instead of two per element.
template <class F>
void each_row(int64_t lo, int64_t hi, int rows, int cols, const F &f) {
  PlanePos q = bk::plane_pos(lo, rows, cols);
  for (int64_t i = lo; i < hi;) {
    const int x1 = (int)std::min<int64_t>(cols, q.x + (hi - i));
    f(q.p, q.y, q.x, x1, i);
    i += x1 - q.x;
    q.x = 0;
    if (++q.y == rows) {
      q.y = 0;
      ++q.p;
    }
  }
}

// bk::PoolAxes's answers, looked up: the per-axis functions run once per row, column
// and output row / column of a call (tables of h + w + oh + ow entries) instead of per
// element or window, where their divisions and tap loops would dominate.
class AxisTables {
 public:
  AxisTables() = default;
  AxisTables(const AxisTables &) = delete;
  AxisTables &operator=(const AxisTables &) = delete;
  ~AxisTables() { free(mem_); }

  // false: out of memory
  bool fill(const PGeom &g, bool adaptive) {
    const bk::PoolAxes ax{&g};
    const size_t n_in = (size_t)g.h + g.w, n_out = (size_t)g.oh + g.ow;
    mem_ = malloc((n_in + n_out) * sizeof(Span) + n_out * sizeof(int) + 1);
    if (!mem_) return false;
    in_y_ = (Span *)mem_;
    in_x_ = in_y_ + g.h;
    out_y_ = in_x_ + g.w;
    out_x_ = out_y_ + g.oh;
    count_y_ = (int *)(out_x_ + g.ow);
    count_x_ = count_y_ + g.oh;
    // fixed windows: candidates per input, divisor factors per output; adaptive: the
    // first candidate per input (in lo), the window per output
    for (int i = 0; i < g.h; ++i) in_y_[i] = adaptive ? Span{ax.first_y(i), 0} : ax.cand_y(i);
    for (int i = 0; i < g.w; ++i) in_x_[i] = adaptive ? Span{ax.first_x(i), 0} : ax.cand_x(i);
    for (int o = 0; o < g.oh; ++o) {
      if (adaptive)
        out_y_[o] = ax.win_y(o);
      else
        count_y_[o] = ax.count_y(o);
    }
    for (int o = 0; o < g.ow; ++o) {
      if (adaptive)
        out_x_[o] = ax.win_x(o);
      else
        count_x_[o] = ax.count_x(o);
    }
    return true;
  }

  Span cand_y(int iy) const { return in_y_[iy]; }
  Span cand_x(int ix) const { return in_x_[ix]; }
  int count_y(int oy) const { return count_y_[oy]; }
  int count_x(int ox) const { return count_x_[ox]; }
  Span win_y(int oy) const { return out_y_[oy]; }
  Span win_x(int ox) const { return out_x_[ox]; }
  int first_y(int iy) const { return in_y_[iy].lo; }
  int first_x(int ix) const { return in_x_[ix].lo; }

 private:
  void *mem_ = nullptr;
  Span *in_y_ = nullptr, *in_x_ = nullptr, *out_y_ = nullptr, *out_x_ = nullptr;
  int *count_y_ = nullptr, *count_x_ = nullptr;
};

// Runs body(t, i0, i1) over ranges of [0, n) once the tables are filled.
template <class F>
int with_tables(const PGeom &g, bool adaptive, int64_t n, int64_t work, const char *fn, const F &body) {
  if (n == 0) return 0;
  AxisTables t;
  if (!t.fill(g, adaptive)) return bk::fail_status(BK_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
  by_ranges(n, work, [&](int64_t i0, int64_t i1) { body(t, i0, i1); });
  return 0;
}

// The forward passes: out(t, p, oy, ox, i) for each output element i.
template <class F>
int outputs(const PGeom &g, bool adaptive, int64_t work, const char *fn, const F &out) {
  return with_tables(g, adaptive, g.planes * g.oh * g.ow, work, fn, [&](const AxisTables &t, int64_t lo, int64_t hi) {
    each_row(lo, hi, g.oh, g.ow, [&](int64_t p, int oy, int x0, int x1, int64_t i0) {
      for (int ox = x0; ox < x1; ++ox) out(t, p, oy, ox, i0 + (ox - x0));
    });
  });
}

// The backward passes: dx in row pieces, zeroed, then summed into by grad(t, p, iy, x0,
// x1, sink), one of bagua_pool_math.h's *_in functions.
template <class F>
int input_grads(float *dx, const PGeom &g, bool adaptive, int64_t work, const char *fn, const F &grad) {
  return with_tables(g, adaptive, g.planes * g.h * g.w, work, fn, [&](const AxisTables &t, int64_t lo, int64_t hi) {
    each_row(lo, hi, g.h, g.w, [&](int64_t p, int iy, int x0, int x1, int64_t i0) {
      std::fill(dx + i0, dx + i0 + (x1 - x0), 0.0f);
      bk::RowSum sink{dx + i0 - x0};
      grad(t, p, iy, x0, x1, sink);
    });
  });
}

// NHWC input gradients (below)
int nhwc_avg_backward(float *dx, const float *dy, const PGeom &g);
int nhwc_adaptive_backward(float *dx, const float *dy, const PGeom &g);

// The input gradient of the average poolings (plain or adaptive): each input row's
// gather `in(g, tables, dy of its plane, iy, x0, x1, sink)`.
template <class In>
int average_backward(float *dx, const float *dy, const bk_pool2d_geom *geom, bool adaptive, const char *fn,
                     const In &in) {
  PGeom g;
  if (pool_parse(g, geom, adaptive, fn)) return 1;
  const int64_t hw = (int64_t)g.h * g.w, ohw = (int64_t)g.oh * g.ow;
  if (g.planes > 0 && hw > 0 && !dx) return bk::fail("%s: dx is NULL", fn);
  if (g.planes > 0 && ohw > 0 && !dy) return bk::fail("%s: dy is NULL", fn);
  if (g.nhwc) {
    if ((adaptive ? nhwc_adaptive_backward(dx, dy, g) : nhwc_avg_backward(dx, dy, g)) != 0)
      return bk::fail_status(BK_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    return 0;
  }
  return input_grads(dx, g, adaptive, work_of(g.planes, hw + ohw), fn,
                     [&](const AxisTables &t, int64_t p, int iy, int x0, int x1, bk::RowSum &sink) {
                       in(g, t, dy + p * ohw, iy, x0, x1, sink);
                     });
}

// ---- NHWC (channels-last) planes -------------------------------------------------
// The same windows over [n, h, w, c] storage: each output pixel's window is walked once
// for all channels, whose loops run over contiguous memory (vectorised). Per element the
// additions and comparisons come in the order of the NCHW kernels (taps in (ky, kx)
// order; backward sums over outputs in ascending order), so both layouts give the same bits.

// One channel row: running max (and index `pos`) over a tap, NaN wins and stays (the
// first NaN's index, as max_pool_out's early exit).
BK_CLONES void max_row(float *y, int32_t *ind, const float *x, int64_t c, int32_t pos) {
  for (int64_t k = 0; k < c; ++k) {
    const float v = x[k], b = y[k];
    const bool take = (b == b) & ((v > b) | (v != v) | (ind[k] < 0));
    y[k] = take ? v : b;
    ind[k] = take ? pos : ind[k];
  }
}

BK_CLONES void add_row(float *o, const float *x, int64_t c) {
  for (int64_t k = 0; k < c; ++k) o[k] += x[k];
}

BK_CLONES void scale_row(float *o, const float *x, float s, int64_t c) {
  for (int64_t k = 0; k < c; ++k) o[k] = x[k] * s;
}

// Runs f(n, oy) over the output rows of every image, on the kernel threads.
template <class F>
void nhwc_out_rows(const PGeom &g, int64_t work, const F &f) {
  const int64_t images = g.c > 0 ? g.planes / g.c : 0;
  by_ranges(images * g.oh, work, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) f(r / g.oh, (int)(r % g.oh));
  });
}

// The input gradients: a scatter over each image's outputs in ascending order into its
// zeroed dx (one image per thread at a time, so no two threads add into one element).
template <class F>
int nhwc_scatter(float *dx, const PGeom &g, int64_t work, const F &f) {
  const int64_t images = g.c > 0 ? g.planes / g.c : 0, img = (int64_t)g.h * g.w * g.c;
  return bk::parallel_ranges(bk::threads_for(work, bk::kParallelMin), images, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      float *d = dx + n * img;
      std::fill(d, d + img, 0.0f);
      for (int oy = 0; oy < g.oh; ++oy)
        for (int ox = 0; ox < g.ow; ++ox) f(d, n, oy, ox);
    }
    return 0;
  });
}

// Calls tap(iy, ix) for the in-bounds taps of output (oy, ox)'s window, in (ky, kx) order.
template <class F>
inline void each_tap(const PGeom &g, int oy, int ox, const F &tap) {
  const int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
  for (int ky = 0; ky < g.kh; ky++) {
    const int iy = y0 + ky * g.dh;
    if (iy < 0 || iy >= g.h) continue;
    for (int kx = 0; kx < g.kw; kx++) {
      const int ix = x0 + kx * g.dw;
      if (ix >= 0 && ix < g.w) tap(iy, ix);
    }
  }
}

void nhwc_max_forward(float *y, int32_t *ind, const float *x, const PGeom &g) {
  const int64_t C = g.c;
  nhwc_out_rows(g, work_of(g.planes * g.oh * g.ow, (int64_t)g.kh * g.kw), [&](int64_t n, int oy) {
    const float *xn = x + n * g.h * g.w * C;
    for (int ox = 0; ox < g.ow; ++ox) {
      const int64_t o = ((n * g.oh + oy) * g.ow + ox) * C;
      std::fill(y + o, y + o + C, -INFINITY);
      std::fill(ind + o, ind + o + C, -1);
      each_tap(g, oy, ox, [&](int iy, int ix) {
        max_row(y + o, ind + o, xn + ((int64_t)iy * g.w + ix) * C, C, iy * g.w + ix);
      });
    }
  });
}

void nhwc_avg_forward(float *y, const float *x, const PGeom &g) {
  const int64_t C = g.c;
  const bk::PoolAxes ax{&g};
  nhwc_out_rows(g, work_of(g.planes * g.oh * g.ow, (int64_t)g.kh * g.kw), [&](int64_t n, int oy) {
    const float *xn = x + n * g.h * g.w * C;
    const int cy = ax.count_y(oy);
    for (int ox = 0; ox < g.ow; ++ox) {
      float *yo = y + ((n * g.oh + oy) * g.ow + ox) * C;
      std::fill(yo, yo + C, 0.0f);
      each_tap(g, oy, ox, [&](int iy, int ix) { add_row(yo, xn + ((int64_t)iy * g.w + ix) * C, C); });
      const float inv = bk::avg_inv(cy, ax.count_x(ox));
      for (int64_t k = 0; k < C; ++k) yo[k] *= inv;
    }
  });
}

int nhwc_adaptive_forward(float *y, const float *x, const PGeom &g) {
  const int64_t C = g.c;
  const bk::PoolAxes ax{&g};
  int oom = 0;
  nhwc_out_rows(g, work_of(g.planes, (int64_t)g.h * g.w + (int64_t)g.oh * g.ow), [&](int64_t n, int oy) {
    double *acc = bk::scratch_d(0, (size_t)C);  // in double, as adaptive_avg_out
    if (!acc) {
      __atomic_store_n(&oom, 1, __ATOMIC_RELAXED);
      return;
    }
    const float *xn = x + n * g.h * g.w * C;
    const Span ys = ax.win_y(oy);
    for (int ox = 0; ox < g.ow; ++ox) {
      const Span xs = ax.win_x(ox);
      std::fill(acc, acc + C, 0.0);
      for (int iy = ys.lo; iy < ys.hi; iy++)
        for (int ix = xs.lo; ix < xs.hi; ix++) {
          const float *xp = xn + ((int64_t)iy * g.w + ix) * C;
          for (int64_t k = 0; k < C; ++k) acc[k] += xp[k];
        }
      const double cnt = (double)((ys.hi - ys.lo) * (xs.hi - xs.lo));
      float *yo = y + ((n * g.oh + oy) * g.ow + ox) * C;
      for (int64_t k = 0; k < C; ++k) yo[k] = (float)(acc[k] / cnt);
    }
  });
  return oom;
}

int nhwc_max_backward(float *dx, const float *dy, const int32_t *ind, const PGeom &g) {
  const int64_t C = g.c, hw = (int64_t)g.h * g.w;
  return nhwc_scatter(dx, g, work_of(g.planes, hw + (int64_t)g.oh * g.ow), [&](float *d, int64_t n, int oy, int ox) {
    const int64_t o = ((n * g.oh + oy) * g.ow + ox) * C;
    for (int64_t k = 0; k < C; ++k)
      if (ind[o + k] >= 0) d[ind[o + k] * C + k] += dy[o + k];
  });
}

int nhwc_avg_backward(float *dx, const float *dy, const PGeom &g) {
  const int64_t C = g.c;
  const bk::PoolAxes ax{&g};
  int oom = 0;
  const int rc = nhwc_scatter(dx, g, work_of(g.planes, (int64_t)g.h * g.w + (int64_t)g.oh * g.ow),
                              [&](float *d, int64_t n, int oy, int ox) {
    // dy / divisor rounded once, then added (stored first, so no fused multiply-add rounds
    // differently from the NCHW kernels)
    float *dd = bk::scratch(0, (size_t)C);
    if (!dd) {
      __atomic_store_n(&oom, 1, __ATOMIC_RELAXED);
      return;
    }
    scale_row(dd, dy + ((n * g.oh + oy) * g.ow + ox) * C, bk::avg_inv(ax.count_y(oy), ax.count_x(ox)), C);
    each_tap(g, oy, ox, [&](int iy, int ix) { add_row(d + ((int64_t)iy * g.w + ix) * C, dd, C); });
  });
  return rc | oom;
}

int nhwc_adaptive_backward(float *dx, const float *dy, const PGeom &g) {
  const int64_t C = g.c;
  const bk::PoolAxes ax{&g};
  return nhwc_scatter(dx, g, work_of(g.planes, (int64_t)g.h * g.w + (int64_t)g.oh * g.ow),
                      [&](float *d, int64_t n, int oy, int ox) {
                        const float *dyo = dy + ((n * g.oh + oy) * g.ow + ox) * C;
                        const Span ys = ax.win_y(oy), xs = ax.win_x(ox);
                        const float cnt = (float)((ys.hi - ys.lo) * (xs.hi - xs.lo));
                        for (int iy = ys.lo; iy < ys.hi; iy++)
                          for (int ix = xs.lo; ix < xs.hi; ix++) {
                            float *dp = d + ((int64_t)iy * g.w + ix) * C;
                            // a division, as adaptive_avg_in's (not a multiply by the inverse)
                            for (int64_t k = 0; k < C; ++k) dp[k] += dyo[k] / cnt;
                          }
                      });
}

}  // namespace

extern "C" int bk_max_pool2d_f32(float *y, int32_t *indices, const float *x, const bk_pool2d_geom *geom,
                                 void *) {
  PGeom g;
  if (pool_parse(g, geom, false, __func__)) return 1;
  const int64_t total = g.planes * g.oh * g.ow, hw = (int64_t)g.h * g.w;
  BK_NOTNULL_IF(total > 0, y, indices);
  BK_NOTNULL_IF(total > 0 && hw > 0, x);
  if (g.nhwc) {
    nhwc_max_forward(y, indices, x, g);
    return 0;
  }
  return outputs(g, false, work_of(total, (int64_t)g.kh * g.kw), __func__,
                 [&](const AxisTables &, int64_t p, int oy, int ox, int64_t i) {
                   bk::max_pool_out(x + p * hw, g, oy, ox, y[i], indices[i]);
                 });
}

extern "C" int bk_max_pool2d_backward_f32(float *dx, const float *dy, const int32_t *indices,
                                          const bk_pool2d_geom *geom, void *) {
  PGeom g;
  if (pool_parse(g, geom, false, __func__)) return 1;
  const int64_t hw = (int64_t)g.h * g.w, ohw = (int64_t)g.oh * g.ow;
  BK_NOTNULL_IF(g.planes > 0 && hw > 0, dx);
  BK_NOTNULL_IF(g.planes > 0 && ohw > 0, dy, indices);
  // indices come from outside: check them all before writing
  for (int64_t i = 0; i < g.planes * ohw; ++i)
    if (indices[i] < -1 || indices[i] >= hw)
      return bk::fail("%s: index %d at output %lld is outside the plane of %lld elements",
                      __func__, indices[i], (long long)i, (long long)hw);
  if (g.nhwc) return nhwc_max_backward(dx, dy, indices, g);
  // A scatter by the saved indices, a plane at a time, outputs in ascending order: each input
  // sums its outputs in the order the shared gather (max_pool_in, the GPU's) does, so the bits
  // agree; one pass over the outputs, where the gather looks at each from every row it covers.
  const int nt = bk::threads_for(work_of(g.planes, hw + ohw), bk::kParallelMin);
  return bk::parallel_ranges(nt, g.planes, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float *d = dx + p * hw;
      const float *o = dy + p * ohw;
      const int32_t *ix = indices + p * ohw;
      std::fill(d, d + hw, 0.0f);
      for (int64_t i = 0; i < ohw; ++i)
        if (ix[i] >= 0) d[ix[i]] += o[i];
    }
    return 0;
  });
}

extern "C" int bk_avg_pool2d_f32(float *y, const float *x, const bk_pool2d_geom *geom, void *) {
  PGeom g;
  if (pool_parse(g, geom, false, __func__)) return 1;
  const int64_t total = g.planes * g.oh * g.ow, hw = (int64_t)g.h * g.w;
  BK_NOTNULL_IF(total > 0, y);
  BK_NOTNULL_IF(total > 0 && hw > 0, x);
  if (g.nhwc) {
    nhwc_avg_forward(y, x, g);
    return 0;
  }
  return outputs(g, false, work_of(total, (int64_t)g.kh * g.kw), __func__,
                 [&](const AxisTables &t, int64_t p, int oy, int ox, int64_t i) {
                   y[i] = bk::avg_pool_out(x + p * hw, g, t, oy, ox);
                 });
}

extern "C" int bk_avg_pool2d_backward_f32(float *dx, const float *dy, const bk_pool2d_geom *geom,
                                          void *) {
  return average_backward(dx, dy, geom, false, __func__,
                          [&](const PGeom &g, const AxisTables &t, const float *dyp, int iy, int x0, int x1,
                              bk::RowSum &sink) { bk::avg_pool_in(dyp, g, t, iy, x0, x1, sink); });
}

extern "C" int bk_adaptive_avg_pool2d_f32(float *y, const float *x, const bk_pool2d_geom *geom, void *) {
  PGeom g;
  if (pool_parse(g, geom, true, __func__)) return 1;
  const int64_t total = g.planes * g.oh * g.ow, hw = (int64_t)g.h * g.w;
  BK_NOTNULL_IF(total > 0, y, x);
  if (g.nhwc) {
    if (total > 0 && nhwc_adaptive_forward(y, x, g))
      return bk::fail_status(BK_ERR_OUT_OF_MEMORY, "%s: out of memory", __func__);
    return 0;
  }
  return outputs(g, true, work_of(g.planes, hw + (int64_t)g.oh * g.ow), __func__,
                 [&](const AxisTables &t, int64_t p, int oy, int ox, int64_t i) {
                   y[i] = bk::adaptive_avg_out(x + p * hw, g, t, oy, ox);
                 });
}

extern "C" int bk_adaptive_avg_pool2d_backward_f32(float *dx, const float *dy,
                                                   const bk_pool2d_geom *geom, void *) {
  return average_backward(dx, dy, geom, true, __func__,
                          [&](const PGeom &g, const AxisTables &t, const float *dyp, int iy, int x0, int x1,
                              bk::RowSum &sink) { bk::adaptive_avg_in(dyp, g, t, iy, x0, x1, sink); });
}
