// Strided elementwise access, as host+device code: the kernels of elementwise.cu
// use it, and test_host.cu runs it on the CPU against the CPU library.
#pragma once

#include <stdint.h>

#include "bagua_bn_math.h"  // BK_HD

// Small shapes and strides passed to kernels by value (no device copy, no sync).
struct BkShape {
  int ndim;
  int64_t size[8];
  int64_t stride_a[8];
  int64_t stride_b[8];
};

namespace bk {

// Drops size-1 dimensions and merges neighbours that are contiguous with each
// other in every operand, so most broadcasts become 1-2 dimensional.
inline void collapse(BkShape &s, int operands) {
  int nd = 0;
  for (int d = 0; d < s.ndim; d++) {
    if (s.size[d] == 1) continue;
    if (nd > 0) {
      int p = nd - 1;
      bool ok = s.stride_a[p] == s.stride_a[d] * s.size[d] &&
                (operands < 2 || s.stride_b[p] == s.stride_b[d] * s.size[d]);
      if (ok) {
        s.size[p] *= s.size[d];
        s.stride_a[p] = s.stride_a[d];
        s.stride_b[p] = s.stride_b[d];
        continue;
      }
    }
    s.size[nd] = s.size[d];
    s.stride_a[nd] = s.stride_a[d];
    s.stride_b[nd] = s.stride_b[d];
    nd++;
  }
  if (nd == 0) {  // a scalar
    s.size[0] = 1;
    s.stride_a[0] = 0;
    s.stride_b[0] = 0;
    nd = 1;
  }
  s.ndim = nd;
}

// Element i of the contiguous output -> offsets into a and b.
template <typename I>
BK_HD inline void offsets(const BkShape &s, I i, int64_t &oa, int64_t &ob) {
  oa = 0;
  ob = 0;
  I rem = i;
  for (int d = s.ndim - 1; d > 0; d--) {
    I sz = (I)s.size[d];
    I q = rem / sz;
    I r = rem - q * sz;
    oa += (int64_t)r * s.stride_a[d];
    ob += (int64_t)r * s.stride_b[d];
    rem = q;
  }
  oa += (int64_t)rem * s.stride_a[0];
  ob += (int64_t)rem * s.stride_b[0];
}

// Row-major contiguous for `shape` (size-1 dimensions may have any stride).
inline bool is_contiguous(const BkShape &s, const int64_t *strides) {
  int64_t expect = 1;
  for (int d = s.ndim - 1; d >= 0; d--) {
    if (s.size[d] != 1 && strides[d] != expect) return false;
    expect *= s.size[d];
  }
  return true;
}

}  // namespace bk
