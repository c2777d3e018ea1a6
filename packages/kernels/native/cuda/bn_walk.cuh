// Index walks of the batch-norm kernels, as host+device code so that
// test_walk.cu can run exactly these loops on the CPU and check that every
// element is visited once, in the right channel (the GPU is not needed for that).
#pragma once

#include <stdint.h>

#include "bagua_bn_math.h"  // BK_HD

// `#pragma unroll` for the device compiler only (the host compiler warns about it)
#if defined(__CUDA_ARCH__)
#define BK_UNROLL _Pragma("unroll")
#else
#define BK_UNROLL
#endif

namespace bk {

// Walks one channel's flattened (image, position) space of x [n, c, hwv] (in
// vectors) with a fixed stride, keeping the plane offset and the position
// without an integer division per step.
struct PlaneCursor {
  int64_t p;             // position within the plane
  int64_t base;          // offset of the plane (image ni, channel ch)
  int64_t hwv;           // plane length
  int64_t s_mod;         // stride % hwv
  int64_t s_base;        // (stride / hwv) * plane_stride
  int64_t plane_stride;  // c * hwv: from image ni to ni + 1
  BK_HD void init(int64_t v, int64_t hwv_, int64_t stride, int64_t c, int64_t ch) {
    hwv = hwv_;
    plane_stride = c * hwv;
    const int64_t ni = v / hwv;
    p = v - ni * hwv;
    base = (ni * c + ch) * hwv;
    const int64_t sd = stride / hwv;
    s_mod = stride - sd * hwv;
    s_base = sd * plane_stride;
  }
  BK_HD int64_t at() const { return base + p; }
  BK_HD void advance() {
    p += s_mod;  // < 2 * hwv: at most one wrap
    base += s_base;
    if (p >= hwv) {
      p -= hwv;
      base += plane_stride;
    }
  }
};

// A thread's share of a channel: indices v, v + stride, ... < per_v. Full batches
// of U offsets go to `batch` (so all U loads can be issued before any use), the
// rest one by one to `one`.
template <int U, class Batch, class One>
BK_HD inline void walk_channel(int64_t v, int64_t stride, int64_t per_v, int64_t hwv, int64_t c,
                               int64_t ch, Batch batch, One one) {
  if (v >= per_v) return;
  PlaneCursor cur;
  cur.init(v, hwv, stride, c, ch);
  for (; v + (U - 1) * stride < per_v; v += U * stride) {
    int64_t at[U];
BK_UNROLL
    for (int u = 0; u < U; u++) {
      at[u] = cur.at();
      cur.advance();
    }
    batch(at);
  }
  for (; v < per_v; v += stride) {
    one(cur.at());
    cur.advance();
  }
}

// Channel of each vector of a grid-stride walk over the whole tensor, tracked
// without division. PLANE: x [n, c, hwv] in vectors within a plane. ROW (hw == 1):
// x [n, c] with a vector spanning `vec` consecutive channels; ch is the index of
// the channel vector.
template <bool ROW>
struct ChannelCursor {
  int64_t p = 0, ch = 0;
  int64_t hwv = 1, c_units = 1, s_mod = 0, s_ch = 0;
  BK_HD void init(int64_t v, int64_t hwv_, int64_t c, int64_t stride, int vec) {
    if (ROW) {
      c_units = c / vec;
      ch = v % c_units;
      s_ch = stride % c_units;
    } else {
      hwv = hwv_;
      c_units = c;
      const int64_t plane = v / hwv;
      p = v - plane * hwv;
      ch = plane % c;
      const int64_t sd = stride / hwv;
      s_mod = stride - sd * hwv;
      s_ch = sd % c;
    }
  }
  BK_HD void advance() {
    if (ROW) {
      ch += s_ch;
      if (ch >= c_units) ch -= c_units;
    } else {
      p += s_mod;
      ch += s_ch;
      if (p >= hwv) {
        p -= hwv;
        ch += 1;
      }
      if (ch >= c_units) ch -= c_units;  // ch < 2 * c_units here
    }
  }
};

// A thread's part of a grid-stride walk over total_v vectors, U at a time:
// body(v, chs) gets the first index of the group and the channels of
// v, v + stride, ..., v + (U-1) * stride (the body skips those >= total_v).
template <int U, bool ROW, class Body>
BK_HD inline void walk_tensor(int64_t v, int64_t stride, int64_t total_v, int64_t hwv, int64_t c,
                              int vec, Body body) {
  if (v >= total_v) return;
  ChannelCursor<ROW> cur;
  cur.init(v, hwv, c, stride, vec);
  for (; v < total_v; v += U * stride) {
    int64_t chs[U];
BK_UNROLL
    for (int u = 0; u < U; u++) {
      chs[u] = cur.ch;
      cur.advance();
    }
    body(v, chs);
  }
}

}  // namespace bk
