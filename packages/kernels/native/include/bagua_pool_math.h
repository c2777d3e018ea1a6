/* bagua_pool_math.h: 2-D pooling math shared by the CPU (g++) and CUDA (nvcc) libraries.
 *
 * One output element (forward) or one input-gradient element (backward) at a time,
 * host+device code: cuda/pool.cu's kernels call the *_at functions over flat indices,
 * cpu/pool.cc walks rows of element ranges and calls the position functions they wrap,
 * so the CPU tests exercise the arithmetic the GPU runs, bit for bit.
 *
 * Rules (PyTorch's unless said): max pooling pads with -inf (only in-bounds positions
 * compete), NaN wins and propagates, and an index is -1 only when a window misses the
 * plane. Average pooling divides by the in-bounds count, or with count_include_pad by the
 * count inside [-pad, size + pad); dilation (not in PyTorch's avg_pool2d) spaces the taps
 * as for max pooling. Adaptive windows are [floor(i*size/out), ceil((i+1)*size/out)).
 * Backward passes gather: each input sums, in ascending output order, the outputs whose
 * window holds it. No atomics, deterministic, and the same order of additions as a scatter
 * over the outputs in order would give.
 *
 * Spatial sizes are int: pool_parse (bagua_geom.h) refuses geometries whose positions,
 * window extents or plane indices would not fit.
 */
#ifndef BAGUA_POOL_MATH_H
#define BAGUA_POOL_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "bagua_bn_math.h" /* BK_HD */

namespace bk {

struct PGeom {
  int64_t planes;
  int h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
  bool include_pad;
  bool nhwc;     /* planes stored [n, h, w, c] (BK_LAYOUT_NHWC) */
  int64_t c;     /* channels per image when nhwc */
};

/* Element i of [planes, rows, cols]: its plane, row and column. */
struct PlanePos {
  int64_t p;
  int y, x;
};
BK_HD inline PlanePos plane_pos(int64_t i, int rows, int cols) {
  const int64_t t = i / cols;
  return PlanePos{t / rows, (int)(t % rows), (int)(i % cols)};
}

/* A half-open range [lo, hi) of positions along one axis. */
struct Span {
  int lo, hi;
};

/* Outputs along one axis whose window (o*stride - pad + k*dil, k < kernel) may hold input
 * position i. Callers still check membership exactly (dilation leaves holes). */
BK_HD inline Span pool_candidates(int i, int pad, int stride, int kernel, int dil, int out) {
  const int span = (kernel - 1) * dil; /* o*stride in [i + pad - span, i + pad] */
  const int a = i + pad - span;
  const int hi = (i + pad) / stride + 1;
  return Span{a <= 0 ? 0 : (a + stride - 1) / stride, hi < out ? hi : out};
}

/* Whether offset t from a window's start is one of its taps (k * dil, k < kernel). Without
 * dilation every candidate's offset is (pool_candidates), and the division is skipped. */
BK_HD inline bool window_tap(int t, int dil, int kernel) {
  if (dil == 1) return t >= 0 && t < kernel;
  return t >= 0 && t % dil == 0 && t / dil < kernel;
}

/* One axis's factor of an average window's divisor (the divisor is the product of the two
 * axes'): the taps of output o inside [0, size), or inside [-pad, size + pad). */
BK_HD inline int avg_axis_count(int o, int size, int pad, int stride, int kernel, int dil, bool include_pad) {
  const int start = o * stride - pad;
  int n = 0;
  for (int k = 0; k < kernel; k++) {
    const int i = start + k * dil;
    n += include_pad ? i < size + pad : (i >= 0 && i < size);
  }
  return n;
}

BK_HD inline float avg_inv(int count_y, int count_x) {
  const int count = count_y * count_x;
  return count > 0 ? 1.f / (float)count : 0.f;
}

/* Adaptive window o of `out` over `size`. */
BK_HD inline Span adaptive_range(int o, int size, int out) {
  return Span{(int)(((int64_t)o * size) / out), (int)((((int64_t)o + 1) * size + out - 1) / out)};
}

/* The first adaptive output whose window may hold input position i: every window before
 * floor(i*out/size) - 1 ends at or before i. */
BK_HD inline int adaptive_first(int i, int size, int out) {
  const int o = (int)(((int64_t)i * out) / size);
  return o > 0 ? o - 1 : 0;
}

/* What the per-element functions ask about each axis, computed on the spot (the CUDA
 * kernels). The CPU library asks a table filled once per call from the same functions. */
struct PoolAxes {
  const PGeom *g;
  BK_HD Span cand_y(int iy) const { return pool_candidates(iy, g->ph, g->sh, g->kh, g->dh, g->oh); }
  BK_HD Span cand_x(int ix) const { return pool_candidates(ix, g->pw, g->sw, g->kw, g->dw, g->ow); }
  BK_HD int count_y(int oy) const { return avg_axis_count(oy, g->h, g->ph, g->sh, g->kh, g->dh, g->include_pad); }
  BK_HD int count_x(int ox) const { return avg_axis_count(ox, g->w, g->pw, g->sw, g->kw, g->dw, g->include_pad); }
  BK_HD Span win_y(int oy) const { return adaptive_range(oy, g->h, g->oh); }
  BK_HD Span win_x(int ox) const { return adaptive_range(ox, g->w, g->ow); }
  BK_HD int first_y(int iy) const { return adaptive_first(iy, g->h, g->oh); }
  BK_HD int first_x(int ix) const { return adaptive_first(ix, g->w, g->ow); }
};

/* v where c holds, else +0, by masking its bits: compilers turn `c ? v : 0.f` into a
 * branch, mispredicted half the time when c is which output's maximum an input is. */
BK_HD inline float keep_if(bool c, float v) {
  uint32_t b;
  memcpy(&b, &v, sizeof b);
  b &= 0u - (uint32_t)c;
  memcpy(&v, &b, sizeof v);
  return v;
}

/* Max pooling of output (oy, ox) of plane xp: its value and the in-plane index of it. `ps`: the
 * distance between a plane's neighbouring pixels (1 in NCHW, the channel count in NHWC). */
BK_HD inline void max_pool_out(const float *xp, const PGeom &g, int oy, int ox, float &y, int32_t &ind,
                               int64_t ps = 1) {
  const int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
  float best = -INFINITY;
  int arg = -1;
  for (int ky = 0; ky < g.kh; ky++) {
    const int iy = y0 + ky * g.dh;
    if (iy < 0 || iy >= g.h) continue;
    for (int kx = 0; kx < g.kw; kx++) {
      const int ix = x0 + kx * g.dw;
      if (ix < 0 || ix >= g.w) continue;
      const float v = xp[(iy * g.w + ix) * ps];
      if (v > best || v != v || arg < 0) {
        best = v;
        arg = iy * g.w + ix;
        if (v != v) {
          ky = g.kh; /* done: NaN wins */
          break;
        }
      }
    }
  }
  y = best;
  ind = arg;
}

/* The backward passes produce the gradient of columns [x0, x1) of one input row at a
 * time, handing each input column's terms to a sink, add(ix, v), ix one of the segment's
 * columns: in ascending output order for any one column, so that its sum has one order of
 * additions whatever the segment. A term may be +0 where nothing is due (max pooling, to
 * spare a branch); adding it changes nothing, as every sum starts at +0 and so is never -0. */

/* One input's sum, in a register: the CUDA kernels' thread per input element (x1 = x0 + 1). */
struct InputSum {
  int x;
  float acc;
  BK_HD void add(int ix, float v) { acc += keep_if(ix == x, v); }
};

/* A row segment's sums in memory, zeroed by the caller: the CPU library, a row at a time,
 * so that the per-output work (indices, divisors) is shared by the segment's inputs. */
struct RowSum {
  float *row; /* column 0 of the input row */
  BK_HD void add(int ix, float v) { row[ix] += v; }
};

/* Max pooling: each input sums the dy of the outputs (planes dyp, ip) whose recorded
 * maximum it is. An index outside its own output's window is never summed. */
template <class Axes, class Sink>
BK_HD inline void max_pool_in(const float *dyp, const int32_t *ip, const PGeom &g, const Axes &ax, int iy, int x0,
                              int x1, Sink &sink, int64_t ps = 1) {
  const Span ys = ax.cand_y(iy);
  const int ox0 = ax.cand_x(x0).lo, ox1 = ax.cand_x(x1 - 1).hi; /* candidates are monotone in x */
  const int row = iy * g.w;
  for (int oy = ys.lo; oy < ys.hi; oy++)
    for (int ox = ox0; ox < ox1; ox++) {
      const int64_t o = (int64_t)(oy * g.ow + ox) * ps;
      const int ix = ip[o] - row;
      /* branch-free (which output's maximum an input is, is a coin toss; & not &&): an
       * index elsewhere adds +0 to a column of the segment near ox's window, so that such
       * additions do not queue on one column */
      const int s = ox * g.sw - g.pw, near = s < x0 ? x0 : s >= x1 ? x1 - 1 : s;
      const bool in_row = (ix >= x0) & (ix < x1);
      const int c = in_row ? ix : near;
      sink.add(c, keep_if(in_row & window_tap(c - s, g.dw, g.kw), dyp[o]));
    }
}

template <class Axes>
BK_HD inline float avg_pool_out(const float *xp, const PGeom &g, const Axes &ax, int oy, int ox, int64_t ps = 1) {
  const int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
  float s = 0.f;
  for (int ky = 0; ky < g.kh; ky++) {
    const int iy = y0 + ky * g.dh;
    if (iy < 0 || iy >= g.h) continue;
    for (int kx = 0; kx < g.kw; kx++) {
      const int ix = x0 + kx * g.dw;
      if (ix >= 0 && ix < g.w) s += xp[(iy * g.w + ix) * ps];
    }
  }
  return s * avg_inv(ax.count_y(oy), ax.count_x(ox));
}

/* Average pooling: each input sums dy / divisor over the windows that hold it. */
template <class Axes, class Sink>
BK_HD inline void avg_pool_in(const float *dyp, const PGeom &g, const Axes &ax, int iy, int x0, int x1, Sink &sink,
                              int64_t ps = 1) {
  const Span ys = ax.cand_y(iy);
  const int ox0 = ax.cand_x(x0).lo, ox1 = ax.cand_x(x1 - 1).hi;
  for (int oy = ys.lo; oy < ys.hi; oy++) {
    if (!window_tap(iy - (oy * g.sh - g.ph), g.dh, g.kh)) continue;
    const int cy = ax.count_y(oy);
    for (int ox = ox0; ox < ox1; ox++) {
      const float d = dyp[(int64_t)(oy * g.ow + ox) * ps] * avg_inv(cy, ax.count_x(ox));
      const int s = ox * g.sw - g.pw;
      for (int kx = 0; kx < g.kw; kx++) {
        const int ix = s + kx * g.dw;
        if (ix >= x0 && ix < x1) sink.add(ix, d);
      }
    }
  }
}

template <class Axes>
BK_HD inline float adaptive_avg_out(const float *xp, const PGeom &g, const Axes &ax, int oy, int ox, int64_t ps = 1) {
  const Span ys = ax.win_y(oy), xs = ax.win_x(ox);
  double s = 0; /* a global average pool sums thousands of values */
  for (int iy = ys.lo; iy < ys.hi; iy++)
    for (int ix = xs.lo; ix < xs.hi; ix++) s += xp[(iy * g.w + ix) * ps];
  return (float)(s / (double)((ys.hi - ys.lo) * (xs.hi - xs.lo)));
}

/* Adaptive average pooling: each input sums dy / window size over the windows that hold it. */
template <class Axes, class Sink>
BK_HD inline void adaptive_avg_in(const float *dyp, const PGeom &g, const Axes &ax, int iy, int x0, int x1,
                                  Sink &sink, int64_t ps = 1) {
  for (int oy = ax.first_y(iy); oy < g.oh; oy++) {
    const Span ys = ax.win_y(oy);
    if (ys.lo > iy) break; /* windows start in order: none later holds iy */
    if (iy >= ys.hi) continue;
    for (int ox = ax.first_x(x0); ox < g.ow; ox++) {
      const Span xs = ax.win_x(ox);
      if (xs.lo >= x1) break;
      const float d = dyp[(int64_t)(oy * g.ow + ox) * ps] / (float)((ys.hi - ys.lo) * (xs.hi - xs.lo));
      for (int ix = xs.lo > x0 ? xs.lo : x0; ix < xs.hi && ix < x1; ix++) sink.add(ix, d);
    }
  }
}

/* The same over flat indices of [planes, oh, ow] (forward) or [planes, h, w] (backward),
 * for the CUDA kernels' grid-stride loops; with g.nhwc, of [n, oh, ow, c] or [n, h, w, c]
 * (plane p = image * c + channel, its pixels c apart). */
BK_HD inline PlanePos elem_pos(int64_t i, int rows, int cols, const PGeom &g) {
  if (!g.nhwc) return plane_pos(i, rows, cols);
  const int64_t t = i / g.c, u = t / cols;
  return PlanePos{u / rows * g.c + i % g.c, (int)(u % rows), (int)(t % cols)};
}
/* Where plane p of planes of `size` pixels starts, and its pixel stride. */
BK_HD inline int64_t plane_base(int64_t p, int64_t size, const PGeom &g) {
  return g.nhwc ? p / g.c * size * g.c + p % g.c : p * size;
}
BK_HD inline int64_t pixel_stride(const PGeom &g) { return g.nhwc ? g.c : 1; }

BK_HD inline void max_pool_at(int64_t i, float *y, int32_t *ind, const float *x, const PGeom &g) {
  const PlanePos q = elem_pos(i, g.oh, g.ow, g);
  max_pool_out(x + plane_base(q.p, (int64_t)g.h * g.w, g), g, q.y, q.x, y[i], ind[i], pixel_stride(g));
}

/* Input i's gradient: grad(off, iy, sum), one of the *_in functions over the planes at
 * offset off, summing for column x0 = sum.x alone. */
template <class Grad>
BK_HD inline float input_sum_at(int64_t i, const PGeom &g, const Grad &grad) {
  const PlanePos q = elem_pos(i, g.h, g.w, g);
  InputSum sum{q.x, 0.f};
  grad(plane_base(q.p, (int64_t)g.oh * g.ow, g), q.y, sum);
  return sum.acc;
}

BK_HD inline float max_pool_backward_at(int64_t i, const float *dy, const int32_t *ind, const PGeom &g) {
  return input_sum_at(i, g, [&](int64_t off, int iy, InputSum &s) {
    max_pool_in(dy + off, ind + off, g, PoolAxes{&g}, iy, s.x, s.x + 1, s, pixel_stride(g));
  });
}

BK_HD inline float avg_pool_at(int64_t i, const float *x, const PGeom &g) {
  const PlanePos q = elem_pos(i, g.oh, g.ow, g);
  return avg_pool_out(x + plane_base(q.p, (int64_t)g.h * g.w, g), g, PoolAxes{&g}, q.y, q.x, pixel_stride(g));
}

BK_HD inline float avg_pool_backward_at(int64_t i, const float *dy, const PGeom &g) {
  return input_sum_at(i, g, [&](int64_t off, int iy, InputSum &s) {
    avg_pool_in(dy + off, g, PoolAxes{&g}, iy, s.x, s.x + 1, s, pixel_stride(g));
  });
}

BK_HD inline float adaptive_avg_at(int64_t i, const float *x, const PGeom &g) {
  const PlanePos q = elem_pos(i, g.oh, g.ow, g);
  return adaptive_avg_out(x + plane_base(q.p, (int64_t)g.h * g.w, g), g, PoolAxes{&g}, q.y, q.x, pixel_stride(g));
}

BK_HD inline float adaptive_avg_backward_at(int64_t i, const float *dy, const PGeom &g) {
  return input_sum_at(i, g, [&](int64_t off, int iy, InputSum &s) {
    adaptive_avg_in(dy + off, g, PoolAxes{&g}, iy, s.x, s.x + 1, s, pixel_stride(g));
  });
}

}  // namespace bk

#endif /* BAGUA_POOL_MATH_H */
