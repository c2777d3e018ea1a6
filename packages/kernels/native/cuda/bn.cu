// Batch-norm primitives on the GPU, written for memory bandwidth.
//
// x is [n, c, hw]. Two layouts of work:
//  - planes (hw > 1): a channel's elements are n contiguous planes of hw floats.
//    Reductions give each channel `bpc` blocks that stride over the flattened
//    (image, position) space of that channel with float4 loads (hw % 4 == 0);
//    positions are tracked incrementally, so the loop has no integer division.
//  - rows (hw == 1, BatchNorm1d): a channel is a column of [n, c]; a block
//    covers 32 * VEC columns and a slice of rows, loads are coalesced along c.
// Statistics: each thread folds batches of 4-16 values, shifted by a sample of
// their channel (exact two-pass in registers), into its running (count, mean, M2)
// by Chan's merge, then warp
// shuffles and shared memory merge threads, and the last block of a channel to
// finish (a self-resetting counter) merges the blocks' partials in double: one
// kernel, no second pass, no host synchronisation anywhere (the global count of
// the backward pass is read from device memory).
// Elementwise passes stream the whole tensor with a grid-stride loop, computing
// the per-channel scale/shift on the fly (the formulas of bagua_bn_math.h).
// Element types: x, y, dy and dx are float32, bfloat16 or float16 (E, bagua_half.h's kinds);
// EVec<E, VEC> loads VEC of them at once (16 or 8 bytes) and widens them to float, so every
// kernel below is one source for the three; per-channel data and partials stay float.
#include <initializer_list>
#include <type_traits>

#include "common.cuh"
#include "bagua_bn_math.h"
#include "bagua_half.h"
#include "bn_walk.cuh"

namespace bk {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// ---- accumulators -----------------------------------------------------------------
struct Welford {
  float n, mean, m2;
  __device__ void merge(const Welford &o) { bk_bn::chan_merge(n, mean, m2, o.n, o.mean, o.m2); }
  __device__ Welford shfl_down(int off) const {
    return Welford{__shfl_down_sync(0xffffffffu, n, off), __shfl_down_sync(0xffffffffu, mean, off),
                   __shfl_down_sync(0xffffffffu, m2, off)};
  }
};

struct Sums {
  float dy, dyxmu;
  __device__ void merge(const Sums &o) {
    dy += o.dy;
    dyxmu += o.dyxmu;
  }
  __device__ Sums shfl_down(int off) const {
    return Sums{__shfl_down_sync(0xffffffffu, dy, off), __shfl_down_sync(0xffffffffu, dyxmu, off)};
  }
};

// Folds K values (one batch) into a Welford state: exact mean and M2 of the batch
// (K is a power of two, so the mean is exact in float), then one Chan merge.
// Values are shifted by `pivot` (a sample of the same channel) first: the float
// state then holds numbers of the size of the spread, not of the mean, so a
// channel with |mean| >> std keeps its precision (the pivot is added back in double).
template <int K>
__device__ __forceinline__ void fold(Welford &a, const float (&v)[K], float pivot) {
  float t[K];
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < K; i++) {
    t[i] = v[i] - pivot;
    s += t[i];
  }
  const float mb = s * (1.f / K);
  float m2 = 0.f;
#pragma unroll
  for (int i = 0; i < K; i++) {
    const float d = t[i] - mb;
    m2 = fmaf(d, d, m2);
  }
  bk_bn::chan_merge(a.n, a.mean, a.m2, (float)K, mb, m2);
}

// Merges every thread's state; the result is valid in thread 0.
template <class Acc>
__device__ __forceinline__ Acc block_merge(Acc a) {
  __shared__ Acc smem[kWarps];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) a.merge(a.shfl_down(off));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) smem[warp] = a;
  __syncthreads();
  if (warp == 0) {
    a = smem[lane < kWarps ? lane : 0];
    if (lane >= kWarps) a = Acc{};
#pragma unroll
    for (int off = kWarps / 2; off > 0; off >>= 1) a.merge(a.shfl_down(off));
  }
  return a;
}

// ---- last-block-done --------------------------------------------------------------
// Thread 0 of each block has published its partial; returns true in the one block
// that finishes last for `slot`, which then owns all partials (and resets the counter).
__device__ __forceinline__ bool last_block(unsigned *counters, int slot, int blocks) {
  __shared__ bool last;
  if (threadIdx.x == 0) {
    __threadfence();  // the partial is visible device-wide before the ticket is taken
    unsigned ticket = atomicAdd(&counters[slot], 1u);
    last = ticket == (unsigned)blocks - 1;
    if (last) {
      counters[slot] = 0;  // ready for the next launch, which is stream-ordered after us
      __threadfence();
    }
  }
  __syncthreads();
  return last;
}

struct WelfordD {
  double n, mean, m2;
};

// Merges `count` Welford partials (3 floats each, stride 3) in double, in index
// order per lane and a fixed shuffle tree across the warp: deterministic whatever
// block finished last. Call from a whole warp; valid in lane 0.
__device__ __forceinline__ WelfordD warp_merge_partials(const float *p, int count) {
  const int lane = threadIdx.x & 31;
  WelfordD a{0, 0, 0};
  for (int i = lane; i < count; i += 32) {
    const double nb = __ldcg(p + 3 * i), mb = __ldcg(p + 3 * i + 1), m2b = __ldcg(p + 3 * i + 2);
    bk_bn::chan_merge(a.n, a.mean, a.m2, nb, mb, m2b);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const double nb = __shfl_down_sync(0xffffffffu, a.n, off);
    const double mb = __shfl_down_sync(0xffffffffu, a.mean, off);
    const double m2b = __shfl_down_sync(0xffffffffu, a.m2, off);
    bk_bn::chan_merge(a.n, a.mean, a.m2, nb, mb, m2b);
  }
  return a;
}

__device__ __forceinline__ void warp_sum_partials(const float *p, int count, double &dy, double &dx) {
  const int lane = threadIdx.x & 31;
  dy = 0;
  dx = 0;
  for (int i = lane; i < count; i += 32) {
    dy += __ldcg(p + 2 * i);
    dx += __ldcg(p + 2 * i + 1);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    dy += __shfl_down_sync(0xffffffffu, dy, off);
    dx += __shfl_down_sync(0xffffffffu, dx, off);
  }
}

// ---- vector helpers -----------------------------------------------------------------
template <int VEC> struct Vec;
template <> struct Vec<4> {
  using T = float4;
  static __device__ __forceinline__ void unpack(const float4 &v, float *o) {
    o[0] = v.x; o[1] = v.y; o[2] = v.z; o[3] = v.w;
  }
  static __device__ __forceinline__ float4 pack(const float *o) { return make_float4(o[0], o[1], o[2], o[3]); }
};
template <> struct Vec<1> {
  using T = float;
  static __device__ __forceinline__ void unpack(const float &v, float *o) { o[0] = v; }
  static __device__ __forceinline__ float pack(const float *o) { return o[0]; }
};

// VEC stored elements of kind E as one load: float4 / float for float32, 8 / 2 bytes for the
// 16-bit kinds (unpacked to float, packed with round to nearest even).
template <class E, int VEC>
struct EVec {
  using T = typename std::conditional<VEC == 4, unsigned long long, unsigned short>::type;
  static __device__ __forceinline__ void unpack(const T &v, float *o) {
#pragma unroll
    for (int j = 0; j < VEC; j++) o[j] = E::load((uint16_t)(v >> (16 * j)));
  }
  static __device__ __forceinline__ T pack(const float *o) {
    T r = 0;
#pragma unroll
    for (int j = 0; j < VEC; j++) r |= (T)E::store(o[j]) << (16 * j);
    return r;
  }
};
template <int VEC>
struct EVec<bk_half::F32, VEC> : Vec<VEC> {};

// Whether p suits VEC = 4 loads of E (16 bytes for float, 8 for the 16-bit kinds).
template <class E>
inline bool aligned_vec(const void *p) {
  return ((uintptr_t)p & (4 * sizeof(typename E::storage) - 1)) == 0;
}

// ---- where statistics go ------------------------------------------------------------
// The stats kernels end with each channel's (count, mean, M2); this writes them as the
// all-gather record (mean, biased var; one tag slot) or, `sums`, as the all-reduce record
// (S1, S2 shifted by shift[ch]; `slots` tag slots, the tag in slot `slot`), then count.
struct StatsOut {
  float *rec;
  const float *shift;  // nullable: 0
  int64_t c;
  float count, tag;
  int64_t slots, slot;
  bool sums;
  template <class T>
  __device__ void channel(int64_t ch, T n, double mean, T m2) const {
    if (sums) {
      double s1, s2;
      bk_bn::shifted_sums((double)n, mean, (double)m2, shift ? (double)shift[ch] : 0.0, s1, s2);
      rec[ch] = (float)s1;
      rec[c + ch] = (float)s2;
    } else {
      rec[ch] = (float)mean;
      rec[c + ch] = (float)bk_bn::biased_var(n, m2);
    }
  }
  __device__ void header() const {
    rec[2 * c] = count;
    for (int64_t i = 0; i < slots; i++) rec[2 * c + 1 + i] = i == slot ? tag : 0.f;
  }
};

// ---- statistics: planes ---------------------------------------------------------------
template <class E, int VEC>
__global__ void __launch_bounds__(kThreads)
stats_planes_kernel(StatsOut out, const typename E::storage *x, int64_t c, int64_t hwv, int64_t per_v, int bpc,
                    float *partials, unsigned *counters) {
  using V = EVec<E, VEC>;
  using T = typename V::T;
  constexpr int U = VEC == 4 ? 4 : 8;  // vectors per batch: 16 or 8 values
  constexpr int K = U * VEC;
  const int64_t ch = blockIdx.x / bpc;
  const int b = (int)(blockIdx.x - ch * bpc);
  const int64_t stride = (int64_t)bpc * kThreads;
  int64_t v = (int64_t)b * kThreads + threadIdx.x;
  const T *xv = reinterpret_cast<const T *>(x);
  const float pivot = E::load(__ldg(x + ch * hwv * VEC));  // element 0 of the channel
  Welford acc{0.f, 0.f, 0.f};
  walk_channel<U>(
      v, stride, per_v, hwv, c, ch,
      [&](const int64_t *at) {
        T raw[U];
#pragma unroll
        for (int u = 0; u < U; u++) raw[u] = __ldg(xv + at[u]);  // all loads before any use
        float vals[K];
#pragma unroll
        for (int u = 0; u < U; u++) V::unpack(raw[u], vals + u * VEC);
        fold<K>(acc, vals, pivot);
      },
      [&](int64_t at) {
        float vals[VEC];
        V::unpack(__ldg(xv + at), vals);
        fold<VEC>(acc, vals, pivot);
      });
  acc = block_merge(acc);
  if (bpc == 1) {
    if (threadIdx.x == 0) {
      out.channel(ch, acc.n, (double)pivot + (double)acc.mean, acc.m2);
      if (ch == 0) out.header();
    }
    return;
  }
  float *mine = partials + 3 * (ch * bpc + b);
  if (threadIdx.x == 0) {
    mine[0] = acc.n;
    mine[1] = acc.mean;
    mine[2] = acc.m2;
  }
  if (!last_block(counters, (int)ch, bpc)) return;
  if (threadIdx.x < 32) {
    WelfordD t = warp_merge_partials(partials + 3 * ch * bpc, bpc);
    if (threadIdx.x == 0) {
      out.channel(ch, t.n, (double)pivot + t.mean, t.m2);
      if (ch == 0) out.header();
    }
  }
}

// ---- statistics: rows (hw == 1) ---------------------------------------------------------
// Block = 32 column lanes x 8 row lanes; blockIdx.x = column tile, blockIdx.y = row split.
template <class E, int VEC>
__global__ void __launch_bounds__(kThreads)
stats_rows_kernel(StatsOut out, const typename E::storage *x, int64_t n, int64_t c, int splits, float *partials,
                  unsigned *counters) {
  using V = EVec<E, VEC>;
  using T = typename V::T;
  constexpr int U = 4;  // rows per batch
  constexpr int TILE = 32 * VEC;
  __shared__ Welford part[8][TILE + 1];
  const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  const int64_t col = ((int64_t)blockIdx.x * 32 + tx) * VEC;
  const bool valid = col < c;
  const int64_t step = (int64_t)splits * 8;
  const T *xv = reinterpret_cast<const T *>(x);
  const int64_t cv = c / VEC;
  Welford acc[VEC];
  float pivot[VEC];  // row 0 of each column
#pragma unroll
  for (int j = 0; j < VEC; j++) {
    acc[j] = Welford{0.f, 0.f, 0.f};
    pivot[j] = valid ? E::load(__ldg(x + col + j)) : 0.f;
  }
  int64_t r = (int64_t)blockIdx.y * 8 + ty;
  if (valid) {
    for (; r + (U - 1) * step < n; r += U * step) {
      T raw[U];
#pragma unroll
      for (int u = 0; u < U; u++) raw[u] = __ldg(xv + (r + u * step) * cv + col / VEC);
      float vals[U][VEC];
#pragma unroll
      for (int u = 0; u < U; u++) V::unpack(raw[u], vals[u]);
#pragma unroll
      for (int j = 0; j < VEC; j++) {
        float col_vals[U];
#pragma unroll
        for (int u = 0; u < U; u++) col_vals[u] = vals[u][j];
        fold<U>(acc[j], col_vals, pivot[j]);
      }
    }
    for (; r < n; r += step) {
      float vals[VEC];
      V::unpack(__ldg(xv + r * cv + col / VEC), vals);
#pragma unroll
      for (int j = 0; j < VEC; j++) {
        float one[1] = {vals[j]};
        fold<1>(acc[j], one, pivot[j]);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < VEC; j++) part[ty][tx * VEC + j] = acc[j];
  __syncthreads();
  // threads 0..TILE-1 each own one column of the tile
  Welford w{0.f, 0.f, 0.f};
  const int lc = threadIdx.x;
  const int64_t gcol = (int64_t)blockIdx.x * TILE + lc;
  if (lc < TILE) {
#pragma unroll
    for (int k = 0; k < 8; k++) w.merge(part[k][lc]);
  }
  if (splits == 1) {
    if (lc < TILE && gcol < c) out.channel(gcol, w.n, (double)E::load(__ldg(x + gcol)) + (double)w.mean, w.m2);
    if (blockIdx.x == 0 && threadIdx.x == 0) out.header();
    return;
  }
  // partials: [tile][split][TILE] x 3
  float *mine = partials + 3 * (((int64_t)blockIdx.x * splits + blockIdx.y) * TILE + lc);
  if (lc < TILE) {
    mine[0] = w.n;
    mine[1] = w.mean;
    mine[2] = w.m2;
    __threadfence();  // each writer publishes its own partial device-wide
  }
  __syncthreads();  // ... before thread 0 takes the ticket
  if (!last_block(counters, blockIdx.x, splits)) return;
  if (lc < TILE && gcol < c) {
    WelfordD t{0, 0, 0};
    const float *p = partials + 3 * ((int64_t)blockIdx.x * splits * TILE + lc);
    for (int s = 0; s < splits; s++) {
      const float *q = p + 3 * (int64_t)s * TILE;
      bk_bn::chan_merge(t.n, t.mean, t.m2, (double)__ldcg(q), (double)__ldcg(q + 1), (double)__ldcg(q + 2));
    }
    out.channel(gcol, t.n, (double)E::load(__ldg(x + gcol)) + t.mean, t.m2);
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) out.header();
}

// ---- backward reduce: planes / rows -------------------------------------------------------
__device__ __forceinline__ void write_sums(float *sums, float *gw, float *gb, const float *invstd,
                                           int64_t c, int64_t ch, float sdy, float sdx) {
  sums[ch] = sdy;
  sums[c + ch] = sdx;
  if (gw) gw[ch] = sdx * invstd[ch];
  if (gb) gb[ch] = sdy;
}

template <class E, int VEC>
__global__ void __launch_bounds__(kThreads)
reduce_planes_kernel(float *sums, float *gw, float *gb, const typename E::storage *dy, const typename E::storage *x,
                     const float *mean, const float *invstd, int64_t c, int64_t hwv, int64_t per_v,
                     int bpc, float *partials, unsigned *counters) {
  using V = EVec<E, VEC>;
  using T = typename V::T;
  constexpr int U = VEC == 4 ? 2 : 8;  // two tensors are read: 2 x U loads in flight
  const int64_t ch = blockIdx.x / bpc;
  const int b = (int)(blockIdx.x - ch * bpc);
  const int64_t stride = (int64_t)bpc * kThreads;
  int64_t v = (int64_t)b * kThreads + threadIdx.x;
  const T *dv = reinterpret_cast<const T *>(dy);
  const T *xv = reinterpret_cast<const T *>(x);
  const float m = __ldg(mean + ch);
  Sums acc{0.f, 0.f};
  auto add = [&](const T &gd, const T &xd) {
    float g[VEC], xx[VEC];
    V::unpack(gd, g);
    V::unpack(xd, xx);
#pragma unroll
    for (int j = 0; j < VEC; j++) {
      acc.dy += g[j];
      acc.dyxmu = fmaf(g[j], xx[j] - m, acc.dyxmu);
    }
  };
  walk_channel<U>(
      v, stride, per_v, hwv, c, ch,
      [&](const int64_t *at) {
        T rd[U], rx[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
          rd[u] = __ldg(dv + at[u]);
          rx[u] = __ldg(xv + at[u]);
        }
#pragma unroll
        for (int u = 0; u < U; u++) add(rd[u], rx[u]);
      },
      [&](int64_t at) { add(__ldg(dv + at), __ldg(xv + at)); });
  acc = block_merge(acc);
  if (bpc == 1) {
    if (threadIdx.x == 0) write_sums(sums, gw, gb, invstd, c, ch, acc.dy, acc.dyxmu);
    return;
  }
  float *mine = partials + 2 * (ch * bpc + b);
  if (threadIdx.x == 0) {
    mine[0] = acc.dy;
    mine[1] = acc.dyxmu;
  }
  if (!last_block(counters, (int)ch, bpc)) return;
  if (threadIdx.x < 32) {
    double sdy, sdx;
    warp_sum_partials(partials + 2 * ch * bpc, bpc, sdy, sdx);
    if (threadIdx.x == 0) write_sums(sums, gw, gb, invstd, c, ch, (float)sdy, (float)sdx);
  }
}

template <class E, int VEC>
__global__ void __launch_bounds__(kThreads)
reduce_rows_kernel(float *sums, float *gw, float *gb, const typename E::storage *dy, const typename E::storage *x,
                   const float *mean, const float *invstd, int64_t n, int64_t c, int splits,
                   float *partials, unsigned *counters) {
  using V = EVec<E, VEC>;
  using T = typename V::T;
  constexpr int U = 4;
  constexpr int TILE = 32 * VEC;
  __shared__ Sums part[8][TILE + 1];
  const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  const int64_t col = ((int64_t)blockIdx.x * 32 + tx) * VEC;
  const bool valid = col < c;
  const int64_t step = (int64_t)splits * 8;
  const T *dv = reinterpret_cast<const T *>(dy);
  const T *xv = reinterpret_cast<const T *>(x);
  const int64_t cv = c / VEC;
  float m[VEC];
  Sums acc[VEC];
#pragma unroll
  for (int j = 0; j < VEC; j++) {
    acc[j] = Sums{0.f, 0.f};
    m[j] = valid ? __ldg(mean + col + j) : 0.f;
  }
  int64_t r = (int64_t)blockIdx.y * 8 + ty;
  if (valid) {
    for (; r + (U - 1) * step < n; r += U * step) {
      T rd[U], rx[U];
#pragma unroll
      for (int u = 0; u < U; u++) {
        rd[u] = __ldg(dv + (r + u * step) * cv + col / VEC);
        rx[u] = __ldg(xv + (r + u * step) * cv + col / VEC);
      }
#pragma unroll
      for (int u = 0; u < U; u++) {
        float g[VEC], xx[VEC];
        V::unpack(rd[u], g);
        V::unpack(rx[u], xx);
#pragma unroll
        for (int j = 0; j < VEC; j++) {
          acc[j].dy += g[j];
          acc[j].dyxmu = fmaf(g[j], xx[j] - m[j], acc[j].dyxmu);
        }
      }
    }
    for (; r < n; r += step) {
      float g[VEC], xx[VEC];
      V::unpack(__ldg(dv + r * cv + col / VEC), g);
      V::unpack(__ldg(xv + r * cv + col / VEC), xx);
#pragma unroll
      for (int j = 0; j < VEC; j++) {
        acc[j].dy += g[j];
        acc[j].dyxmu = fmaf(g[j], xx[j] - m[j], acc[j].dyxmu);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < VEC; j++) part[ty][tx * VEC + j] = acc[j];
  __syncthreads();
  Sums w{0.f, 0.f};
  const int lc = threadIdx.x;
  const int64_t gcol = (int64_t)blockIdx.x * TILE + lc;
  if (lc < TILE) {
#pragma unroll
    for (int k = 0; k < 8; k++) w.merge(part[k][lc]);
  }
  if (splits == 1) {
    if (lc < TILE && gcol < c) write_sums(sums, gw, gb, invstd, c, gcol, w.dy, w.dyxmu);
    return;
  }
  float *mine = partials + 2 * (((int64_t)blockIdx.x * splits + blockIdx.y) * TILE + lc);
  if (lc < TILE) {
    mine[0] = w.dy;
    mine[1] = w.dyxmu;
    __threadfence();
  }
  __syncthreads();
  if (!last_block(counters, blockIdx.x, splits)) return;
  if (lc < TILE && gcol < c) {
    double sdy = 0, sdx = 0;
    const float *p = partials + 2 * ((int64_t)blockIdx.x * splits * TILE + lc);
    for (int s = 0; s < splits; s++) {
      sdy += __ldcg(p + 2 * (int64_t)s * TILE);
      sdx += __ldcg(p + 2 * (int64_t)s * TILE + 1);
    }
    write_sums(sums, gw, gb, invstd, c, gcol, (float)sdy, (float)sdx);
  }
}

// ---- elementwise ---------------------------------------------------------------------------
template <int VEC, bool ROW>
__device__ __forceinline__ void load_channel(float *out, const float *arr, int64_t ch, float dflt) {
  if (!arr) {
#pragma unroll
    for (int j = 0; j < VEC; j++) out[j] = dflt;
  } else if (ROW) {
    Vec<VEC>::unpack(__ldg(reinterpret_cast<const typename Vec<VEC>::T *>(arr) + ch), out);
  } else {
    const float a = __ldg(arr + ch);
#pragma unroll
    for (int j = 0; j < VEC; j++) out[j] = a;
  }
}

template <class E, int VEC, bool ROW>
__global__ void __launch_bounds__(kThreads)
elemt_kernel(typename E::storage *y, const typename E::storage *x, const float *mean, const float *invstd, const float *weight,
             const float *bias, int64_t c, int64_t hwv, int64_t total_v) {
  using V = EVec<E, VEC>;
  using T = typename V::T;
  constexpr int U = 4;
  const int64_t stride = (int64_t)gridDim.x * kThreads;
  int64_t v = (int64_t)blockIdx.x * kThreads + threadIdx.x;
  const T *xv = reinterpret_cast<const T *>(x);
  T *yv = reinterpret_cast<T *>(y);
  walk_tensor<U, ROW>(v, stride, total_v, hwv, c, VEC, [&](int64_t v0, const int64_t *chs) {
    T raw[U];
#pragma unroll
    for (int u = 0; u < U; u++)  // loads first: y may alias x, so no load may follow a store
      if (v0 + u * stride < total_v) raw[u] = __ldg(xv + v0 + u * stride);
#pragma unroll
    for (int u = 0; u < U; u++) {
      if (v0 + u * stride >= total_v) break;
      float xs[VEC], mu[VEC], is[VEC], w[VEC], b[VEC], o[VEC];
      V::unpack(raw[u], xs);
      load_channel<VEC, ROW>(mu, mean, chs[u], 0.f);
      load_channel<VEC, ROW>(is, invstd, chs[u], 0.f);
      load_channel<VEC, ROW>(w, weight, chs[u], 1.f);
      load_channel<VEC, ROW>(b, bias, chs[u], 0.f);
#pragma unroll
      for (int j = 0; j < VEC; j++) {
        // bk_bn::elemt_scale is invstd * weight[c] (or invstd): the same product
        const float scale = weight ? is[j] * w[j] : is[j];
        o[j] = bk_bn::elemt(xs[j], mu[j], scale, b[j]);
      }
      yv[v0 + u * stride] = V::pack(o);
    }
  });
}

template <class E, int VEC, bool ROW>
__global__ void __launch_bounds__(kThreads)
backward_elemt_kernel(typename E::storage *dx, const typename E::storage *dy, const typename E::storage *x,
                      const float *mean,
                      const float *invstd, const float *weight, const float *sums,
                      const float *count, int64_t c, int64_t hwv, int64_t total_v) {
  using V = EVec<E, VEC>;
  using T = typename V::T;
  constexpr int U = 2;
  const int64_t stride = (int64_t)gridDim.x * kThreads;
  int64_t v = (int64_t)blockIdx.x * kThreads + threadIdx.x;
  if (v >= total_v) return;
  const float N = __ldg(count);  // the global count, a device scalar: no host round trip
  const T *dv = reinterpret_cast<const T *>(dy);
  const T *xv = reinterpret_cast<const T *>(x);
  T *ov = reinterpret_cast<T *>(dx);
  walk_tensor<U, ROW>(v, stride, total_v, hwv, c, VEC, [&](int64_t v0, const int64_t *chs) {
    T rd[U], rx[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      if (v0 + u * stride < total_v) {
        rd[u] = __ldg(dv + v0 + u * stride);
        rx[u] = __ldg(xv + v0 + u * stride);
      }
    }
#pragma unroll
    for (int u = 0; u < U; u++) {
      if (v0 + u * stride >= total_v) break;
      float g[VEC], xs[VEC], mu[VEC], is[VEC], w[VEC], sdy[VEC], sdx[VEC], o[VEC];
      V::unpack(rd[u], g);
      V::unpack(rx[u], xs);
      load_channel<VEC, ROW>(mu, mean, chs[u], 0.f);
      load_channel<VEC, ROW>(is, invstd, chs[u], 0.f);
      load_channel<VEC, ROW>(w, weight, chs[u], 1.f);
      load_channel<VEC, ROW>(sdy, sums, chs[u], 0.f);
      load_channel<VEC, ROW>(sdx, sums + c, chs[u], 0.f);
#pragma unroll
      for (int j = 0; j < VEC; j++) {
        const bk_bn::BackwardCoeffs co = bk_bn::backward_coeffs(is[j], w[j], sdy[j], sdx[j], N);
        o[j] = bk_bn::backward_elemt(g[j], xs[j], mu[j], co);
      }
      ov[v0 + u * stride] = V::pack(o);
    }
  });
}

// ---- small per-channel kernels ------------------------------------------------------------
__global__ void merge_stats_kernel(float *mean, float *invstd, float *count, const float *stats,
                                   int64_t ranks, int64_t c, int64_t rec, float eps, float *running_mean,
                                   float *running_var, float factor, DeviceError *err) {
  // every thread sums the counts (ranks is small) so no second launch is needed
  double total = 0;
  bool bad = false;
  int64_t bad_rank = 0;
  for (int64_t r = 0; r < ranks; r++) {
    const float cnt = stats[r * rec + 2 * c];
    if (!(cnt >= 0.f) && !bad) {
      bad = true;
      bad_rank = r;
    }
    total += cnt;
  }
  const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (tid == 0) {
    *count = (float)total;
    if (bad) raise_device_error(err, DEVERR_BN_COUNT, 0, bad_rank, ranks);
  }
  for (int64_t ch = tid; ch < c; ch += (int64_t)gridDim.x * blockDim.x) {
    double cnt = 0, m = 0, m2 = 0;
    for (int64_t r = 0; r < ranks; r++) {
      const float *s = stats + r * rec;
      const double nb = s[2 * c];
      bk_bn::chan_merge(cnt, m, m2, nb, (double)s[ch], (double)s[c + ch] * nb);
    }
    const double var = bk_bn::biased_var(cnt, m2);
    mean[ch] = (float)m;
    invstd[ch] = (float)bk_bn::invstd(var, (double)eps);
    // Running statistics are left alone for a global count <= 1 (undefined unbiased
    // variance), as in the CPU library.
    if (running_mean && cnt > 1) {
      running_mean[ch] = (float)bk_bn::running_update((double)running_mean[ch], m, (double)factor);
      running_var[ch] = (float)bk_bn::running_update((double)running_var[ch],
                                                     bk_bn::unbiased_var(var, cnt), (double)factor);
    }
  }
}

__global__ void invstd_kernel(float *invstd, const float *var, int64_t c, float eps) {
  for (int64_t ch = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; ch < c;
       ch += (int64_t)gridDim.x * blockDim.x)
    invstd[ch] = (float)bk_bn::invstd((double)var[ch], (double)eps);
}

// An empty local batch: zero moments (or sums), then the header.
__global__ void empty_stats_kernel(StatsOut out) {
  const int64_t c = out.c;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < 2 * c;
       i += (int64_t)gridDim.x * blockDim.x)
    out.rec[i] = 0.f;
  if (blockIdx.x == 0 && threadIdx.x == 0) out.header();
}

// mean = shift + S1/N, var = (S2 - S1^2/N)/N from an all-reduced sums record, then as
// merge_stats_kernel; shift = mean for the next step (each thread its own channels).
__global__ void merge_sums_kernel(float *mean, float *invstd, float *count, float *shift, const float *sums,
                                  int64_t c, float eps, float *running_mean, float *running_var, float factor,
                                  DeviceError *err) {
  const float total = sums[2 * c];
  const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (tid == 0) {
    *count = total;
    if (!(total >= 0.f)) raise_device_error(err, DEVERR_BN_COUNT, 0, 0, 1);
  }
  const double cnt = total;
  for (int64_t ch = tid; ch < c; ch += (int64_t)gridDim.x * blockDim.x) {
    double m, var;
    bk_bn::sums_moments(cnt, (double)sums[ch], (double)sums[c + ch], (double)shift[ch], m, var);
    mean[ch] = (float)m;
    invstd[ch] = (float)bk_bn::invstd(var, (double)eps);
    if (running_mean && cnt > 1) {
      running_mean[ch] = (float)bk_bn::running_update((double)running_mean[ch], m, (double)factor);
      running_var[ch] = (float)bk_bn::running_update((double)running_var[ch],
                                                     bk_bn::unbiased_var(var, cnt), (double)factor);
    }
    if (cnt > 0) shift[ch] = (float)m;
  }
}

// ---- launch planning -------------------------------------------------------------------
int check_sizes(const char *fn, int64_t n, int64_t c, int64_t hw, int64_t *per, int64_t *total) {
  BK_REQUIRE(n >= 0 && c >= 0 && hw >= 0, "%s: sizes must be >= 0 (n %lld, c %lld, hw %lld)", fn,
             (long long)n, (long long)c, (long long)hw);
  BK_REQUIRE(!__builtin_mul_overflow(n, hw, per) && !__builtin_mul_overflow(*per, c, total),
             "%s: size overflow", fn);
  return 0;
}

// Blocks per channel for the plane kernels: all channels' blocks together fill
// the GPU once (one wave, see wave_grid), each thread keeping a few batches of work.
int blocks_per_channel(const void *kernel, int dev, int64_t c, int64_t per_v, int64_t per_thread_min) {
  int64_t bpc = resident_blocks(kernel, kThreads, dev) / c;
  const int64_t cap = ceil_div(per_v, (int64_t)kThreads * per_thread_min);
  if (bpc > cap) bpc = cap;
  if (bpc > 1024) bpc = 1024;
  return bpc < 1 ? 1 : (int)bpc;
}

// Row splits for the rows kernels: likewise one wave, >= 4 rows per thread.
int row_splits(const void *kernel, int dev, int64_t tiles, int64_t n) {
  int64_t splits = resident_blocks(kernel, kThreads, dev) / tiles;
  const int64_t cap = ceil_div(n, 8 * 4);
  if (splits > cap) splits = cap;
  if (splits > 1024) splits = 1024;
  return splits < 1 ? 1 : (int)splits;
}

bool all_aligned(std::initializer_list<const void *> ps) {
  for (const void *p : ps)
    if (p && !aligned16(p)) return false;
  return true;
}

template <class E>
bool all_aligned_vec(std::initializer_list<const void *> ps) {
  for (const void *p : ps)
    if (p && !aligned_vec<E>(p)) return false;
  return true;
}

// Which elementwise variant: 0 planes 4-vectors, 1 rows 4-vectors, 2 scalar. `big` holds E
// elements, `per_channel` floats (loaded as float4 in the rows variant).
template <class E>
int elemt_variant(int64_t c, int64_t hw, std::initializer_list<const void *> big,
                  std::initializer_list<const void *> per_channel) {
  if (hw % 4 == 0 && all_aligned_vec<E>(big)) return 0;
  if (hw == 1 && c % 4 == 0 && all_aligned_vec<E>(big) && all_aligned(per_channel)) return 1;
  return 2;
}

}  // namespace
}  // namespace bk

using namespace bk;

extern "C" {

}  // extern "C"

namespace bk {
namespace {
// Both stats entry points: the same kernels, writing `out`.
template <class E>
int launch_stats(const char *fn, StatsOut out, const typename E::storage *x, int64_t n, int64_t c, int64_t hw,
                 void *stream) {
  int64_t per = 0, total = 0;
  BK_TRY(check_sizes(fn, n, c, hw, &per, &total));
  BK_REQUIRE(out.rec, "%s: stats is NULL", fn);
  BK_REQUIRE(total == 0 || x, "%s: x is NULL", fn);
  cudaStream_t s = as_stream(stream);
  int dev;
  BK_TRY(current_device(&dev));
  out.c = c;
  out.count = (float)per;
  if (total == 0) {
    empty_stats_kernel<<<grid_for(2 * c + 1, kThreads, dev), kThreads, 0, s>>>(out);
    return check_launch("bn_stats");
  }
  if (hw == 1 && c > 1) {
    const int vec = (c % 4 == 0 && aligned_vec<E>(x)) ? 4 : 1;
    const int64_t tiles = ceil_div(c, 32 * vec);
    BK_REQUIRE(tiles <= 0x7fffffff, "%s: too many channels", fn);
    const int splits = row_splits(vec == 4 ? (const void *)stats_rows_kernel<E, 4> : (const void *)stats_rows_kernel<E, 1>,
                                  dev, tiles, n);
    Workspace ws{};
    if (splits > 1) BK_TRY(workspace(s, tiles, tiles * splits * 32 * vec * 3, &ws));
    dim3 grid((unsigned)tiles, (unsigned)splits);
    if (vec == 4)
      stats_rows_kernel<E, 4><<<grid, kThreads, 0, s>>>(out, x, n, c, splits, ws.partials, ws.counters);
    else
      stats_rows_kernel<E, 1><<<grid, kThreads, 0, s>>>(out, x, n, c, splits, ws.partials, ws.counters);
    return check_launch("bn_stats");
  }
  const int vec = (hw % 4 == 0 && aligned_vec<E>(x)) ? 4 : 1;
  const int64_t hwv = hw / vec, per_v = n * hwv;
  const int bpc = blocks_per_channel(
      vec == 4 ? (const void *)stats_planes_kernel<E, 4> : (const void *)stats_planes_kernel<E, 1>, dev, c, per_v,
      vec == 4 ? 8 : 16);
  BK_REQUIRE(c * bpc <= 0x7fffffff, "%s: too many channels", fn);
  Workspace ws{};
  if (bpc > 1) BK_TRY(workspace(s, c, c * bpc * 3, &ws));
  const unsigned grid = (unsigned)(c * bpc);
  if (vec == 4)
    stats_planes_kernel<E, 4><<<grid, kThreads, 0, s>>>(out, x, c, hwv, per_v, bpc, ws.partials, ws.counters);
  else
    stats_planes_kernel<E, 1><<<grid, kThreads, 0, s>>>(out, x, c, hwv, per_v, bpc, ws.partials, ws.counters);
  return check_launch("bn_stats");
}

template <class E>
int bn_stats(const char *fn, float *stats, const typename E::storage *x, int64_t n, int64_t c, int64_t hw,
             float tag, void *stream) {
  StatsOut out{stats, nullptr, c, 0.f, tag, 1, 0, false};
  return launch_stats<E>(fn, out, x, n, c, hw, stream);
}

template <class E>
int bn_stats_sums(const char *fn, float *sums, const typename E::storage *x, const float *shift, int64_t n,
                  int64_t c, int64_t hw, int64_t ranks, int64_t rank, float tag, void *stream) {
  BK_REQUIRE(ranks >= 1 && rank >= 0 && rank < ranks, "%s: rank %lld is not in [0, ranks = %lld)", fn,
             (long long)rank, (long long)ranks);
  StatsOut out{sums, shift, c, 0.f, tag, ranks, rank, true};
  return launch_stats<E>(fn, out, x, n, c, hw, stream);
}

template <class E>
int bn_elemt(const char *fn, typename E::storage *y, const typename E::storage *x, const float *mean,
             const float *invstd, const float *weight, const float *bias, int64_t n, int64_t c, int64_t hw,
             void *stream) {
  int64_t per = 0, total = 0;
  BK_TRY(check_sizes(fn, n, c, hw, &per, &total));
  if (total == 0) return 0;
  BK_REQUIRE(y && x && mean && invstd, "%s: null pointer", fn);
  int dev;
  BK_TRY(current_device(&dev));
  cudaStream_t s = as_stream(stream);
  switch (elemt_variant<E>(c, hw, {y, x}, {mean, invstd, weight, bias})) {
    case 0: {
      const int64_t tv = total / 4;
      elemt_kernel<E, 4, false><<<wave_grid((const void *)elemt_kernel<E, 4, false>, tv, kThreads * 4, dev), kThreads, 0, s>>>(
          y, x, mean, invstd, weight, bias, c, hw / 4, tv);
      break;
    }
    case 1: {
      const int64_t tv = total / 4;
      elemt_kernel<E, 4, true><<<wave_grid((const void *)elemt_kernel<E, 4, true>, tv, kThreads * 4, dev), kThreads, 0, s>>>(
          y, x, mean, invstd, weight, bias, c, 1, tv);
      break;
    }
    default:
      elemt_kernel<E, 1, false><<<wave_grid((const void *)elemt_kernel<E, 1, false>, total, kThreads * 4, dev), kThreads, 0, s>>>(
          y, x, mean, invstd, weight, bias, c, hw, total);
  }
  return check_launch("bn_elemt");
}

template <class E>
int bn_backward_reduce(const char *fn, float *sums, float *grad_weight, float *grad_bias,
                       const typename E::storage *dy, const typename E::storage *x, const float *mean,
                       const float *invstd, int64_t n, int64_t c, int64_t hw, void *stream) {
  int64_t per = 0, total = 0;
  BK_TRY(check_sizes(fn, n, c, hw, &per, &total));
  if (c == 0) return 0;
  BK_REQUIRE(sums, "%s: sums is NULL", fn);
  BK_REQUIRE(total == 0 || (dy && x && mean), "%s: null pointer", fn);
  BK_REQUIRE(!grad_weight || invstd, "%s: invstd is NULL", fn);
  cudaStream_t s = as_stream(stream);
  int dev;
  BK_TRY(current_device(&dev));
  if (total == 0) {
    // no local data: zero sums and gradients (sums = [0]*2c)
    BK_TRY(bk_fill_f32(sums, 2 * c, 0.f, stream));
    if (grad_weight) BK_TRY(bk_fill_f32(grad_weight, c, 0.f, stream));
    if (grad_bias) BK_TRY(bk_fill_f32(grad_bias, c, 0.f, stream));
    return 0;
  }
  if (hw == 1 && c > 1) {
    const int vec = (c % 4 == 0 && aligned_vec<E>(x) && aligned_vec<E>(dy)) ? 4 : 1;
    const int64_t tiles = ceil_div(c, 32 * vec);
    BK_REQUIRE(tiles <= 0x7fffffff, "%s: too many channels", fn);
    const int splits = row_splits(vec == 4 ? (const void *)reduce_rows_kernel<E, 4> : (const void *)reduce_rows_kernel<E, 1>,
                                  dev, tiles, n);
    Workspace ws{};
    if (splits > 1) BK_TRY(workspace(s, tiles, tiles * splits * 32 * vec * 2, &ws));
    dim3 grid((unsigned)tiles, (unsigned)splits);
    if (vec == 4)
      reduce_rows_kernel<E, 4><<<grid, kThreads, 0, s>>>(sums, grad_weight, grad_bias, dy, x, mean, invstd,
                                                      n, c, splits, ws.partials, ws.counters);
    else
      reduce_rows_kernel<E, 1><<<grid, kThreads, 0, s>>>(sums, grad_weight, grad_bias, dy, x, mean, invstd,
                                                      n, c, splits, ws.partials, ws.counters);
    return check_launch("bn_backward_reduce");
  }
  const int vec = (hw % 4 == 0 && aligned_vec<E>(x) && aligned_vec<E>(dy)) ? 4 : 1;
  const int64_t hwv = hw / vec, per_v = n * hwv;
  const int bpc = blocks_per_channel(
      vec == 4 ? (const void *)reduce_planes_kernel<E, 4> : (const void *)reduce_planes_kernel<E, 1>, dev, c, per_v,
      vec == 4 ? 4 : 16);
  BK_REQUIRE(c * bpc <= 0x7fffffff, "%s: too many channels", fn);
  Workspace ws{};
  if (bpc > 1) BK_TRY(workspace(s, c, c * bpc * 2, &ws));
  const unsigned grid = (unsigned)(c * bpc);
  if (vec == 4)
    reduce_planes_kernel<E, 4><<<grid, kThreads, 0, s>>>(sums, grad_weight, grad_bias, dy, x, mean, invstd,
                                                      c, hwv, per_v, bpc, ws.partials, ws.counters);
  else
    reduce_planes_kernel<E, 1><<<grid, kThreads, 0, s>>>(sums, grad_weight, grad_bias, dy, x, mean, invstd,
                                                      c, hwv, per_v, bpc, ws.partials, ws.counters);
  return check_launch("bn_backward_reduce");
}

template <class E>
int bn_backward_elemt(const char *fn, typename E::storage *dx, const typename E::storage *dy,
                      const typename E::storage *x, const float *mean, const float *invstd, const float *weight,
                      const float *sums, const float *count, int64_t n, int64_t c, int64_t hw, void *stream) {
  int64_t per = 0, total = 0;
  BK_TRY(check_sizes(fn, n, c, hw, &per, &total));
  if (total == 0) return 0;
  BK_REQUIRE(dx && dy && x && mean && invstd && sums && count,
             "%s: null pointer", fn);
  int dev;
  BK_TRY(current_device(&dev));
  cudaStream_t s = as_stream(stream);
  switch (elemt_variant<E>(c, hw, {dx, dy, x}, {mean, invstd, weight, sums})) {
    case 0: {
      const int64_t tv = total / 4;
      backward_elemt_kernel<E, 4, false><<<wave_grid((const void *)backward_elemt_kernel<E, 4, false>, tv, kThreads * 2, dev), kThreads, 0, s>>>(
          dx, dy, x, mean, invstd, weight, sums, count, c, hw / 4, tv);
      break;
    }
    case 1: {
      const int64_t tv = total / 4;
      backward_elemt_kernel<E, 4, true><<<wave_grid((const void *)backward_elemt_kernel<E, 4, true>, tv, kThreads * 2, dev), kThreads, 0, s>>>(
          dx, dy, x, mean, invstd, weight, sums, count, c, 1, tv);
      break;
    }
    default:
      backward_elemt_kernel<E, 1, false><<<wave_grid((const void *)backward_elemt_kernel<E, 1, false>, total, kThreads * 2, dev), kThreads, 0, s>>>(
          dx, dy, x, mean, invstd, weight, sums, count, c, hw, total);
  }
  return check_launch("bn_backward_elemt");
}

}  // namespace
}  // namespace bk

extern "C" {

BK_API int bk_bn_merge_stats_f32(float *mean, float *invstd, float *count, const float *stats,
                                 int64_t ranks, int64_t c, int64_t stride, float eps, float *running_mean,
                                 float *running_var, float factor, void *stream) {
  BK_REQUIRE(ranks >= 0 && c >= 0, "bk_bn_merge_stats_f32: sizes must be >= 0 (ranks %lld, c %lld)",
             (long long)ranks, (long long)c);
  BK_REQUIRE(stride >= 2 * c + 1, "bk_bn_merge_stats_f32: stride %lld is below a record's 2c + 1 = %lld",
             (long long)stride, (long long)(2 * c + 1));
  BK_REQUIRE(count, "bk_bn_merge_stats_f32: count is NULL");
  BK_REQUIRE(c == 0 || (mean && invstd), "bk_bn_merge_stats_f32: mean or invstd is NULL");
  BK_REQUIRE(ranks == 0 || stats, "bk_bn_merge_stats_f32: stats is NULL");
  BK_REQUIRE(eps >= 0.f, "bk_bn_merge_stats_f32: eps must be >= 0 (got %g)", (double)eps);
  BK_REQUIRE((running_mean == nullptr) == (running_var == nullptr),
             "bk_bn_merge_stats_f32: running_mean and running_var must both be given or both be NULL");
  DeviceError *err;
  int dev;
  BK_TRY(error_flag_launch("bk_bn_merge_stats_f32", &err, &dev));
  merge_stats_kernel<<<grid_for(c > 0 ? c : 1, kThreads, dev), kThreads, 0, as_stream(stream)>>>(
      mean, invstd, count, stats, ranks, c, stride, eps, running_mean, running_var, factor, err);
  return check_launch("bn_merge_stats");
}

BK_API int bk_bn_merge_sums_f32(float *mean, float *invstd, float *count, float *shift, const float *sums,
                                int64_t c, float eps, float *running_mean, float *running_var, float factor,
                                void *stream) {
  BK_REQUIRE(c >= 0, "bk_bn_merge_sums_f32: c must be >= 0 (got %lld)", (long long)c);
  BK_REQUIRE(count && sums, "bk_bn_merge_sums_f32: count or sums is NULL");
  BK_REQUIRE(c == 0 || (mean && invstd && shift), "bk_bn_merge_sums_f32: mean, invstd or shift is NULL");
  BK_REQUIRE(eps >= 0.f, "bk_bn_merge_sums_f32: eps must be >= 0 (got %g)", (double)eps);
  BK_REQUIRE((running_mean == nullptr) == (running_var == nullptr),
             "bk_bn_merge_sums_f32: running_mean and running_var must both be given or both be NULL");
  DeviceError *err;
  int dev;
  BK_TRY(error_flag_launch("bk_bn_merge_sums_f32", &err, &dev));
  merge_sums_kernel<<<grid_for(c > 0 ? c : 1, kThreads, dev), kThreads, 0, as_stream(stream)>>>(
      mean, invstd, count, shift, sums, c, eps, running_mean, running_var, factor, err);
  return check_launch("bn_merge_sums");
}

BK_API int bk_bn_invstd_f32(float *invstd, const float *var, int64_t c, float eps, void *stream) {
  BK_REQUIRE(c >= 0, "bk_bn_invstd_f32: c must be >= 0");
  BK_REQUIRE(eps >= 0.f, "bk_bn_invstd_f32: eps must be >= 0 (got %g)", (double)eps);
  if (c == 0) return 0;
  BK_REQUIRE(invstd && var, "bk_bn_invstd_f32: null pointer");
  int dev;
  BK_TRY(current_device(&dev));
  invstd_kernel<<<grid_for(c, kThreads, dev), kThreads, 0, as_stream(stream)>>>(invstd, var, c, eps);
  return check_launch("bn_invstd");
}

}  // extern "C"

// The entry points of the element-typed kernels, for each element type.
#define BK_BN_ENTRIES(SFX, E, T)                                                                          \
  extern "C" BK_API int bk_bn_stats_##SFX(float *stats, const T *x, int64_t n, int64_t c, int64_t hw,      \
                                          float tag, void *stream) {                                      \
    return bn_stats<E>("bk_bn_stats_" #SFX, stats, x, n, c, hw, tag, stream);                              \
  }                                                                                                        \
  extern "C" BK_API int bk_bn_stats_sums_##SFX(float *sums, const T *x, const float *shift, int64_t n,     \
                                               int64_t c, int64_t hw, int64_t ranks, int64_t rank,        \
                                               float tag, void *stream) {                                 \
    return bn_stats_sums<E>("bk_bn_stats_sums_" #SFX, sums, x, shift, n, c, hw, ranks, rank, tag, stream); \
  }                                                                                                        \
  extern "C" BK_API int bk_bn_elemt_##SFX(T *y, const T *x, const float *mean, const float *invstd,        \
                                          const float *weight, const float *bias, int64_t n, int64_t c,   \
                                          int64_t hw, void *stream) {                                     \
    return bn_elemt<E>("bk_bn_elemt_" #SFX, y, x, mean, invstd, weight, bias, n, c, hw, stream);           \
  }                                                                                                        \
  extern "C" BK_API int bk_bn_backward_reduce_##SFX(float *sums, float *grad_weight, float *grad_bias,     \
                                                    const T *dy, const T *x, const float *mean,           \
                                                    const float *invstd, int64_t n, int64_t c,            \
                                                    int64_t hw, void *stream) {                           \
    return bn_backward_reduce<E>("bk_bn_backward_reduce_" #SFX, sums, grad_weight, grad_bias, dy, x, mean,  \
                                 invstd, n, c, hw, stream);                                                \
  }                                                                                                        \
  extern "C" BK_API int bk_bn_backward_elemt_##SFX(T *dx, const T *dy, const T *x, const float *mean,      \
                                                   const float *invstd, const float *weight,              \
                                                   const float *sums, const float *count, int64_t n,      \
                                                   int64_t c, int64_t hw, void *stream) {                 \
    return bn_backward_elemt<E>("bk_bn_backward_elemt_" #SFX, dx, dy, x, mean, invstd, weight, sums, count, \
                                n, c, hw, stream);                                                         \
  }

BK_BN_ENTRIES(f32, bk_half::F32, float)
BK_BN_ENTRIES(bf16, bk_half::BF16, bk_bfloat16)
BK_BN_ENTRIES(f16, bk_half::F16, bk_float16)
