// Conversions between float32 and the 16-bit float types on the GPU: the scalar
// functions of bagua_half.h (the CPU library's rounding, bit for bit), one element
// per thread step of a grid-stride loop; memory bound, so no vector loads are needed
// beyond what coalescing gives.
#include "common.cuh"
#include "bagua_half.h"

namespace bk {
namespace {

constexpr int kThreads = 256;

template <class From, class To>
__global__ void __launch_bounds__(kThreads)
cast_kernel(typename To::storage *out, const typename From::storage *x, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = To::store(From::load(x[i]));
}

template <class From, class To>
int cast(const char *fn, typename To::storage *out, const typename From::storage *x, int64_t n, void *stream) {
  BK_REQUIRE(n >= 0, "%s: n must be >= 0 (got %lld)", fn, (long long)n);
  if (n == 0) return 0;
  BK_REQUIRE(out && x, "%s: %s is NULL", fn, out ? "x" : "out");
  int dev;
  BK_TRY(current_device(&dev));
  cast_kernel<From, To><<<grid_for(n, kThreads, dev), kThreads, 0, as_stream(stream)>>>(out, x, n);
  return check_launch(fn);
}

}  // namespace
}  // namespace bk

using bk_half::BF16;
using bk_half::F16;
using bk_half::F32;

extern "C" {

BK_API int bk_cast_f32_bf16(bk_bfloat16 *out, const float *x, int64_t n, void *stream) {
  return bk::cast<F32, BF16>("bk_cast_f32_bf16", out, x, n, stream);
}
BK_API int bk_cast_f32_f16(bk_float16 *out, const float *x, int64_t n, void *stream) {
  return bk::cast<F32, F16>("bk_cast_f32_f16", out, x, n, stream);
}
BK_API int bk_cast_bf16_f32(float *out, const bk_bfloat16 *x, int64_t n, void *stream) {
  return bk::cast<BF16, F32>("bk_cast_bf16_f32", out, x, n, stream);
}
BK_API int bk_cast_f16_f32(float *out, const bk_float16 *x, int64_t n, void *stream) {
  return bk::cast<F16, F32>("bk_cast_f16_f32", out, x, n, stream);
}

}  // extern "C"
