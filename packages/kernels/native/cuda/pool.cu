// 2-D pooling over [planes, h, w] (or NHWC [n, h, w, c], BK_LAYOUT_NHWC: the same math with
// the pixels c apart): one thread per element of the math in bagua_pool_math.h, shared with
// the CPU library. Backward passes gather (each input
// sums the outputs whose window holds it) instead of scattering with atomics: deterministic.
#include "common.cuh"
#include "bagua_geom.h"
#include "bagua_pool_math.h"

namespace bk {
namespace {

constexpr int kThreads = 256;

#define GRID_STRIDE(i, total) \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (total); i += (int64_t)gridDim.x * blockDim.x)

__global__ void __launch_bounds__(kThreads)
max_pool_kernel(float *y, int32_t *ind, const float *x, PGeom g, int64_t total) {
  GRID_STRIDE(i, total) max_pool_at(i, y, ind, x, g);
}

__global__ void __launch_bounds__(kThreads)
max_pool_backward_kernel(float *dx, const float *dy, const int32_t *ind, PGeom g, int64_t total_in,
                         int64_t total_out, DeviceError *err) {
  const int64_t hw = (int64_t)g.h * g.w;
  // indices come from outside: a bad one is reported when the host next reads
  GRID_STRIDE(o, total_out) {
    const int v = ind[o];
    if (v < -1 || v >= hw) raise_device_error(err, DEVERR_POOL_INDEX, v, o, hw);
  }
  GRID_STRIDE(i, total_in) dx[i] = max_pool_backward_at(i, dy, ind, g);
}

__global__ void __launch_bounds__(kThreads) avg_pool_kernel(float *y, const float *x, PGeom g, int64_t total) {
  GRID_STRIDE(i, total) y[i] = avg_pool_at(i, x, g);
}

__global__ void __launch_bounds__(kThreads)
avg_pool_backward_kernel(float *dx, const float *dy, PGeom g, int64_t total) {
  GRID_STRIDE(i, total) dx[i] = avg_pool_backward_at(i, dy, g);
}

__global__ void __launch_bounds__(kThreads) adaptive_avg_kernel(float *y, const float *x, PGeom g, int64_t total) {
  GRID_STRIDE(i, total) y[i] = adaptive_avg_at(i, x, g);
}

__global__ void __launch_bounds__(kThreads)
adaptive_avg_backward_kernel(float *dx, const float *dy, PGeom g, int64_t total) {
  GRID_STRIDE(i, total) dx[i] = adaptive_avg_backward_at(i, dy, g);
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

BK_API int bk_max_pool2d_f32(float *y, int32_t *indices, const float *x, const bk_pool2d_geom *geom,
                             void *stream) {
  PGeom g;
  BK_TRY(pool_parse(g, geom, false, "bk_max_pool2d_f32"));
  int64_t total = g.planes * g.oh * g.ow;
  if (total == 0) return 0;
  BK_REQUIRE(y && indices && (x || g.h * g.w == 0), "bk_max_pool2d_f32: null pointer");
  POOL_LAUNCH(max_pool_kernel, total, y, indices, x, g, total);
}

BK_API int bk_max_pool2d_backward_f32(float *dx, const float *dy, const int32_t *indices,
                                      const bk_pool2d_geom *geom, void *stream) {
  PGeom g;
  BK_TRY(pool_parse(g, geom, false, "bk_max_pool2d_backward_f32"));
  int64_t tin = g.planes * g.h * g.w, tout = g.planes * g.oh * g.ow;
  if (tin == 0) return 0;
  BK_REQUIRE(dx && (tout == 0 || (dy && indices)), "bk_max_pool2d_backward_f32: null pointer");
  DeviceError *err = device_error_slot();
  BK_REQUIRE(err, "bk_max_pool2d_backward_f32: could not allocate the mapped error flag");
  POOL_LAUNCH(max_pool_backward_kernel, std::max(tin, tout), dx, dy, indices, g, tin, tout, err);
}

BK_API int bk_avg_pool2d_f32(float *y, const float *x, const bk_pool2d_geom *geom, void *stream) {
  PGeom g;
  BK_TRY(pool_parse(g, geom, false, "bk_avg_pool2d_f32"));
  int64_t total = g.planes * g.oh * g.ow;
  if (total == 0) return 0;
  BK_REQUIRE(y && (x || g.h * g.w == 0), "bk_avg_pool2d_f32: null pointer");
  POOL_LAUNCH(avg_pool_kernel, total, y, x, g, total);
}

BK_API int bk_avg_pool2d_backward_f32(float *dx, const float *dy, const bk_pool2d_geom *geom, void *stream) {
  PGeom g;
  BK_TRY(pool_parse(g, geom, false, "bk_avg_pool2d_backward_f32"));
  int64_t total = g.planes * g.h * g.w;
  if (total == 0) return 0;
  BK_REQUIRE(dx && (dy || g.oh * g.ow == 0), "bk_avg_pool2d_backward_f32: null pointer");
  POOL_LAUNCH(avg_pool_backward_kernel, total, dx, dy, g, total);
}

BK_API int bk_adaptive_avg_pool2d_f32(float *y, const float *x, const bk_pool2d_geom *geom, void *stream) {
  PGeom g;
  BK_TRY(pool_parse(g, geom, true, "bk_adaptive_avg_pool2d_f32"));
  int64_t total = g.planes * g.oh * g.ow;
  if (total == 0) return 0;
  BK_REQUIRE(y && x, "bk_adaptive_avg_pool2d_f32: null pointer");
  POOL_LAUNCH(adaptive_avg_kernel, total, y, x, g, total);
}

BK_API int bk_adaptive_avg_pool2d_backward_f32(float *dx, const float *dy, const bk_pool2d_geom *geom,
                                               void *stream) {
  PGeom g;
  BK_TRY(pool_parse(g, geom, true, "bk_adaptive_avg_pool2d_backward_f32"));
  int64_t total = g.planes * g.h * g.w;
  if (total == 0) return 0;
  BK_REQUIRE(dx && (dy || g.oh * g.ow == 0), "bk_adaptive_avg_pool2d_backward_f32: null pointer");
  if (g.oh == 0 || g.ow == 0) return bk_fill_f32(dx, total, 0.f, stream);
  POOL_LAUNCH(adaptive_avg_backward_kernel, total, dx, dy, g, total);
}

}  // extern "C"
