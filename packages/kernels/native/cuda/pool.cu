// 2-D pooling over [planes, h, w]. Backward passes gather (each input sums the
// outputs whose window holds it) instead of scattering with atomics: deterministic.
#include "common.cuh"

namespace bk {
namespace {

constexpr int kThreads = 256;

struct PGeom {
  int64_t planes;
  int h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
  bool include_pad;
};

int parse(PGeom &g, const int32_t *geom, bool adaptive, const char *fn) {
  if (!geom) return fail("%s: geom is NULL", fn);
  g = PGeom{};
  g.planes = geom[0]; g.h = geom[1]; g.w = geom[2]; g.oh = geom[3]; g.ow = geom[4];
  if (g.planes < 0 || g.h < 0 || g.w < 0 || g.oh < 0 || g.ow < 0)
    return fail("%s: sizes must be >= 0 (planes %lld, h %d, w %d, oh %d, ow %d)", fn,
                (long long)g.planes, g.h, g.w, g.oh, g.ow);
  if (adaptive) {
    if ((g.oh > 0 && g.h == 0) || (g.ow > 0 && g.w == 0))
      return fail("%s: adaptive pooling of an empty plane", fn);
    return 0;
  }
  g.kh = geom[5]; g.kw = geom[6]; g.sh = geom[7]; g.sw = geom[8]; g.ph = geom[9];
  g.pw = geom[10]; g.dh = geom[11]; g.dw = geom[12]; g.include_pad = geom[13] != 0;
  if (g.kh < 1 || g.kw < 1 || g.sh < 1 || g.sw < 1 || g.dh < 1 || g.dw < 1)
    return fail("%s: kernel size, stride and dilation must be >= 1", fn);
  if (g.ph < 0 || g.pw < 0) return fail("%s: padding must be >= 0", fn);
  return 0;
}

// Outputs along one axis whose window (o*stride - pad + k*dil, k < kernel) may hold
// input position i: o in [lo, hi). Callers still check membership exactly.
__device__ __forceinline__ void candidates(int i, int pad, int stride, int kernel, int dil, int out,
                                           int &lo, int &hi) {
  int span = (kernel - 1) * dil;  // o*stride in [i + pad - span, i + pad]
  int a = i + pad - span;
  lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  hi = (i + pad) / stride + 1;
  if (hi > out) hi = out;
}

// Padding is -inf: only in-bounds positions compete; NaN wins (and propagates),
// index -1 only when the window misses the plane. Same rule as the CPU library.
__global__ void __launch_bounds__(kThreads)
max_pool_kernel(float *y, int32_t *ind, const float *x, PGeom g, int64_t total) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    int ox = (int)(i % g.ow);
    int64_t t = i / g.ow;
    int oy = (int)(t % g.oh);
    int64_t p = t / g.oh;
    const float *xp = x + p * g.h * g.w;
    int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
    float best = -INFINITY;
    int arg = -1;
    for (int ky = 0; ky < g.kh; ky++) {
      int iy = y0 + ky * g.dh;
      if (iy < 0 || iy >= g.h) continue;
      for (int kx = 0; kx < g.kw; kx++) {
        int ix = x0 + kx * g.dw;
        if (ix < 0 || ix >= g.w) continue;
        float v = xp[iy * g.w + ix];
        if (v > best || v != v || arg < 0) {
          best = v;
          arg = iy * g.w + ix;
          if (v != v) goto done;
        }
      }
    }
  done:
    y[i] = best;
    ind[i] = arg;
  }
}

__global__ void __launch_bounds__(kThreads)
max_pool_backward_kernel(float *dx, const float *dy, const int32_t *ind, PGeom g, int64_t total_in,
                         int64_t total_out, DeviceError *err) {
  const int64_t hw = (int64_t)g.h * g.w, ohw = (int64_t)g.oh * g.ow;
  int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, stride = (int64_t)gridDim.x * blockDim.x;
  // indices come from outside: a bad one is reported when the host next reads
  for (int64_t o = tid; o < total_out; o += stride) {
    int v = ind[o];
    if (v < -1 || v >= hw) raise_device_error(err, DEVERR_POOL_INDEX, v, o, hw);
  }
  for (int64_t i = tid; i < total_in; i += stride) {
    int ix = (int)(i % g.w);
    int64_t t = i / g.w;
    int iy = (int)(t % g.h);
    int64_t p = t / g.h;
    int pos = iy * g.w + ix;
    int ylo, yhi, xlo, xhi;
    candidates(iy, g.ph, g.sh, g.kh, g.dh, g.oh, ylo, yhi);
    candidates(ix, g.pw, g.sw, g.kw, g.dw, g.ow, xlo, xhi);
    const float *dyp = dy + p * ohw;
    const int32_t *ip = ind + p * ohw;
    float acc = 0.f;
    for (int oy = ylo; oy < yhi; oy++)
      for (int ox = xlo; ox < xhi; ox++)
        if (ip[oy * g.ow + ox] == pos) acc += dyp[oy * g.ow + ox];
    dx[i] = acc;
  }
}

// The divisor of one average window, as the CPU library computes it:
// count_include_pad counts positions inside [-pad, size + pad).
__device__ __forceinline__ float avg_inv(const PGeom &g, int oy, int ox) {
  int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
  int ny = 0, nx = 0, pady = 0, padx = 0;
  for (int ky = 0; ky < g.kh; ky++) {
    int iy = y0 + ky * g.dh;
    ny += iy >= 0 && iy < g.h;
    pady += iy < g.h + g.ph;
  }
  for (int kx = 0; kx < g.kw; kx++) {
    int ix = x0 + kx * g.dw;
    nx += ix >= 0 && ix < g.w;
    padx += ix < g.w + g.pw;
  }
  int count = g.include_pad ? pady * padx : ny * nx;
  return count > 0 ? 1.f / (float)count : 0.f;
}

__global__ void __launch_bounds__(kThreads)
avg_pool_kernel(float *y, const float *x, PGeom g, int64_t total) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    int ox = (int)(i % g.ow);
    int64_t t = i / g.ow;
    int oy = (int)(t % g.oh);
    int64_t p = t / g.oh;
    const float *xp = x + p * g.h * g.w;
    int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
    float s = 0.f;
    for (int ky = 0; ky < g.kh; ky++) {
      int iy = y0 + ky * g.dh;
      if (iy < 0 || iy >= g.h) continue;
      for (int kx = 0; kx < g.kw; kx++) {
        int ix = x0 + kx * g.dw;
        if (ix >= 0 && ix < g.w) s += xp[iy * g.w + ix];
      }
    }
    y[i] = s * avg_inv(g, oy, ox);
  }
}

__global__ void __launch_bounds__(kThreads)
avg_pool_backward_kernel(float *dx, const float *dy, PGeom g, int64_t total) {
  const int64_t ohw = (int64_t)g.oh * g.ow;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    int ix = (int)(i % g.w);
    int64_t t = i / g.w;
    int iy = (int)(t % g.h);
    int64_t p = t / g.h;
    int ylo, yhi, xlo, xhi;
    candidates(iy, g.ph, g.sh, g.kh, g.dh, g.oh, ylo, yhi);
    candidates(ix, g.pw, g.sw, g.kw, g.dw, g.ow, xlo, xhi);
    const float *dyp = dy + p * ohw;
    float acc = 0.f;
    for (int oy = ylo; oy < yhi; oy++) {
      int dy0 = iy - (oy * g.sh - g.ph);  // must be ky * dh with ky < kh
      if (dy0 < 0 || dy0 % g.dh || dy0 / g.dh >= g.kh) continue;
      for (int ox = xlo; ox < xhi; ox++) {
        int dx0 = ix - (ox * g.sw - g.pw);
        if (dx0 < 0 || dx0 % g.dw || dx0 / g.dw >= g.kw) continue;
        acc += dyp[oy * g.ow + ox] * avg_inv(g, oy, ox);
      }
    }
    dx[i] = acc;
  }
}

// Adaptive window i of `out` over `size`: [floor(i*size/out), ceil((i+1)*size/out)).
__device__ __forceinline__ void adaptive_range(int i, int size, int out, int &lo, int &hi) {
  lo = (int)(((int64_t)i * size) / out);
  hi = (int)((((int64_t)i + 1) * size + out - 1) / out);
}

__global__ void __launch_bounds__(kThreads)
adaptive_avg_kernel(float *y, const float *x, PGeom g, int64_t total) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    int ox = (int)(i % g.ow);
    int64_t t = i / g.ow;
    int oy = (int)(t % g.oh);
    int64_t p = t / g.oh;
    const float *xp = x + p * g.h * g.w;
    int ylo, yhi, xlo, xhi;
    adaptive_range(oy, g.h, g.oh, ylo, yhi);
    adaptive_range(ox, g.w, g.ow, xlo, xhi);
    double s = 0;  // as the CPU library: a global average pool sums thousands of values
    for (int iy = ylo; iy < yhi; iy++)
      for (int ix = xlo; ix < xhi; ix++) s += xp[iy * g.w + ix];
    y[i] = (float)(s / (double)((yhi - ylo) * (xhi - xlo)));
  }
}

__global__ void __launch_bounds__(kThreads)
adaptive_avg_backward_kernel(float *dx, const float *dy, PGeom g, int64_t total) {
  const int64_t ohw = (int64_t)g.oh * g.ow;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    int ix = (int)(i % g.w);
    int64_t t = i / g.w;
    int iy = (int)(t % g.h);
    int64_t p = t / g.h;
    // outputs whose window holds iy: o from floor(iy*oh/h) while start(o) <= iy
    int oy_lo = (int)(((int64_t)iy * g.oh) / g.h), ox_lo = (int)(((int64_t)ix * g.ow) / g.w);
    const float *dyp = dy + p * ohw;
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
    dx[i] = acc;
  }
}

}  // namespace
}  // namespace bk

using namespace bk;

#define POOL_LAUNCH(kernel, total, ...)                                                  \
  do {                                                                                   \
    int dev_;                                                                            \
    BK_TRY(current_device(&dev_));                                                       \
    kernel<<<grid_for((total), kThreads, dev_), kThreads, 0, as_stream(stream)>>>(__VA_ARGS__); \
    return check_launch(#kernel);                                                        \
  } while (0)

extern "C" {

BK_API int bk_max_pool2d_f32(float *y, int32_t *indices, const float *x, const int32_t *geom,
                             void *stream) {
  PGeom g;
  BK_TRY(parse(g, geom, false, "bk_max_pool2d_f32"));
  int64_t total = g.planes * g.oh * g.ow;
  if (total == 0) return 0;
  BK_REQUIRE(y && indices && (x || g.h * g.w == 0), "bk_max_pool2d_f32: null pointer");
  POOL_LAUNCH(max_pool_kernel, total, y, indices, x, g, total);
}

BK_API int bk_max_pool2d_backward_f32(float *dx, const float *dy, const int32_t *indices,
                                      const int32_t *geom, void *stream) {
  PGeom g;
  BK_TRY(parse(g, geom, false, "bk_max_pool2d_backward_f32"));
  int64_t tin = g.planes * g.h * g.w, tout = g.planes * g.oh * g.ow;
  if (tin == 0) return 0;
  BK_REQUIRE(dx && (tout == 0 || (dy && indices)), "bk_max_pool2d_backward_f32: null pointer");
  DeviceError *err = device_error_slot();
  BK_REQUIRE(err, "bk_max_pool2d_backward_f32: could not allocate the mapped error flag");
  POOL_LAUNCH(max_pool_backward_kernel, std::max(tin, tout), dx, dy, indices, g, tin, tout, err);
}

BK_API int bk_avg_pool2d_f32(float *y, const float *x, const int32_t *geom, void *stream) {
  PGeom g;
  BK_TRY(parse(g, geom, false, "bk_avg_pool2d_f32"));
  int64_t total = g.planes * g.oh * g.ow;
  if (total == 0) return 0;
  BK_REQUIRE(y && (x || g.h * g.w == 0), "bk_avg_pool2d_f32: null pointer");
  POOL_LAUNCH(avg_pool_kernel, total, y, x, g, total);
}

BK_API int bk_avg_pool2d_backward_f32(float *dx, const float *dy, const int32_t *geom, void *stream) {
  PGeom g;
  BK_TRY(parse(g, geom, false, "bk_avg_pool2d_backward_f32"));
  int64_t total = g.planes * g.h * g.w;
  if (total == 0) return 0;
  BK_REQUIRE(dx && (dy || g.oh * g.ow == 0), "bk_avg_pool2d_backward_f32: null pointer");
  POOL_LAUNCH(avg_pool_backward_kernel, total, dx, dy, g, total);
}

BK_API int bk_adaptive_avg_pool2d_f32(float *y, const float *x, const int32_t *geom, void *stream) {
  PGeom g;
  BK_TRY(parse(g, geom, true, "bk_adaptive_avg_pool2d_f32"));
  int64_t total = g.planes * g.oh * g.ow;
  if (total == 0) return 0;
  BK_REQUIRE(y && x, "bk_adaptive_avg_pool2d_f32: null pointer");
  POOL_LAUNCH(adaptive_avg_kernel, total, y, x, g, total);
}

BK_API int bk_adaptive_avg_pool2d_backward_f32(float *dx, const float *dy, const int32_t *geom,
                                               void *stream) {
  PGeom g;
  BK_TRY(parse(g, geom, true, "bk_adaptive_avg_pool2d_backward_f32"));
  int64_t total = g.planes * g.h * g.w;
  if (total == 0) return 0;
  BK_REQUIRE(dx && (dy || g.oh * g.ow == 0), "bk_adaptive_avg_pool2d_backward_f32: null pointer");
  if (g.oh == 0 || g.ow == 0) return bk_fill_f32(dx, total, 0.f, stream);
  POOL_LAUNCH(adaptive_avg_backward_kernel, total, dx, dy, g, total);
}

}  // extern "C"
