// LayerNorm and GroupNorm over contiguous rows (bk_row_norm_f32 and its backward, spelled
// out in bagua_kernels.h): a block per row for the statistics, the output and the input
// gradient; for the weight and bias gradients a block per affine entry (GroupNorm), or per
// 32 neighbouring entries (LayerNorm: coalesced), with no atomics: the same bits on every
// run. Sums in double, in a fixed order within each block.
#include <math.h>

#include "common.cuh"

namespace bk {
namespace {

constexpr int kThreads = 256;

// The block's total of v (every thread gets it); smem holds kThreads / 32 doubles.
__device__ __forceinline__ double block_sum(double v, double *smem) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // smem may still be read by the previous sum
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  double s = 0;
  for (int w = 0; w < kThreads / 32; w++) s += smem[w];
  return s;
}

struct Geom {
  int64_t rows, len, groups, inner, segs;
};

__device__ __forceinline__ int64_t affine_at(const Geom &g, int64_t r, int64_t p) {
  return (r % g.groups) * g.segs + p / g.inner;
}

__global__ void __launch_bounds__(kThreads)
row_norm_kernel(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, Geom g,
                float eps) {
  __shared__ double smem[kThreads / 32];
  for (int64_t r = blockIdx.x; r < g.rows; r += gridDim.x) {
    const float *xr = x + r * g.len;
    double s = 0;
    for (int64_t p = threadIdx.x; p < g.len; p += kThreads) s += xr[p];
    const double m = block_sum(s, smem) / (double)g.len;
    double q = 0;
    for (int64_t p = threadIdx.x; p < g.len; p += kThreads) {
      const double d = xr[p] - m;
      q += d * d;
    }
    const float mf = (float)m;
    const float rs = (float)(1.0 / sqrt(block_sum(q, smem) / (double)g.len + (double)eps));
    if (threadIdx.x == 0) {
      mean[r] = mf;
      rstd[r] = rs;
    }
    float *yr = y + r * g.len;
    for (int64_t p = threadIdx.x; p < g.len; p += kThreads) {
      const int64_t a = affine_at(g, r, p);
      yr[p] = (xr[p] - mf) * (w ? rs * w[a] : rs) + (b ? b[a] : 0.f);
    }
  }
}

__global__ void __launch_bounds__(kThreads)
row_norm_dx_kernel(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                   const float *w, Geom g) {
  __shared__ double smem[kThreads / 32];
  for (int64_t r = blockIdx.x; r < g.rows; r += gridDim.x) {
    const float *xr = x + r * g.len, *dyr = dy + r * g.len;
    const float m = mean[r], rs = rstd[r];
    double s1 = 0, s2 = 0;
    for (int64_t p = threadIdx.x; p < g.len; p += kThreads) {
      const float gv = w ? dyr[p] * w[affine_at(g, r, p)] : dyr[p];
      s1 += gv;
      s2 += (double)gv * (double)((xr[p] - m) * rs);
    }
    const float c1 = (float)(block_sum(s1, smem) / (double)g.len);
    const float c2 = (float)(block_sum(s2, smem) / (double)g.len);
    float *dxr = dx + r * g.len;
    for (int64_t p = threadIdx.x; p < g.len; p += kThreads) {
      const float gv = w ? dyr[p] * w[affine_at(g, r, p)] : dyr[p];
      dxr[p] = rs * (gv - c1 - ((xr[p] - m) * rs) * c2);
    }
  }
}

// Entry a = grp * segs + k sums over rows grp, grp + groups, ... and positions [k * inner, (k + 1) * inner).
__global__ void __launch_bounds__(kThreads)
row_norm_params_kernel(float *dw, float *db, const float *dy, const float *x, const float *mean,
                       const float *rstd, Geom g) {
  __shared__ double smem[kThreads / 32];
  const int64_t entries = g.groups * g.segs;
  const int64_t per_group = (g.rows - 1) / g.groups + 1;  // rows of group 0 (the most)
  for (int64_t a = blockIdx.x; a < entries; a += gridDim.x) {
    const int64_t grp = a / g.segs, k = a - grp * g.segs;
    double sw = 0, sb = 0;
    for (int64_t t = threadIdx.x; t < per_group * g.inner; t += kThreads) {
      const int64_t r = grp + (t / g.inner) * g.groups;
      if (r >= g.rows) continue;
      const int64_t i = r * g.len + k * g.inner + t % g.inner;
      sb += dy[i];
      sw += (double)dy[i] * (double)((x[i] - mean[r]) * rstd[r]);
    }
    const double tw = block_sum(sw, smem), tb = block_sum(sb, smem);
    if (threadIdx.x == 0) {
      if (dw) dw[a] = (float)tw;
      if (db) db[a] = (float)tb;
    }
  }
}

// inner == 1 (LayerNorm): entry a = grp * len + p is column p of group grp's rows. A block
// takes 32 neighbouring entries (coalesced reads across a warp) and 8 row lanes, summed in
// double and combined in a fixed order.
__global__ void __launch_bounds__(kThreads)
row_norm_params_cols_kernel(float *dw, float *db, const float *dy, const float *x, const float *mean,
                            const float *rstd, Geom g) {
  __shared__ double sw_s[8][33], sb_s[8][33];
  const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  const int64_t entries = g.groups * g.len;
  const int64_t per_group = (g.rows - 1) / g.groups + 1;
  for (int64_t a0 = (int64_t)blockIdx.x * 32; a0 < entries; a0 += (int64_t)gridDim.x * 32) {
    const int64_t a = a0 + tx;
    double sw = 0, sb = 0;
    if (a < entries) {
      const int64_t grp = a / g.len, p = a - grp * g.len;
      for (int64_t j = ty; j < per_group; j += 8) {
        const int64_t r = grp + j * g.groups;
        if (r >= g.rows) break;
        const int64_t i = r * g.len + p;
        sb += dy[i];
        sw += (double)dy[i] * (double)((x[i] - mean[r]) * rstd[r]);
      }
    }
    __syncthreads();  // the previous tile's sums may still be read
    sw_s[ty][tx] = sw;
    sb_s[ty][tx] = sb;
    __syncthreads();
    if (ty == 0 && a < entries) {
      double tw = 0, tb = 0;
      for (int k = 0; k < 8; k++) {
        tw += sw_s[k][tx];
        tb += sb_s[k][tx];
      }
      if (dw) dw[a] = (float)tw;
      if (db) db[a] = (float)tb;
    }
  }
}

int check_geom(const char *fn, int64_t rows, int64_t len, int64_t groups, int64_t inner) {
  BK_REQUIRE(rows >= 0, "%s: rows must be >= 0 (got %lld)", fn, (long long)rows);
  BK_REQUIRE(len > 0 && inner > 0 && groups > 0 && len % inner == 0,
             "%s: need len > 0, inner > 0 dividing len, groups > 0 (got len %lld, inner %lld, groups %lld)", fn,
             (long long)len, (long long)inner, (long long)groups);
  return 0;
}

}  // namespace
}  // namespace bk

using namespace bk;

extern "C" {

BK_API int bk_row_norm_f32(float *y, float *mean, float *rstd, const float *x, const float *weight,
                           const float *bias, int64_t rows, int64_t len, int64_t groups, int64_t inner, float eps,
                           void *stream) {
  BK_TRY(check_geom("bk_row_norm_f32", rows, len, groups, inner));
  BK_REQUIRE(eps > 0.f, "bk_row_norm_f32: eps must be > 0 (got %g)", (double)eps);
  if (rows == 0) return 0;
  BK_REQUIRE(y && mean && rstd && x, "bk_row_norm_f32: null pointer");
  int dev;
  BK_TRY(current_device(&dev));
  const Geom g = {rows, len, groups, inner, len / inner};
  row_norm_kernel<<<grid_for(rows, 1, dev), kThreads, 0, as_stream(stream)>>>(y, mean, rstd, x, weight, bias, g,
                                                                              eps);
  return check_launch("row_norm");
}

BK_API int bk_row_norm_backward_f32(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                                    const float *mean, const float *rstd, const float *weight, int64_t rows,
                                    int64_t len, int64_t groups, int64_t inner, void *stream) {
  BK_TRY(check_geom("bk_row_norm_backward_f32", rows, len, groups, inner));
  const Geom g = {rows, len, groups, inner, len / inner};
  int dev;
  BK_TRY(current_device(&dev));
  cudaStream_t s = as_stream(stream);
  if (rows > 0) BK_REQUIRE(dy && x && mean && rstd, "bk_row_norm_backward_f32: null pointer");
  if (dx && rows > 0) {
    row_norm_dx_kernel<<<grid_for(rows, 1, dev), kThreads, 0, s>>>(dx, dy, x, mean, rstd, weight, g);
    BK_TRY(check_launch("row_norm_backward dx"));
  }
  if (dweight || dbias) {
    const int64_t entries = groups * g.segs;
    // rows == 0 writes zeros: the loops over rows are empty
    if (inner == 1)
      row_norm_params_cols_kernel<<<grid_for(entries, 32, dev), kThreads, 0, s>>>(dweight, dbias, dy, x, mean, rstd,
                                                                                  g);
    else
      row_norm_params_kernel<<<grid_for(entries, 1, dev), kThreads, 0, s>>>(dweight, dbias, dy, x, mean, rstd, g);
    BK_TRY(check_launch("row_norm_backward params"));
  }
  return 0;
}

}  // extern "C"
