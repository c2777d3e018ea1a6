// Element-wise reductions, written for gloo's type-erased Func signature
// (out = x (op) y), the rank-ordered reduction of the small path, and the
// dtype dispatch of the C API.
#pragma once

#include <string.h>

#include <cstddef>
#include <cstdint>

#include "bagua_gloo.h"

namespace bgloo {

// gloo mostly reduces in place (out == x); that case gets a restrict-qualified
// loop the compiler can vectorise.
template <typename T, typename Op>
void reduceInto(T* __restrict o, const T* __restrict y, size_t n, Op op) {
  for (size_t i = 0; i < n; i++) o[i] = op(o[i], y[i]);
}

template <typename T, typename Op>
void reduce(void* c, const void* a, const void* b, size_t n, Op op) {
  T* o = static_cast<T*>(c);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  if (o == x && o != y) {
    reduceInto<T>(o, y, n, op);
    return;
  }
  for (size_t i = 0; i < n; i++) o[i] = op(x[i], y[i]);
}

template <typename T>
void reduceSum(void* c, const void* a, const void* b, size_t n) {
  reduce<T>(c, a, b, n, [](T x, T y) { return static_cast<T>(x + y); });
}
template <typename T>
void reduceProduct(void* c, const void* a, const void* b, size_t n) {
  reduce<T>(c, a, b, n, [](T x, T y) { return static_cast<T>(x * y); });
}
// max/min propagate NaN (as torch does), whichever side it is on.
template <typename T>
void reduceMax(void* c, const void* a, const void* b, size_t n) {
  reduce<T>(c, a, b, n, [](T x, T y) { return (x != x || x > y) ? x : y; });
}
template <typename T>
void reduceMin(void* c, const void* a, const void* b, size_t n) {
  reduce<T>(c, a, b, n, [](T x, T y) { return (x != x || x < y) ? x : y; });
}

// The reduction function of a BAGUA_GLOO_* op (avg: the sum; divide after).
template <typename T>
void (*reduceFunction(int op))(void*, const void*, const void*, size_t) {
  switch (op) {
    case BAGUA_GLOO_MAX: return &reduceMax<T>;
    case BAGUA_GLOO_MIN: return &reduceMin<T>;
    case BAGUA_GLOO_PRODUCT: return &reduceProduct<T>;
    default: return &reduceSum<T>;
  }
}

template <typename T>
void divideBy(void* buf, size_t n, int size) {
  T* p = static_cast<T*>(buf);
  const T d = static_cast<T>(size);
  for (size_t i = 0; i < n; i++) p[i] = p[i] / d;
}

// out = op(rank 0's, rank 1's, ...), combined in rank order on every rank, so
// all ranks get bit-identical results whatever the group size.
template <typename T>
void reduceRankOrdered(void* out, const char* gathered, size_t stride, int size, size_t n, int op) {
  T* o = static_cast<T*>(out);
  memcpy(o, gathered, n * sizeof(T));
  for (int r = 1; r < size; r++) {
    const T* x = reinterpret_cast<const T*>(gathered + static_cast<size_t>(r) * stride);
    reduceFunction<T>(op)(o, o, x, n);
  }
  if (op == BAGUA_GLOO_AVG) divideBy<T>(o, n, size);
}

inline size_t dtypeSize(int dtype) {
  switch (dtype) {
    case BAGUA_GLOO_FLOAT32: return 4;
    case BAGUA_GLOO_FLOAT64: return 8;
    case BAGUA_GLOO_INT32: return 4;
    case BAGUA_GLOO_INT64: return 8;
    case BAGUA_GLOO_UINT8: return 1;
    default: return 0;
  }
}

}  // namespace bgloo

#define BAGUA_DISPATCH(dtype, FN, ...)                                    \
  switch (dtype) {                                                        \
    case BAGUA_GLOO_FLOAT32: FN<float>(__VA_ARGS__); break;               \
    case BAGUA_GLOO_FLOAT64: FN<double>(__VA_ARGS__); break;              \
    case BAGUA_GLOO_INT32: FN<int32_t>(__VA_ARGS__); break;               \
    case BAGUA_GLOO_INT64: FN<int64_t>(__VA_ARGS__); break;               \
    case BAGUA_GLOO_UINT8: FN<uint8_t>(__VA_ARGS__); break;               \
  }
