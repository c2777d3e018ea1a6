// Pooling, one output (or one input gradient) element at a time, as host+device
// code: the kernels of pool.cu call these, and test_host.cu runs them on the CPU
// against the CPU library. Backward passes gather (each input sums the outputs
// whose window holds it): no atomics, deterministic.
#pragma once

#include <math.h>
#include <stdint.h>

#include "bagua_bn_math.h"  // BK_HD

namespace bk {

struct PGeom {
  int64_t planes;
  int h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
  bool include_pad;
};

// Element i of [planes, rows, cols]: its plane, row and column.
struct PlanePos {
  int64_t p;
  int y, x;
};
BK_HD inline PlanePos plane_pos(int64_t i, int rows, int cols) {
  const int64_t t = i / cols;
  return PlanePos{t / rows, (int)(t % rows), (int)(i % cols)};
}

// Outputs along one axis whose window (o*stride - pad + k*dil, k < kernel) may hold
// input position i: o in [lo, hi). Callers still check membership exactly.
BK_HD inline void pool_candidates(int i, int pad, int stride, int kernel, int dil, int out, int &lo, int &hi) {
  const int span = (kernel - 1) * dil;  // o*stride in [i + pad - span, i + pad]
  const int a = i + pad - span;
  lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  hi = (i + pad) / stride + 1;
  if (hi > out) hi = out;
}

// Padding is -inf: only in-bounds positions compete; NaN wins (and propagates);
// index -1 only when the window misses the plane. The CPU library's rule.
BK_HD inline void max_pool_at(int64_t i, float *y, int32_t *ind, const float *x, const PGeom &g) {
  const auto [p, oy, ox] = plane_pos(i, g.oh, g.ow);
  const float *xp = x + p * g.h * g.w;
  const int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
  float best = -INFINITY;
  int arg = -1;
  for (int ky = 0; ky < g.kh; ky++) {
    const int iy = y0 + ky * g.dh;
    if (iy < 0 || iy >= g.h) continue;
    for (int kx = 0; kx < g.kw; kx++) {
      const int ix = x0 + kx * g.dw;
      if (ix < 0 || ix >= g.w) continue;
      const float v = xp[iy * g.w + ix];
      if (v > best || v != v || arg < 0) {
        best = v;
        arg = iy * g.w + ix;
        if (v != v) {
          ky = g.kh;  // done: NaN wins
          break;
        }
      }
    }
  }
  y[i] = best;
  ind[i] = arg;
}

// dx[i] = sum of dy over the outputs whose recorded maximum is input i.
BK_HD inline float max_pool_backward_at(int64_t i, const float *dy, const int32_t *ind, const PGeom &g) {
  const auto [p, iy, ix] = plane_pos(i, g.h, g.w);
  const int pos = iy * g.w + ix;
  int ylo, yhi, xlo, xhi;
  pool_candidates(iy, g.ph, g.sh, g.kh, g.dh, g.oh, ylo, yhi);
  pool_candidates(ix, g.pw, g.sw, g.kw, g.dw, g.ow, xlo, xhi);
  const int64_t ohw = (int64_t)g.oh * g.ow;
  const float *dyp = dy + p * ohw;
  const int32_t *ip = ind + p * ohw;
  float acc = 0.f;
  for (int oy = ylo; oy < yhi; oy++)
    for (int ox = xlo; ox < xhi; ox++)
      if (ip[oy * g.ow + ox] == pos) acc += dyp[oy * g.ow + ox];
  return acc;
}

// 1 / divisor of one average window, as the CPU library computes it:
// count_include_pad counts positions inside [-pad, size + pad).
BK_HD inline float avg_inv(const PGeom &g, int oy, int ox) {
  const int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
  int ny = 0, nx = 0, pady = 0, padx = 0;
  for (int ky = 0; ky < g.kh; ky++) {
    const int iy = y0 + ky * g.dh;
    ny += iy >= 0 && iy < g.h;
    pady += iy < g.h + g.ph;
  }
  for (int kx = 0; kx < g.kw; kx++) {
    const int ix = x0 + kx * g.dw;
    nx += ix >= 0 && ix < g.w;
    padx += ix < g.w + g.pw;
  }
  const int count = g.include_pad ? pady * padx : ny * nx;
  return count > 0 ? 1.f / (float)count : 0.f;
}

BK_HD inline float avg_pool_at(int64_t i, const float *x, const PGeom &g) {
  const auto [p, oy, ox] = plane_pos(i, g.oh, g.ow);
  const float *xp = x + p * g.h * g.w;
  const int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
  float s = 0.f;
  for (int ky = 0; ky < g.kh; ky++) {
    const int iy = y0 + ky * g.dh;
    if (iy < 0 || iy >= g.h) continue;
    for (int kx = 0; kx < g.kw; kx++) {
      const int ix = x0 + kx * g.dw;
      if (ix >= 0 && ix < g.w) s += xp[iy * g.w + ix];
    }
  }
  return s * avg_inv(g, oy, ox);
}

BK_HD inline float avg_pool_backward_at(int64_t i, const float *dy, const PGeom &g) {
  const auto [p, iy, ix] = plane_pos(i, g.h, g.w);
  int ylo, yhi, xlo, xhi;
  pool_candidates(iy, g.ph, g.sh, g.kh, g.dh, g.oh, ylo, yhi);
  pool_candidates(ix, g.pw, g.sw, g.kw, g.dw, g.ow, xlo, xhi);
  const float *dyp = dy + p * (int64_t)g.oh * g.ow;
  float acc = 0.f;
  for (int oy = ylo; oy < yhi; oy++) {
    const int dy0 = iy - (oy * g.sh - g.ph);  // must be ky * dh with ky < kh
    if (dy0 < 0 || dy0 % g.dh || dy0 / g.dh >= g.kh) continue;
    for (int ox = xlo; ox < xhi; ox++) {
      const int dx0 = ix - (ox * g.sw - g.pw);
      if (dx0 < 0 || dx0 % g.dw || dx0 / g.dw >= g.kw) continue;
      acc += dyp[oy * g.ow + ox] * avg_inv(g, oy, ox);
    }
  }
  return acc;
}

// Adaptive window i of `out` over `size`: [floor(i*size/out), ceil((i+1)*size/out)).
BK_HD inline void adaptive_range(int i, int size, int out, int &lo, int &hi) {
  lo = (int)(((int64_t)i * size) / out);
  hi = (int)((((int64_t)i + 1) * size + out - 1) / out);
}

BK_HD inline float adaptive_avg_at(int64_t i, const float *x, const PGeom &g) {
  const auto [p, oy, ox] = plane_pos(i, g.oh, g.ow);
  const float *xp = x + p * g.h * g.w;
  int ylo, yhi, xlo, xhi;
  adaptive_range(oy, g.h, g.oh, ylo, yhi);
  adaptive_range(ox, g.w, g.ow, xlo, xhi);
  double s = 0;  // as the CPU library: a global average pool sums thousands of values
  for (int iy = ylo; iy < yhi; iy++)
    for (int ix = xlo; ix < xhi; ix++) s += xp[iy * g.w + ix];
  return (float)(s / (double)((yhi - ylo) * (xhi - xlo)));
}

BK_HD inline float adaptive_avg_backward_at(int64_t i, const float *dy, const PGeom &g) {
  const auto [p, iy, ix] = plane_pos(i, g.h, g.w);
  // outputs whose window holds iy start at floor(iy*oh/h) - 1 at the earliest
  // and end once a window starts after iy
  const int oy_lo = (int)(((int64_t)iy * g.oh) / g.h), ox_lo = (int)(((int64_t)ix * g.ow) / g.w);
  const float *dyp = dy + p * (int64_t)g.oh * g.ow;
  float acc = 0.f;
  for (int oy = oy_lo > 0 ? oy_lo - 1 : 0; oy < g.oh; oy++) {
    int ylo, yhi;
    adaptive_range(oy, g.h, g.oh, ylo, yhi);
    if (ylo > iy) break;
    if (iy >= yhi) continue;
    for (int ox = ox_lo > 0 ? ox_lo - 1 : 0; ox < g.ow; ox++) {
      int xlo, xhi;
      adaptive_range(ox, g.w, g.ow, xlo, xhi);
      if (xlo > ix) break;
      if (ix >= xhi) continue;
      acc += dyp[oy * g.ow + ox] / (float)((yhi - ylo) * (xhi - xlo));
    }
  }
  return acc;
}

}  // namespace bk
