// Sums over an axis, softmax / log-softmax over rows, negative log-likelihood.
#include <math.h>

#include "common.cuh"

namespace bk {
namespace {

constexpr int kThreads = 256;

template <int TPR>
__device__ __forceinline__ float group_sum(float v, float *smem) {
  for (int o = (TPR < 32 ? TPR : 32) / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (TPR <= 32) return v;
  // TPR == blockDim.x: combine the warps' results through shared memory.
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // smem may still be read by the previous reduction
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  float s = 0.f;
  for (int w = 0; w < TPR / 32; w++) s += smem[w];  // same order in every thread
  return s;
}

template <int TPR>
__device__ __forceinline__ float group_max(float v, float *smem) {
  for (int o = (TPR < 32 ? TPR : 32) / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (TPR <= 32) return v;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  float s = -INFINITY;
  for (int w = 0; w < TPR / 32; w++) s = fmaxf(s, smem[w]);
  return s;
}

// ---- sum over the middle axis of [outer, reduce, inner] -----------------------
// inner == 1: rows; a warp per row, or `splits` blocks per row writing partials.
__global__ void __launch_bounds__(kThreads)
sum_rows_kernel(float *out, const float *x, int64_t outer, int64_t reduce, int splits) {
  __shared__ float smem[kThreads / 32];
  if (splits == 1) {  // a warp per row
    int64_t row = (int64_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= outer) return;
    const float *p = x + row * reduce;
    float s = 0.f;
    for (int64_t r = lane; r < reduce; r += 32) s += p[r];
    s = group_sum<32>(s, smem);
    if (lane == 0) out[row] = s;
    return;
  }
  // blockIdx.x = split, blockIdx.y = row: out is partials[row][split]
  int64_t row = blockIdx.y;
  int64_t chunk = (reduce + splits - 1) / splits;
  int64_t lo = blockIdx.x * chunk, hi = min(reduce, lo + chunk);
  const float *p = x + row * reduce;
  float s = 0.f;
  for (int64_t r = lo + threadIdx.x; r < hi; r += kThreads) s += p[r];
  s = group_sum<kThreads>(s, smem);
  if (threadIdx.x == 0) out[row * splits + blockIdx.x] = s;
}

// inner > 1: 32 columns x 8 reduce-lanes per block; grid (outer * col tiles, splits).
__global__ void __launch_bounds__(kThreads)
sum_cols_kernel(float *out, const float *x, int64_t outer, int64_t reduce, int64_t inner, int splits) {
  __shared__ float smem[8][33];
  int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  int64_t tiles = (inner + 31) / 32;
  int64_t o = blockIdx.x / tiles;
  int64_t i = (blockIdx.x - o * tiles) * 32 + tx;
  int64_t chunk = (reduce + splits - 1) / splits;
  int64_t lo = blockIdx.y * chunk, hi = min(reduce, lo + chunk);
  float s = 0.f;
  if (i < inner) {
    const float *p = x + o * reduce * inner + i;
    for (int64_t r = lo + ty; r < hi; r += 8) s += p[r * inner];
  }
  smem[ty][tx] = s;
  __syncthreads();
  if (ty == 0 && i < inner) {
    float t = 0.f;
    for (int k = 0; k < 8; k++) t += smem[k][tx];
    // splits > 1: partials laid out [split][outer][inner]
    out[(int64_t)blockIdx.y * outer * inner + o * inner + i] = t;
  }
}

// out[j] = sum over s of partials[s * m + j], in split order (deterministic).
__global__ void sum_splits_kernel(float *out, const float *partials, int64_t m, int splits,
                                  int64_t split_stride, int64_t elem_stride) {
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < m;
       j += (int64_t)gridDim.x * blockDim.x) {
    float t = 0.f;
    for (int s = 0; s < splits; s++) t += partials[s * split_stride + j * elem_stride];
    out[j] = t;
  }
}

// ---- softmax: TPR threads per row (a warp for short rows, the block for long) --
template <int TPR>
__global__ void __launch_bounds__(kThreads)
softmax_kernel(float *out, const float *x, int64_t rows, int64_t cols, int log) {
  __shared__ float smem[kThreads / 32];
  constexpr int RPB = kThreads / TPR;
  int sub = threadIdx.x % TPR;
  for (int64_t row0 = (int64_t)blockIdx.x * RPB; row0 < rows; row0 += (int64_t)gridDim.x * RPB) {
    int64_t row = row0 + threadIdx.x / TPR;
    bool active = row < rows;  // whole warps share a row, so shuffles stay converged
    const float *p = x + (active ? row : 0) * cols;
    float m = -INFINITY;
    if (active)
      for (int64_t c = sub; c < cols; c += TPR) m = fmaxf(m, p[c]);
    m = group_max<TPR>(m, smem);
    if (!(m > -INFINITY)) m = 0.f;  // all -inf (or NaN): avoid inf - inf, as the CPU library
    float s = 0.f;
    if (active)
      for (int64_t c = sub; c < cols; c += TPR) s += expf(p[c] - m);
    s = group_sum<TPR>(s, smem);
    if (!active) continue;
    float *q = out + row * cols;
    if (log) {
      // (x - m) - log(s): x - m is exact near the max, so a large m never rounds the result
      const float ls = logf(s);
      for (int64_t c = sub; c < cols; c += TPR) q[c] = (p[c] - m) - ls;
    } else {
      float inv = 1.f / s;
      for (int64_t c = sub; c < cols; c += TPR) q[c] = expf(p[c] - m) * inv;
    }
  }
}

template <int TPR>
__global__ void __launch_bounds__(kThreads)
softmax_backward_kernel(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols, int log) {
  __shared__ float smem[kThreads / 32];
  constexpr int RPB = kThreads / TPR;
  int sub = threadIdx.x % TPR;
  for (int64_t row0 = (int64_t)blockIdx.x * RPB; row0 < rows; row0 += (int64_t)gridDim.x * RPB) {
    int64_t row = row0 + threadIdx.x / TPR;
    bool active = row < rows;
    const float *g = dy + (active ? row : 0) * cols, *v = y + (active ? row : 0) * cols;
    float s = 0.f;
    if (active)
      for (int64_t c = sub; c < cols; c += TPR) s += log ? g[c] : g[c] * v[c];
    s = group_sum<TPR>(s, smem);
    if (!active) continue;
    float *d = dx + row * cols;
    if (log)
      for (int64_t c = sub; c < cols; c += TPR) d[c] = g[c] - expf(v[c]) * s;
    else
      for (int64_t c = sub; c < cols; c += TPR) d[c] = v[c] * (g[c] - s);
  }
}

__global__ void nll_kernel(float *out, const float *logp, const int32_t *target, int64_t rows,
                           int64_t cols, DeviceError *err) {
  for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows;
       r += (int64_t)gridDim.x * blockDim.x) {
    int t = target[r];
    if (t < 0 || t >= cols) {
      raise_device_error(err, DEVERR_NLL_TARGET, t, r, cols);
      out[r] = NAN;
    } else {
      out[r] = -logp[r * cols + t];
    }
  }
}

template <typename I>
__global__ void nll_backward_kernel(float *dlogp, const float *dout, const int32_t *target, I rows,
                                    I cols, DeviceError *err) {
  I n = rows * cols;
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
    I r = i / cols, c = i - r * cols;
    int t = target[r];
    if (c == 0 && (t < 0 || t >= (int64_t)cols))
      raise_device_error(err, DEVERR_NLL_BACKWARD_TARGET, t, (long long)r, (long long)cols);
    dlogp[i] = (I)t == c && t >= 0 ? -dout[r] : 0.f;
  }
}

}  // namespace
}  // namespace bk

using namespace bk;

extern "C" {

BK_API int bk_sum_f32(float *out, const float *x, int64_t outer, int64_t reduce, int64_t inner,
                      void *stream) {
  BK_REQUIRE(outer >= 0 && reduce >= 0 && inner >= 0, "sum: negative size [%lld, %lld, %lld]",
             (long long)outer, (long long)reduce, (long long)inner);
  int64_t m = outer * inner;
  if (m == 0) return 0;
  BK_REQUIRE(out, "sum: null output");
  if (reduce == 0) return bk_fill_f32(out, m, 0.f, stream);
  BK_REQUIRE(x, "sum: null input");
  int dev;
  BK_TRY(current_device(&dev));
  cudaStream_t s = as_stream(stream);
  int64_t target_blocks = (int64_t)sm_count(dev) * 4;
  if (inner == 1) {
    int64_t warp_blocks = ceil_div(outer, kThreads / 32);
    int64_t splits = 1;
    if (warp_blocks < target_blocks && reduce >= 4096 && outer <= 65535)
      splits = std::min<int64_t>(ceil_div(target_blocks, outer), ceil_div(reduce, kThreads * 8));
    if (splits <= 1) {
      sum_rows_kernel<<<(unsigned)warp_blocks, kThreads, 0, s>>>(out, x, outer, reduce, 1);
      return check_launch("sum");
    }
    Scratch part;
    BK_TRY(part.acquire(outer * splits * (int64_t)sizeof(float), s));
    float *pp = static_cast<float *>(part.ptr);
    sum_rows_kernel<<<dim3((unsigned)splits, (unsigned)outer), kThreads, 0, s>>>(pp, x, outer, reduce,
                                                                               (int)splits);
    BK_TRY(check_launch("sum"));
    sum_splits_kernel<<<grid_for(outer, kThreads, dev), kThreads, 0, s>>>(out, pp, outer, (int)splits,
                                                                       1, splits);
    return check_launch("sum");
  }
  int64_t tiles = ceil_div(inner, 32);
  BK_REQUIRE(tiles * outer <= 0x7fffffff, "sum: [%lld, %lld, %lld] is too large for one launch",
             (long long)outer, (long long)reduce, (long long)inner);
  int64_t splits = 1;
  if (tiles * outer < target_blocks && reduce >= 256)
    splits = std::min<int64_t>(std::min<int64_t>(ceil_div(target_blocks, tiles * outer), ceil_div(reduce, 64)), 65535);
  if (splits <= 1) {
    sum_cols_kernel<<<dim3((unsigned)(tiles * outer), 1), kThreads, 0, s>>>(out, x, outer, reduce,
                                                                                 inner, 1);
    return check_launch("sum");
  }
  Scratch part;
  BK_TRY(part.acquire(m * splits * (int64_t)sizeof(float), s));
  float *pp = static_cast<float *>(part.ptr);
  sum_cols_kernel<<<dim3((unsigned)(tiles * outer), (unsigned)splits), kThreads, 0, s>>>(
      pp, x, outer, reduce, inner, (int)splits);
  BK_TRY(check_launch("sum"));
  sum_splits_kernel<<<grid_for(m, kThreads, dev), kThreads, 0, s>>>(out, pp, m, (int)splits, m, 1);
  return check_launch("sum");
}

BK_API int bk_softmax_f32(float *out, const float *x, int64_t rows, int64_t cols, int32_t log,
                          void *stream) {
  BK_REQUIRE(rows >= 0 && cols >= 0, "softmax: negative size");
  if (rows == 0 || cols == 0) return 0;
  BK_REQUIRE(out && x, "softmax: null pointer");
  int dev;
  BK_TRY(current_device(&dev));
  cudaStream_t s = as_stream(stream);
  if (cols <= 1024)
    softmax_kernel<32><<<grid_for(rows, kThreads / 32, dev), kThreads, 0, s>>>(out, x, rows, cols, log);
  else
    softmax_kernel<kThreads><<<grid_for(rows, 1, dev), kThreads, 0, s>>>(out, x, rows, cols, log);
  return check_launch("softmax");
}

BK_API int bk_softmax_backward_f32(float *dx, const float *dy, const float *y, int64_t rows,
                                   int64_t cols, int32_t log, void *stream) {
  BK_REQUIRE(rows >= 0 && cols >= 0, "softmax_backward: negative size");
  if (rows == 0 || cols == 0) return 0;
  BK_REQUIRE(dx && dy && y, "softmax_backward: null pointer");
  int dev;
  BK_TRY(current_device(&dev));
  cudaStream_t s = as_stream(stream);
  if (cols <= 1024)
    softmax_backward_kernel<32><<<grid_for(rows, kThreads / 32, dev), kThreads, 0, s>>>(dx, dy, y, rows,
                                                                                     cols, log);
  else
    softmax_backward_kernel<kThreads><<<grid_for(rows, 1, dev), kThreads, 0, s>>>(dx, dy, y, rows, cols,
                                                                               log);
  return check_launch("softmax_backward");
}

BK_API int bk_nll_loss_f32(float *out, const float *logp, const int32_t *target, int64_t rows,
                           int64_t cols, void *stream) {
  BK_REQUIRE(rows >= 0 && cols >= 0, "nll_loss: negative size");
  if (rows == 0) return 0;
  BK_REQUIRE(out && logp && target, "nll_loss: null pointer");
  DeviceError *err;
  int dev;
  BK_TRY(error_flag_launch("nll_loss", &err, &dev));
  nll_kernel<<<grid_for(rows, kThreads, dev), kThreads, 0, as_stream(stream)>>>(out, logp, target, rows,
                                                                             cols, err);
  return check_launch("nll_loss");
}

BK_API int bk_nll_loss_backward_f32(float *dlogp, const float *dout, const int32_t *target,
                                    int64_t rows, int64_t cols, void *stream) {
  BK_REQUIRE(rows >= 0 && cols >= 0, "nll_loss_backward: negative size");
  int64_t n = rows * cols;
  if (n == 0) return 0;
  BK_REQUIRE(dlogp && dout && target, "nll_loss_backward: null pointer");
  DeviceError *err;
  int dev;
  BK_TRY(error_flag_launch("nll_loss_backward", &err, &dev));
  unsigned grid = grid_for(n, kThreads, dev);
  // 32-bit indices only when the grid-stride loop cannot step past INT_MAX
  if (n + (int64_t)grid * kThreads < (int64_t(1) << 31))
    nll_backward_kernel<int32_t><<<grid, kThreads, 0, as_stream(stream)>>>(dlogp, dout, target,
                                                                          (int32_t)rows, (int32_t)cols, err);
  else
    nll_backward_kernel<int64_t><<<grid, kThreads, 0, as_stream(stream)>>>(dlogp, dout, target, rows,
                                                                          cols, err);
  return check_launch("nll_loss_backward");
}

}  // extern "C"
