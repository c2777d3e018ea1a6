// Batch-norm primitives, single pass over memory each.
//
// x is [n, c, hw]. Two layouts of work, picked by hw:
//  - planes (hw >= kSmallHw): each (n, c) plane is contiguous and long enough to
//    be processed on its own, in chunks of at most kChunk floats;
//  - rows (hw < kSmallHw, e.g. BatchNorm1d where hw == 1): planes are too short,
//    so a row [c * hw] is processed as columns with per-column state, and columns
//    are folded into channels at the end.
// Statistics use the corrected two-pass algorithm on L1-resident chunks (the
// second pass reads the cache, not memory), merged in double by Chan's formula.
//
// Element types: x, y, dy and dx are float32, bfloat16 or float16 (E: bagua_half.h's element
// kinds), read and written through VecIO<E> / E::load / E::store; everything else (per-channel
// arrays, records, accumulators) is float32 or double whatever E is: one source for all three.
//
// Threads: reductions split over channels (planes) or over 16-column strips (rows),
// so every channel is reduced exactly as on one thread, whatever the thread count;
// the elementwise passes split the elements anywhere.
#include <math.h>

#include <algorithm>
#include <type_traits>

#include "bagua_bn_math.h"
#include "common.h"
#include "half_simd.h"

namespace {

constexpr int64_t kChunk = 2048;   // 8 KB: the second pass over a chunk hits L1
constexpr int64_t kSmallHw = 64;   // shorter planes use the row layout
constexpr int64_t kRowBlock = 64;  // rows per block in the row layout (a 64-column strip: 16 KB)

// Row layout: per-column constants, each channel's value repeated over its hw columns.
void spread_channels(float *cols, const float *per_channel, int64_t c, int64_t hw) {
  for (int64_t ch = 0; ch < c; ++ch)
    std::fill(cols + ch * hw, cols + (ch + 1) * hw, per_channel[ch]);
}

int threads_for(int64_t total) { return bk::threads_for(total, bk::kParallelMin); }

// Runs f(lo, hi) over ranges of [0, n) on nt threads, cut at multiples of `align`.
template <class F>
void split(int nt, int64_t n, int64_t align, const F &f) {
  bk::parallel_ranges(nt, n, align, [&](int64_t lo, int64_t hi) {
    f(lo, hi);
    return 0;
  });
}

// An elementwise pass over the flat elements [0, n * c * hw) on nt threads: calls
// f(offset, len, ch, pos) for each run of one plane (planes) or one row (rows, where
// per-column constants start at pos).
template <class F>
void elementwise(int nt, int64_t n, int64_t c, int64_t hw, bool rows, const F &f) {
  const int64_t run = rows ? c * hw : hw;
  split(nt, n * c * hw, 16, [&](int64_t e0, int64_t e1) {
    // divisions once per range, not per run: planes can be short and many
    int64_t pos = e0 % run, ch = rows ? 0 : e0 / run % c;
    for (int64_t e = e0; e < e1; pos = 0) {
      const int64_t len = std::min(run - pos, e1 - e);
      f(e, len, ch, pos);
      e += len;
      if (!rows && ++ch == c) ch = 0;
    }
  });
}

// ---- statistics -------------------------------------------------------------

// A chunk of `planes` runs of `len` half values, `stride` apart, as contiguous floats.
template <class E>
BK_CLONES void widen_chunk(float *buf, const typename E::storage *x, int64_t stride, int64_t planes, int64_t len) {
  for (int64_t p = 0; p < planes; ++p) {
    const typename E::storage *xp = x + p * stride;
    float *bp = buf + p * len;
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
      __builtin_prefetch(xp + len + i);  // the next piece, as the float32 code's pass 2 does
      v16_store(bp + i, VecIO<E>::load(xp + i));
    }
    for (; i < len; ++i) bp[i] = E::load(xp[i]);
  }
}

// Mean and M2 of a chunk: `planes` runs of `len` floats, `stride` apart (several short
// planes of one channel, or one piece of a long plane), planes * len <= kChunk.
// Pass 1 estimates the mean m in float, pass 2 sums d = x - m and d^2 over the same,
// now L1-resident, data; mean = m + S1/count and M2 = S2 - S1^2/count correct for the
// error in m (the corrected two-pass algorithm). Float lanes hold few terms each.
template <class E>
BK_CLONES void chunk_stats_direct(const typename E::storage *x, int64_t stride, int64_t planes, int64_t len,
                                  double *mean_out, double *m2_out) {
  bk_v16 a0 = {}, a1 = {};
  double s = 0;
  for (int64_t p = 0; p < planes; ++p) {
    const typename E::storage *xp = x + p * stride;
    int64_t i = 0;
    for (; i + 32 <= len; i += 32) {
      bk_v16 v0, v1;
      VecIO<E>::load32(xp + i, v0, v1);
      a0 += v0;
      a1 += v1;
    }
    for (; i + 16 <= len; i += 16) a0 += VecIO<E>::load(xp + i);
    for (; i < len; ++i) s += E::load(xp[i]);
  }
  const double cnt = (double)(planes * len);
  s += v16_hsum(a0 + a1);
  const float m = (float)(s / cnt);
  const bk_v16 mv = v16_splat(m);
  bk_v16 s1a = {}, s1b = {}, s2a = {}, s2b = {};
  double s1 = 0, s2 = 0;
  for (int64_t p = 0; p < planes; ++p) {
    const typename E::storage *xp = x + p * stride;
    int64_t i = 0;
    for (; i + 32 <= len; i += 32) {
      // keep memory busy while this pass runs from L1: fetch what follows each run
      // (the next piece of a long plane, or the next channel's plane of this image)
      __builtin_prefetch(xp + len + i);
      __builtin_prefetch(xp + len + i + 16);
      bk_v16 v0, v1;
      VecIO<E>::load32(xp + i, v0, v1);
      const bk_v16 d0 = v0 - mv, d1 = v1 - mv;
      s1a += d0;
      s1b += d1;
      s2a += d0 * d0;
      s2b += d1 * d1;
    }
    for (; i + 16 <= len; i += 16) {
      const bk_v16 d0 = VecIO<E>::load(xp + i) - mv;
      s1a += d0;
      s2a += d0 * d0;
    }
    for (; i < len; ++i) {
      const float d = E::load(xp[i]) - m;
      s1 += d;
      s2 += (double)d * d;
    }
  }
  s1 += v16_hsum(s1a + s1b);
  s2 += v16_hsum(s2a + s2b);
  *mean_out = (double)m + s1 / cnt;
  *m2_out = s2 - s1 * s1 / cnt;
}

// float16: the chunk is widened once into an L1 float buffer (the two passes would otherwise
// widen every element twice, and converting float16 costs more than reading L1), then the
// float32 statistics run on the buffer: same arithmetic, same result. bfloat16 widens with
// one shift: reading it twice is cheaper than the buffer.
template <class E>
BK_INLINE void chunk_stats(const typename E::storage *x, int64_t stride, int64_t planes, int64_t len,
                           double *mean_out, double *m2_out) {
  if constexpr (!std::is_same<E, bk_half::F16>::value) {
    chunk_stats_direct<E>(x, stride, planes, len, mean_out, m2_out);
  } else {
    float buf[kChunk];
    widen_chunk<E>(buf, x, stride, planes, len);
    chunk_stats_direct<bk_half::F32>(buf, len, planes, len, mean_out, m2_out);
  }
}

// Row layout: block statistics of a strip of 16 * V columns over `rows` rows
// (stride ld), accumulators in registers. Pass 1 also copies the strip into a
// contiguous buffer for pass 2: rows of a 4 KB-multiple stride all map to the same
// L1 sets, so re-reading them in place would miss L1. Merged per column into the
// double state (mean, m2) that has already seen `seen` rows, by Chan's formula with a
// count shared by all columns.
template <class E, int V>
BK_INLINE void strip_stats(const typename E::storage *x, int64_t ld, int64_t rows, double seen, double *cmean,
                           double *cm2) {
  float buf[kRowBlock * 16 * V];
  bk_v16 acc[V];
  for (int q = 0; q < V; ++q) acc[q] = bk_v16{};
  for (int64_t r = 0; r < rows; ++r)
    for (int q = 0; q < V; ++q) {
      const bk_v16 v = VecIO<E>::load(x + r * ld + 16 * q);
      v16_store(buf + (r * V + q) * 16, v);
      acc[q] += v;
    }
  const bk_v16 inv = v16_splat(1.0f / (float)rows);
  bk_v16 m[V], s1[V], s2[V];
  for (int q = 0; q < V; ++q) {
    m[q] = acc[q] * inv;
    s1[q] = s2[q] = bk_v16{};
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int q = 0; q < V; ++q) {
      const bk_v16 d = v16_load(buf + (r * V + q) * 16) - m[q];
      s1[q] += d;
      s2[q] += d * d;
    }
  float fm[16 * V], f1[16 * V], f2[16 * V];
  for (int q = 0; q < V; ++q) {
    v16_store(fm + 16 * q, m[q]);
    v16_store(f1 + 16 * q, s1[q]);
    v16_store(f2 + 16 * q, s2[q]);
  }
  const double nb = (double)rows, inv_nb = 1.0 / nb, fb = nb / (seen + nb), cross = seen * fb;
  for (int j = 0; j < 16 * V; ++j) {
    // (bk_bn::chan_merge, unrolled here so the loop vectorises)
    const double bmean = (double)fm[j] + (double)f1[j] * inv_nb;
    const double bm2 = (double)f2[j] - (double)f1[j] * (double)f1[j] * inv_nb;
    const double delta = bmean - cmean[j];
    cmean[j] += delta * fb;
    cm2[j] += bm2 + delta * delta * cross;
  }
}

// One block of rows across all L columns: strips of 64, then 16, then single columns.
template <class E>
BK_CLONES void block_stats(const typename E::storage *x, int64_t ld, int64_t rows, int64_t L, double seen,
                           double *cmean, double *cm2) {
  int64_t j = 0;
  for (; j + 64 <= L; j += 64) strip_stats<E, 4>(x + j, ld, rows, seen, cmean + j, cm2 + j);
  for (; j + 16 <= L; j += 16) strip_stats<E, 1>(x + j, ld, rows, seen, cmean + j, cm2 + j);
  for (; j < L; ++j) {
    double cnt = 0, mean = 0, m2 = 0;
    for (int64_t r = 0; r < rows; ++r) bk_bn::welford_push(cnt, mean, m2, (double)E::load(x[r * ld + j]));
    double seen_j = seen;  // chan_merge advances its count; each column starts from `seen`
    bk_bn::chan_merge(seen_j, cmean[j], cm2[j], cnt, mean, m2);
  }
}

}  // namespace

namespace {

// Per-channel moments of x: emit(ch, count, mean, m2) in double, once per channel,
// after every thread has finished (so emit may write anywhere). per > 0.
template <class E, class Emit>
int local_moments(const typename E::storage *x, int64_t n, int64_t c, int64_t hw, int64_t total, const Emit &emit) {
  if (hw >= kSmallHw) {
    double *st;  // count, mean, m2 per channel
    BK_SCRATCH(st, bk::scratch_d(0, (size_t)(3 * c)));
    std::fill(st, st + 3 * c, 0.0);
    // a chunk is `group` planes of one channel in consecutive images (short planes),
    // or a kChunk piece of one plane (long planes)
    const int64_t group = hw >= kChunk ? 1 : kChunk / hw;
    split(threads_for(total), c, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t i0 = 0; i0 < n; i0 += group) {
        const int64_t planes = std::min(group, n - i0);
        for (int64_t ch = c0; ch < c1; ++ch) {
          const typename E::storage *base = x + (i0 * c + ch) * hw;
          double *s = st + 3 * ch;
          for (int64_t off = 0; off < hw; off += kChunk) {
            const int64_t len = std::min(kChunk, hw - off);
            double cm, cm2;
            chunk_stats<E>(base + off, c * hw, planes, len, &cm, &cm2);
            bk_bn::chan_merge(s[0], s[1], s[2], (double)(planes * len), cm, cm2);
          }
        }
      }
    });
    for (int64_t ch = 0; ch < c; ++ch) emit(ch, st[3 * ch], st[3 * ch + 1], st[3 * ch + 2]);
    return 0;
  }
  // row layout: per-column state over rows, then columns folded into channels
  const int64_t L = c * hw;
  double *cmean, *cm2;
  BK_SCRATCH(cmean, bk::scratch_d(0, (size_t)L));
  BK_SCRATCH(cm2, bk::scratch_d(1, (size_t)L));
  std::fill(cmean, cmean + L, 0.0);
  std::fill(cm2, cm2 + L, 0.0);
  split(threads_for(total), L, 16, [&](int64_t j0, int64_t j1) {
    for (int64_t r0 = 0; r0 < n; r0 += kRowBlock)
      block_stats<E>(x + r0 * L + j0, L, std::min(kRowBlock, n - r0), j1 - j0, (double)r0, cmean + j0,
                  cm2 + j0);
  });
  for (int64_t ch = 0; ch < c; ++ch) {
    double cnt = 0, mean = 0, m2 = 0;
    for (int64_t s = 0; s < hw; ++s)
      bk_bn::chan_merge(cnt, mean, m2, (double)n, cmean[ch * hw + s], cm2[ch * hw + s]);
    emit(ch, cnt, mean, m2);
  }
  return 0;
}

}  // namespace

namespace {

// The bodies of the entry points, for every element type; the entry points (BK_BN_ENTRIES,
// below) check the arguments, naming themselves, and call these.
template <class E>
int bn_stats(float *stats, const typename E::storage *x, int64_t n, int64_t c, int64_t hw, int64_t per,
             int64_t total, float tag) {
  float *smean = stats, *svar = stats + c;
  stats[2 * c] = (float)per;
  stats[2 * c + 1] = tag;
  if (per == 0) {
    // empty local batch: an all-zero record, skipped by the merge
    std::fill(stats, stats + 2 * c, 0.0f);
    return 0;
  }
  return local_moments<E>(x, n, c, hw, total, [&](int64_t ch, double cnt, double mean, double m2) {
    smean[ch] = (float)mean;
    svar[ch] = (float)bk_bn::biased_var(cnt, m2);
  });
}

// The shifted sums come from the double moments: S1 = n (mean - s) keeps the digits
// that rounding the mean to float first would lose when |mean| >> std.
template <class E>
int bn_stats_sums(float *sums, const typename E::storage *x, const float *shift, int64_t n, int64_t c,
                  int64_t hw, int64_t per, int64_t total, int64_t ranks, int64_t rank, float tag) {
  sums[2 * c] = (float)per;
  for (int64_t r = 0; r < ranks; ++r) sums[2 * c + 1 + r] = r == rank ? tag : 0.0f;
  if (per == 0) {
    std::fill(sums, sums + 2 * c, 0.0f);  // adds nothing to the group's sums
    return 0;
  }
  return local_moments<E>(x, n, c, hw, total, [&](int64_t ch, double cnt, double mean, double m2) {
    double s1, s2;
    bk_bn::shifted_sums(cnt, mean, m2, shift ? (double)shift[ch] : 0.0, s1, s2);
    sums[ch] = (float)s1;
    sums[c + ch] = (float)s2;
  });
}

}  // namespace

namespace {

// Chan merge of all ranks' records, rank by rank: a rank's count is shared by all its
// channels, so the inner loop runs over channels and vectorises. Same arithmetic as
// bk_bn::chan_merge; ranks with count 0 are skipped.
BK_CLONES void merge_records(double *m, double *m2, const float *stats, int64_t ranks, int64_t c,
                             int64_t rec) {
  for (int64_t ch = 0; ch < c; ++ch) m[ch] = m2[ch] = 0.0;
  double cnt = 0;
  for (int64_t r = 0; r < ranks; ++r) {
    const float *s = stats + r * rec;
    const double nb = s[2 * c];
    if (!(nb > 0)) continue;
    const double fb = nb / (cnt + nb), cross = cnt * fb;
    for (int64_t ch = 0; ch < c; ++ch) {
      const double delta = (double)s[ch] - m[ch];
      m[ch] += delta * fb;
      m2[ch] += (double)s[c + ch] * nb + delta * delta * cross;
    }
    cnt += nb;
  }
}

BK_CLONES void finish_merge(float *mean, float *invstd, float *running_mean, float *running_var,
                            const double *m, const double *m2, double cnt, double eps,
                            double factor, int64_t c) {
  const double inv_cnt = cnt > 0 ? 1.0 / cnt : 0.0;
  for (int64_t ch = 0; ch < c; ++ch) {
    mean[ch] = (float)m[ch];
    invstd[ch] = (float)bk_bn::invstd(m2[ch] * inv_cnt, eps);
  }
  if (!running_mean || !(cnt > 1)) return;
  for (int64_t ch = 0; ch < c; ++ch) {
    running_mean[ch] = (float)bk_bn::running_update((double)running_mean[ch], m[ch], factor);
    running_var[ch] = (float)bk_bn::running_update(
        (double)running_var[ch], bk_bn::unbiased_var(m2[ch] * inv_cnt, cnt), factor);
  }
}

}  // namespace

// Global count 0 (every rank empty): mean 0, var 0, so invstd = 1/sqrt(eps), and the
// running statistics are left alone. Running statistics are also left alone for a
// global count of 1, whose unbiased variance is undefined (the TS layer rejects
// training with count <= 1 before it gets here, as PyTorch does).
extern "C" int bk_bn_merge_stats_f32(float *mean, float *invstd, float *count, const float *stats,
                                     int64_t ranks, int64_t c, int64_t stride, float eps,
                                     float *running_mean, float *running_var, float factor, void *) {
  BK_NONNEG(ranks);
  BK_NONNEG(c);
  BK_REQUIRE(stride >= 2 * c + 1, "%s: stride %lld is below a record's 2c + 1 = %lld", __func__,
             (long long)stride, (long long)(2 * c + 1));
  BK_NOTNULL(count);
  BK_NOTNULL_IF(c > 0, mean, invstd);
  BK_NOTNULL_IF(ranks > 0, stats);
  BK_REQUIRE(eps >= 0.0f, "%s: eps must be >= 0 (got %g)", __func__, (double)eps);
  BK_REQUIRE((running_mean == nullptr) == (running_var == nullptr),
             "%s: running_mean and running_var must both be given or both be NULL", __func__);
  const int64_t rec = stride;
  double total = 0;
  for (int64_t r = 0; r < ranks; ++r) {
    const float cnt = stats[r * rec + 2 * c];
    BK_REQUIRE(cnt >= 0.0f, "%s: rank %lld has a negative or NaN count (%g)", __func__,
               (long long)r, (double)cnt);
    total += cnt;
  }
  *count = (float)total;
  double *acc;
  BK_SCRATCH(acc, bk::scratch_d(0, (size_t)(2 * c)));
  merge_records(acc, acc + c, stats, ranks, c, rec);
  finish_merge(mean, invstd, running_mean, running_var, acc, acc + c, total, (double)eps,
               (double)factor, c);
  return 0;
}

extern "C" int bk_bn_merge_sums_f32(float *mean, float *invstd, float *count, float *shift,
                                    const float *sums, int64_t c, float eps, float *running_mean,
                                    float *running_var, float factor, void *) {
  BK_NONNEG(c);
  BK_NOTNULL(count);
  BK_NOTNULL(sums);
  BK_NOTNULL_IF(c > 0, mean, invstd, shift);
  BK_REQUIRE(eps >= 0.0f, "%s: eps must be >= 0 (got %g)", __func__, (double)eps);
  BK_REQUIRE((running_mean == nullptr) == (running_var == nullptr),
             "%s: running_mean and running_var must both be given or both be NULL", __func__);
  const float total = sums[2 * c];
  BK_REQUIRE(total >= 0.0f, "%s: the summed count is negative or NaN (%g)", __func__, (double)total);
  *count = total;
  double *acc;  // mean, biased var per channel
  BK_SCRATCH(acc, bk::scratch_d(0, (size_t)(2 * c)));
  for (int64_t ch = 0; ch < c; ++ch)
    bk_bn::sums_moments((double)total, (double)sums[ch], (double)sums[c + ch], (double)shift[ch], acc[ch],
                        acc[c + ch]);
  // finish_merge takes M2; the variance times the count is exactly that
  for (int64_t ch = 0; ch < c; ++ch) acc[c + ch] *= (double)total;
  finish_merge(mean, invstd, running_mean, running_var, acc, acc + c, (double)total, (double)eps,
               (double)factor, c);
  if (total > 0.0f) std::copy(mean, mean + c, shift);
  return 0;
}

extern "C" int bk_bn_invstd_f32(float *invstd, const float *var, int64_t c, float eps, void *) {
  BK_NONNEG(c);
  BK_NOTNULL_IF(c > 0, invstd, var);
  BK_REQUIRE(eps >= 0.0f, "%s: eps must be >= 0 (got %g)", __func__, (double)eps);
  for (int64_t ch = 0; ch < c; ++ch)
    invstd[ch] = (float)bk_bn::invstd((double)var[ch], (double)eps);
  return 0;
}

// ---- forward elementwise -----------------------------------------------------

namespace {

// y = (x - mean) * scale + bias over one plane. Explicit 16-lane vectors: each
// block is loaded before it is stored, so y may alias x exactly.
template <class E>
BK_CLONES void elemt_plane(typename E::storage *y, const typename E::storage *x, int64_t len, float mean,
                           float scale, float bias) {
  const bk_v16 mv = v16_splat(mean), sv = v16_splat(scale), bv = v16_splat(bias);
  int64_t i = 0;
  for (; i + 32 <= len; i += 32) {
    bk_v16 v0, v1;
    VecIO<E>::load32(x + i, v0, v1);
    VecIO<E>::store32(y + i, (v0 - mv) * sv + bv, (v1 - mv) * sv + bv);
  }
  for (; i + 16 <= len; i += 16) VecIO<E>::store(y + i, (VecIO<E>::load(x + i) - mv) * sv + bv);
  for (; i < len; ++i) y[i] = bk_bn::elemt_e<E>(x[i], mean, scale, bias);
}

// Row layout: per-column mean / scale / bias arrays of length L. Software prefetch
// (2 KB ahead, y for writing) helps when x and y sit in L2, where the hardware
// prefetchers bring lines to L1 too late for a loop this short (measured ~15%).
template <class E>
BK_CLONES void elemt_row(typename E::storage *y, const typename E::storage *x, int64_t len, const float *mean,
                         const float *scale, const float *bias) {
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    __builtin_prefetch(y + i + 512, 1);
    __builtin_prefetch(x + i + 512, 0);
    VecIO<E>::store(y + i, (VecIO<E>::load(x + i) - v16_load(mean + i)) * v16_load(scale + i) +
                               v16_load(bias + i));
  }
  for (; i < len; ++i) y[i] = bk_bn::elemt_e<E>(x[i], mean[i], scale[i], bias[i]);
}

template <class E>
int bn_elemt(typename E::storage *y, const typename E::storage *x, const float *mean, const float *invstd,
             const float *weight, const float *bias, int64_t n, int64_t c, int64_t hw, int64_t total) {
  if (total == 0) return 0;
  // per-channel constants computed once
  float *k;
  BK_SCRATCH(k, bk::scratch(0, (size_t)(2 * c)));
  float *scale = k, *shift = k + c;
  for (int64_t ch = 0; ch < c; ++ch) {
    scale[ch] = bk_bn::elemt_scale(invstd[ch], weight, ch);
    shift[ch] = bias ? bias[ch] : 0.0f;
  }
  const int nt = threads_for(total);
  if (hw >= kSmallHw) {
    elementwise(nt, n, c, hw, false, [&](int64_t off, int64_t len, int64_t ch, int64_t) {
      elemt_plane<E>(y + off, x + off, len, mean[ch], scale[ch], shift[ch]);
    });
    return 0;
  }
  const int64_t L = c * hw;
  float *cols;
  BK_SCRATCH(cols, bk::scratch(1, (size_t)(3 * L)));
  float *cm = cols, *cs = cols + L, *cb = cols + 2 * L;
  spread_channels(cm, mean, c, hw);
  spread_channels(cs, scale, c, hw);
  spread_channels(cb, shift, c, hw);
  elementwise(nt, n, c, hw, true, [&](int64_t off, int64_t len, int64_t, int64_t pos) {
    elemt_row<E>(y + off, x + off, len, cm + pos, cs + pos, cb + pos);
  });
  return 0;
}

}  // namespace

// ---- backward ------------------------------------------------------------------

namespace {

// sum dy and sum dy * (x - mean) over one plane; float lanes per chunk, double totals.
template <class E>
BK_CLONES void reduce_plane(const typename E::storage *dy, const typename E::storage *x, int64_t len, float mean,
                            double *sdy_out, double *sdx_out) {
  const bk_v16 mv = v16_splat(mean);
  double sdy = 0, sdx = 0;
  int64_t i = 0;
  while (i < len) {
    const int64_t end = std::min(len, i + kChunk);
    bk_v16 a0 = {}, a1 = {}, b0 = {}, b1 = {};
    for (; i + 32 <= end; i += 32) {
      bk_v16 g0, g1, x0, x1;
      VecIO<E>::load32(dy + i, g0, g1);
      VecIO<E>::load32(x + i, x0, x1);
      a0 += g0;
      a1 += g1;
      b0 += g0 * (x0 - mv);
      b1 += g1 * (x1 - mv);
    }
    sdy += v16_hsum(a0 + a1);
    sdx += v16_hsum(b0) + v16_hsum(b1);
    for (; i < end; ++i) {
      const float g = E::load(dy[i]);
      sdy += g;
      sdx += (double)g * (E::load(x[i]) - mean);
    }
  }
  *sdy_out += sdy;
  *sdx_out += sdx;
}

// Row layout: per-column sums over a block of rows, a strip of 16 * V columns at a
// time with float accumulators in registers, added to the double totals.
template <class E, int V>
BK_INLINE void strip_reduce(const typename E::storage *dy, const typename E::storage *x, int64_t ld, int64_t rows,
                            const float *cmean, double *sdy, double *sdx) {
  bk_v16 a[V], b[V], m[V];
  for (int q = 0; q < V; ++q) {
    a[q] = b[q] = bk_v16{};
    m[q] = v16_load(cmean + 16 * q);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int q = 0; q < V; ++q) {
      const bk_v16 g = VecIO<E>::load(dy + r * ld + 16 * q);
      a[q] += g;
      b[q] += g * (VecIO<E>::load(x + r * ld + 16 * q) - m[q]);
    }
  float fa[16 * V], fb[16 * V];
  for (int q = 0; q < V; ++q) {
    v16_store(fa + 16 * q, a[q]);
    v16_store(fb + 16 * q, b[q]);
  }
  for (int j = 0; j < 16 * V; ++j) {
    sdy[j] += fa[j];
    sdx[j] += fb[j];
  }
}

template <class E>
BK_CLONES void reduce_block(const typename E::storage *dy, const typename E::storage *x, int64_t ld, int64_t rows, int64_t L,
                            const float *cmean, double *sdy, double *sdx) {
  int64_t j = 0;
  for (; j + 64 <= L; j += 64) strip_reduce<E, 4>(dy + j, x + j, ld, rows, cmean + j, sdy + j, sdx + j);
  for (; j + 16 <= L; j += 16) strip_reduce<E, 1>(dy + j, x + j, ld, rows, cmean + j, sdy + j, sdx + j);
  for (; j < L; ++j)
    for (int64_t r = 0; r < rows; ++r) {
      const float g = E::load(dy[r * ld + j]);
      sdy[j] += g;
      sdx[j] += (double)g * (E::load(x[r * ld + j]) - cmean[j]);
    }
}

template <class E>
int bn_backward_reduce(float *sums, float *grad_weight, float *grad_bias, const typename E::storage *dy,
                       const typename E::storage *x, const float *mean, const float *invstd, int64_t n,
                       int64_t c, int64_t hw, int64_t total) {
  double *acc;  // sum_dy[c], sum_dy_xmu[c]
  BK_SCRATCH(acc, bk::scratch_d(0, (size_t)(2 * c)));
  std::fill(acc, acc + 2 * c, 0.0);
  if (total > 0 && hw >= kSmallHw) {
    split(threads_for(total), c, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t ch = c0; ch < c1; ++ch) {
          const int64_t off = (i * c + ch) * hw;
          reduce_plane<E>(dy + off, x + off, hw, mean[ch], acc + ch, acc + c + ch);
        }
    });
  } else if (total > 0) {
    const int64_t L = c * hw;
    float *cmean;
    double *col;
    BK_SCRATCH(cmean, bk::scratch(0, (size_t)L));
    BK_SCRATCH(col, bk::scratch_d(1, (size_t)(2 * L)));
    std::fill(col, col + 2 * L, 0.0);
    spread_channels(cmean, mean, c, hw);
    split(threads_for(total), L, 16, [&](int64_t j0, int64_t j1) {
      for (int64_t r0 = 0; r0 < n; r0 += kRowBlock)
        reduce_block<E>(dy + r0 * L + j0, x + r0 * L + j0, L, std::min(kRowBlock, n - r0), j1 - j0,
                     cmean + j0, col + j0, col + L + j0);
    });
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t s = 0; s < hw; ++s) {
        acc[ch] += col[ch * hw + s];
        acc[c + ch] += col[L + ch * hw + s];
      }
  }
  for (int64_t ch = 0; ch < c; ++ch) {
    sums[ch] = (float)acc[ch];
    sums[c + ch] = (float)acc[c + ch];
    if (grad_weight) grad_weight[ch] = (float)(acc[c + ch] * (double)invstd[ch]);
    if (grad_bias) grad_bias[ch] = (float)acc[ch];
  }
  return 0;
}

// dx = (dy - mdy - (x - mean) * k) * a over one plane (dx may alias dy or x exactly).
template <class E>
BK_CLONES void bwd_elemt_plane(typename E::storage *dx, const typename E::storage *dy, const typename E::storage *x,
                               int64_t len, float mean, float mdy, float k, float a) {
  const bk_v16 mv = v16_splat(mean), dv = v16_splat(mdy), kv = v16_splat(k), av = v16_splat(a);
  int64_t i = 0;
  for (; i + 32 <= len; i += 32) {
    bk_v16 g0, g1, x0, x1;
    VecIO<E>::load32(dy + i, g0, g1);
    VecIO<E>::load32(x + i, x0, x1);
    VecIO<E>::store32(dx + i, (g0 - dv - (x0 - mv) * kv) * av, (g1 - dv - (x1 - mv) * kv) * av);
  }
  for (; i + 16 <= len; i += 16)
    VecIO<E>::store(dx + i, (VecIO<E>::load(dy + i) - dv - (VecIO<E>::load(x + i) - mv) * kv) * av);
  bk_bn::BackwardCoeffs co;
  co.a = a;
  co.mdy = mdy;
  co.k = k;
  for (; i < len; ++i) dx[i] = bk_bn::backward_elemt_e<E>(dy[i], x[i], mean, co);
}

// Row layout: per-column constants, packed as [mean, mdy, k, a] arrays of length L.
template <class E>
BK_CLONES void bwd_elemt_row(typename E::storage *dx, const typename E::storage *dy, const typename E::storage *x,
                             int64_t len, const float *cm, const float *cd, const float *ck, const float *ca) {
  int64_t i = 0;
  for (; i + 16 <= len; i += 16)
    VecIO<E>::store(dx + i, (VecIO<E>::load(dy + i) - v16_load(cd + i) -
                             (VecIO<E>::load(x + i) - v16_load(cm + i)) * v16_load(ck + i)) *
                                v16_load(ca + i));
  for (; i < len; ++i)
    dx[i] = E::store((E::load(dy[i]) - cd[i] - (E::load(x[i]) - cm[i]) * ck[i]) * ca[i]);
}

template <class E>
int bn_backward_elemt(typename E::storage *dx, const typename E::storage *dy, const typename E::storage *x,
                      const float *mean, const float *invstd, const float *weight, const float *sums,
                      const float *count, int64_t n, int64_t c, int64_t hw, int64_t total) {
  if (total == 0) return 0;
  const float N = *count;
  float *k;
  BK_SCRATCH(k, bk::scratch(0, (size_t)(4 * c)));
  float *km = k, *kd = k + c, *kk = k + 2 * c, *ka = k + 3 * c;
  for (int64_t ch = 0; ch < c; ++ch) {
    const bk_bn::BackwardCoeffs co = bk_bn::backward_coeffs(
        invstd[ch], weight ? weight[ch] : 1.0f, sums[ch], sums[c + ch], N);
    km[ch] = mean[ch];
    kd[ch] = co.mdy;
    kk[ch] = co.k;
    ka[ch] = co.a;
  }
  const int nt = threads_for(total);
  if (hw >= kSmallHw) {
    elementwise(nt, n, c, hw, false, [&](int64_t off, int64_t len, int64_t ch, int64_t) {
      bwd_elemt_plane<E>(dx + off, dy + off, x + off, len, km[ch], kd[ch], kk[ch], ka[ch]);
    });
    return 0;
  }
  const int64_t L = c * hw;
  float *cols;
  BK_SCRATCH(cols, bk::scratch(1, (size_t)(4 * L)));
  for (int64_t q = 0; q < 4; ++q) spread_channels(cols + q * L, k + q * c, c, hw);
  elementwise(nt, n, c, hw, true, [&](int64_t off, int64_t len, int64_t, int64_t pos) {
    bwd_elemt_row<E>(dx + off, dy + off, x + off, len, cols + pos, cols + L + pos,
                     cols + 2 * L + pos, cols + 3 * L + pos);
  });
  return 0;
}

}  // namespace

// The entry points of one element type: argument checks (messages name the entry point),
// then the shared bodies above.
#define BK_BN_ENTRIES(SFX, E, T)                                                                   \
  extern "C" int bk_bn_stats_##SFX(float *stats, const T *x, int64_t n, int64_t c, int64_t hw,      \
                                   float tag, void *) {                                             \
    BK_SIZES3(n, c, hw, per, total);                                                                \
    BK_NOTNULL(stats);                                                                              \
    BK_NOTNULL_IF(total > 0, x);                                                                    \
    return bn_stats<E>(stats, x, n, c, hw, per, total, tag);                                        \
  }                                                                                                 \
  extern "C" int bk_bn_stats_sums_##SFX(float *sums, const T *x, const float *shift, int64_t n,     \
                                        int64_t c, int64_t hw, int64_t ranks, int64_t rank,         \
                                        float tag, void *) {                                        \
    BK_SIZES3(n, c, hw, per, total);                                                                \
    BK_NOTNULL(sums);                                                                               \
    BK_NOTNULL_IF(total > 0, x);                                                                    \
    BK_REQUIRE(ranks >= 1 && rank >= 0 && rank < ranks, "%s: rank %lld is not in [0, ranks = %lld)", \
               __func__, (long long)rank, (long long)ranks);                                        \
    return bn_stats_sums<E>(sums, x, shift, n, c, hw, per, total, ranks, rank, tag);                \
  }                                                                                                 \
  extern "C" int bk_bn_elemt_##SFX(T *y, const T *x, const float *mean, const float *invstd,        \
                                   const float *weight, const float *bias, int64_t n, int64_t c,    \
                                   int64_t hw, void *) {                                            \
    BK_SIZES3(n, c, hw, per, total);                                                                \
    BK_NOTNULL_IF(total > 0, y, x, mean, invstd);                                                   \
    return bn_elemt<E>(y, x, mean, invstd, weight, bias, n, c, hw, total);                          \
  }                                                                                                 \
  extern "C" int bk_bn_backward_reduce_##SFX(float *sums, float *grad_weight, float *grad_bias,     \
                                             const T *dy, const T *x, const float *mean,            \
                                             const float *invstd, int64_t n, int64_t c, int64_t hw, \
                                             void *) {                                              \
    BK_SIZES3(n, c, hw, per, total);                                                                \
    BK_NOTNULL_IF(c > 0, sums);                                                                     \
    BK_NOTNULL_IF(total > 0, dy, x, mean);                                                          \
    BK_NOTNULL_IF(c > 0 && grad_weight != nullptr, invstd);                                         \
    return bn_backward_reduce<E>(sums, grad_weight, grad_bias, dy, x, mean, invstd, n, c, hw, total); \
  }                                                                                                 \
  extern "C" int bk_bn_backward_elemt_##SFX(T *dx, const T *dy, const T *x, const float *mean,      \
                                            const float *invstd, const float *weight,               \
                                            const float *sums, const float *count, int64_t n,       \
                                            int64_t c, int64_t hw, void *) {                        \
    BK_SIZES3(n, c, hw, per, total);                                                                \
    BK_NOTNULL_IF(total > 0, dx, dy, x, mean, invstd, sums, count);                                 \
    return bn_backward_elemt<E>(dx, dy, x, mean, invstd, weight, sums, count, n, c, hw, total);      \
  }

BK_BN_ENTRIES(f32, bk_half::F32, float)
BK_BN_ENTRIES(bf16, bk_half::BF16, bk_bfloat16)
BK_BN_ENTRIES(f16, bk_half::F16, bk_float16)
