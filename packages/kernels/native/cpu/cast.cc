// Conversions between float32 and the 16-bit float types (bagua_half.h's rounding:
// nearest, ties to even, PyTorch's special values), 16 lanes at a time.
#include "half_simd.h"

namespace {

template <class From, class To>
BK_CLONES void cast_range(typename To::storage *out, const typename From::storage *x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) VecIO<To>::store(out + i, VecIO<From>::load(x + i));
  for (; i < n; ++i) out[i] = To::store(From::load(x[i]));
}

template <class From, class To>
int cast(const char *fn, typename To::storage *out, const typename From::storage *x, int64_t n) {
  if (n < 0) return bk::fail("%s: n must be >= 0 (got %lld)", fn, (long long)n);
  if (n > 0 && (!out || !x)) return bk::fail("%s: %s is NULL", fn, out ? "x" : "out");
  // elementwise: split anywhere, at multiples of 16 so every thread runs whole vectors
  bk::parallel_ranges(bk::threads_for(n, bk::kParallelMin), n, 16, [&](int64_t lo, int64_t hi) {
    cast_range<From, To>(out + lo, x + lo, hi - lo);
    return 0;
  });
  return 0;
}

}  // namespace

using bk_half::BF16;
using bk_half::F16;
using bk_half::F32;

extern "C" int bk_cast_f32_bf16(bk_bfloat16 *out, const float *x, int64_t n, void *) {
  return cast<F32, BF16>(__func__, out, x, n);
}
extern "C" int bk_cast_f32_f16(bk_float16 *out, const float *x, int64_t n, void *) {
  return cast<F32, F16>(__func__, out, x, n);
}
extern "C" int bk_cast_bf16_f32(float *out, const bk_bfloat16 *x, int64_t n, void *) {
  return cast<BF16, F32>(__func__, out, x, n);
}
extern "C" int bk_cast_f16_f32(float *out, const bk_float16 *x, int64_t n, void *) {
  return cast<F16, F32>(__func__, out, x, n);
}
