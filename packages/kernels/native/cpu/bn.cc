// Batch-norm primitives, single pass over memory each.
//
// x is [n, c, hw]. Two layouts of work, picked by hw:
//  - planes (hw >= kSmallHw): each (n, c) plane is contiguous and long enough to
//    be processed on its own, in chunks of at most kChunk floats;
//  - rows (hw < kSmallHw, e.g. BatchNorm1d where hw == 1, and channels-last tensors, which
//    core hands over as [N*H*W, C, 1]): planes are too short, so a row [c * hw] is processed
//    as columns with per-column state, and columns are folded into channels at the end.
//    Short rows (few channels) are first folded R at a time into rows of R * c * hw columns
//    (fold_elementwise, fold_reduce), so loops, strips and flushes run over enough columns.
// Statistics use the corrected two-pass algorithm on L1-resident chunks (the
// second pass reads the cache, not memory), merged in double by Chan's formula; a chunk
// after a channel's first takes the mean so far as its estimate and skips pass 1.
//
// Element types: x, y, dy and dx are float32, bfloat16 or float16 (E: bagua_half.h's element
// kinds), read and written through VecIO<E> / E::load / E::store; everything else (per-channel
// arrays, records, accumulators) is float32 or double whatever E is: one source for all three.
//
// Threads: reductions split over channels (planes) or over 64-column ranges of folded rows
// (rows), so every channel is reduced exactly as on one thread, whatever the thread count;
// the elementwise passes split the elements anywhere (in the row layout, short pieces go
// through the same vector code as the rest, so an element's result does not depend on the
// split either; plane tails are scalar).
#include <math.h>

#include <algorithm>
#include <type_traits>

#include "bagua_bn_math.h"
#include "common.h"
#include "half_simd.h"

namespace {

constexpr int64_t kChunk = 2048;   // 8 KB: the second pass over a chunk hits L1
constexpr int64_t kSmallHw = 64;   // shorter planes use the row layout
constexpr int64_t kRowBlock = 64;  // rows per block in the row layout (a 64-column strip: 16 KB;
                                   // fewer rows, e.g. 4096 / columns, measured slower: more merges)

// ---- row layout folding ----------------------------------------------------------
// A row-layout x [n, L] (L = c * hw) is viewed as rows of P = R * L columns, R original rows
// side by side: column j of a folded row is column j % L of a row, channel (j % L) / hw.

int64_t gcd64(int64_t a, int64_t b) {
  while (b) {
    const int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// Elementwise passes run over the flat elements a folded row at a time (n % R needs no
// special case: the last run is shorter). R: folded rows of at least 256 columns, a whole
// number of 32-element blocks where that costs at most 2048 columns of constants.
int64_t fold_elementwise(int64_t L) {
  if (L >= 256) return 1;
  const int64_t whole = 32 / gcd64(L, 32), r = (256 + L - 1) / L, ra = (r + whole - 1) / whole * whole;
  return ra * L <= 2048 ? ra : r;
}

// Reductions run over n / R folded rows (plus n % R rows of L columns): R makes P a multiple
// of 64 (whole 64-column register strips, a block of rows one contiguous stretch when P is
// 64) where that is at most 1024 columns, else just >= 64 columns.
int64_t fold_reduce(int64_t L) {
  if (L >= 64) return 1;
  const int64_t r = 64 / gcd64(L, 64);
  return r * L <= 1024 ? r : (64 + L - 1) / L;
}

// Per-column constants of a folded row: dst[j] = per_channel[(j % L) / hw] for j < P, and
// then, for element kinds whose load32 splits even / odd elements, each whole 32-block below
// `lanes` rearranged into that lane order (what the 32-element loops read).
template <class E>
void tile_cols(float *dst, const float *per_channel, int64_t c, int64_t hw, int64_t P, int64_t lanes) {
  for (int64_t j = 0, ch = 0, s = 0; j < P; ++j) {
    dst[j] = per_channel[ch];
    if (++s == hw) {
      s = 0;
      if (++ch == c) ch = 0;
    }
  }
  if (!VecIO<E>::kEvenOdd) return;
  for (int64_t b = 0; b + 32 <= lanes; b += 32) {
    float t[32];
    for (int64_t k = 0; k < 32; ++k) t[lane_of<E>(k)] = dst[b + k];
    std::copy(t, t + 32, dst + b);
  }
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

// An elementwise pass over the flat elements [0, n * c * hw) of the plane layout on nt
// threads: calls f(offset, len, ch) for each run of one plane.
template <class F>
void elementwise(int nt, int64_t n, int64_t c, int64_t hw, const F &f) {
  split(nt, n * c * hw, 16, [&](int64_t e0, int64_t e1) {
    // divisions once per range, not per run: planes can be short and many
    int64_t pos = e0 % hw, ch = e0 / hw % c;
    for (int64_t e = e0; e < e1; pos = 0) {
      const int64_t len = std::min(hw - pos, e1 - e);
      f(e, len, ch);
      e += len;
      if (++ch == c) ch = 0;
    }
  });
}

// An elementwise pass over the flat elements [0, total) of a folded row layout (period P)
// on nt threads: f(offset, len, j) for each piece of one folded row starting at column j.
// Ranges are cut at multiples of 32, so with P a multiple of 32 every piece starts on a block.
template <class F>
void elementwise_rows(int nt, int64_t total, int64_t P, const F &f) {
  split(nt, total, 32, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0, j = e0 % P; e < e1; j = 0) {
      const int64_t len = std::min(P - j, e1 - e);
      f(e, len, j);
      e += len;
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
// est: the mean of the channel's earlier chunks, or NaN for its first: an estimate as good as
// pass 1's (the corrections above take its error out), so with one pass 1 is skipped.
template <class E>
BK_CLONES void chunk_stats_direct(const typename E::storage *x, int64_t stride, int64_t planes, int64_t len,
                                  float est, double *mean_out, double *m2_out) {
  const double cnt = (double)(planes * len);
  bk_v16 a0 = {}, a1 = {};
  double s = 0;
  for (int64_t p = 0; p < planes && est != est; ++p) {
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
  s += v16_hsum(a0 + a1);
  const float m = est == est ? est : (float)(s / cnt);
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
BK_INLINE void chunk_stats(const typename E::storage *x, int64_t stride, int64_t planes, int64_t len, float est,
                           double *mean_out, double *m2_out) {
  if constexpr (!VecIO<E>::kWidenOnce) {
    chunk_stats_direct<E>(x, stride, planes, len, est, mean_out, m2_out);
  } else {
    float buf[kChunk];
    widen_chunk<E>(buf, x, stride, planes, len);
    chunk_stats_direct<bk_half::F32>(buf, len, planes, len, est, mean_out, m2_out);
  }
}

// A strip's block moments (estimate fm, sums f1 of x - fm and f2 of its squares over `rows`
// rows) merged per column into the double state that has seen `seen` rows (Chan).
template <int V>
BK_INLINE void strip_merge(const float *fm, const float *f1, const float *f2, int64_t rows, double seen,
                           double *cmean, double *cm2) {
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

// Row layout: block statistics of a strip of 16 * V columns over `rows` rows
// (stride ld), accumulators in registers. Pass 1 also copies the strip into a
// contiguous buffer for pass 2: rows of a 4 KB-multiple stride all map to the same
// L1 sets, so re-reading them in place would miss L1. Merged per column into the
// double state (mean, m2) that has already seen `seen` rows, by Chan's formula with a
// count shared by all columns. (16-element loads, also for bfloat16: its 32-element even /
// odd load measured slower here, 0.59 against 0.44 ms on [100352, 64].) After the first
// block, the columns' means so far are the estimates (as chunk_stats_direct's est): one
// pass, no buffer.
template <class E, int V>
BK_INLINE void strip_stats(const typename E::storage *x, int64_t ld, int64_t rows, double seen, double *cmean,
                           double *cm2) {
  if (seen > 0) {
    float fm[16 * V], f1[16 * V], f2[16 * V];
    for (int j = 0; j < 16 * V; ++j) fm[j] = (float)cmean[j];
    bk_v16 m[V], s1[V], s2[V];
    for (int q = 0; q < V; ++q) {
      m[q] = v16_load(fm + 16 * q);
      s1[q] = s2[q] = bk_v16{};
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int q = 0; q < V; ++q) {
        __builtin_prefetch(x + (r + rows) * ld + 16 * q);
        const bk_v16 d = VecIO<E>::load(x + r * ld + 16 * q) - m[q];
        s1[q] += d;
        s2[q] += d * d;
      }
    for (int q = 0; q < V; ++q) {
      v16_store(f1 + 16 * q, s1[q]);
      v16_store(f2 + 16 * q, s2[q]);
    }
    strip_merge<V>(fm, f1, f2, rows, seen, cmean, cm2);
    return;
  }
  float buf[kRowBlock * 16 * V];
  bk_v16 acc[V];
  for (int q = 0; q < V; ++q) acc[q] = bk_v16{};
  for (int64_t r = 0; r < rows; ++r)
    for (int q = 0; q < V; ++q) {
      // the same columns of the next block: a strip walks rows ld apart, a pattern the
      // hardware prefetchers follow late (measured 10-15% on [100352, 64] and [12544, 256])
      __builtin_prefetch(x + (r + rows) * ld + 16 * q);
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
  strip_merge<V>(fm, f1, f2, rows, seen, cmean, cm2);
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
            chunk_stats<E>(base + off, c * hw, planes, len, s[0] > 0 ? (float)s[1] : NAN, &cm, &cm2);
            bk_bn::chan_merge(s[0], s[1], s[2], (double)(planes * len), cm, cm2);
          }
        }
      }
    });
    for (int64_t ch = 0; ch < c; ++ch) emit(ch, st[3 * ch], st[3 * ch + 1], st[3 * ch + 2]);
    return 0;
  }
  // row layout: per-column state over the n / R folded rows of P columns and over the n % R
  // rows left (L columns), then every channel's columns merged (Chan), folds in order
  const int64_t L = c * hw, R = fold_reduce(L), P = R * L, n1 = n / R, n2 = n % R;
  const int64_t B = kRowBlock;
  double *st;  // cmean[P], cm2[P], then the same over L for the rows left
  BK_SCRATCH(st, bk::scratch_d(0, (size_t)(2 * (P + L))));
  std::fill(st, st + 2 * (P + L), 0.0);
  double *cmean = st, *cm2 = st + P, *tmean = st + 2 * P, *tm2 = st + 2 * P + L;
  const int nt = threads_for(total);
  if (n1 > 0)
    split(nt, P, 64, [&](int64_t j0, int64_t j1) {
      for (int64_t r0 = 0; r0 < n1; r0 += B)
        block_stats<E>(x + r0 * P + j0, P, std::min(B, n1 - r0), j1 - j0, (double)r0, cmean + j0, cm2 + j0);
    });
  if (n2 > 0)
    split(nt, L, 64, [&](int64_t j0, int64_t j1) {
      block_stats<E>(x + n1 * P + j0, L, n2, j1 - j0, 0.0, tmean + j0, tm2 + j0);
    });
  for (int64_t ch = 0; ch < c; ++ch) {
    double cnt = 0, mean = 0, m2 = 0;
    for (int64_t r = 0; r < R && n1 > 0; ++r)
      for (int64_t s = 0, j = r * L + ch * hw; s < hw; ++s, ++j)
        bk_bn::chan_merge(cnt, mean, m2, (double)n1, cmean[j], cm2[j]);
    for (int64_t s = 0, j = ch * hw; s < hw && n2 > 0; ++s, ++j)
      bk_bn::chan_merge(cnt, mean, m2, (double)n2, tmean[j], tm2[j]);
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

// Up to 16 elements (a tail, or the head of a thread's range) through the same vector code as
// the rest: the result of an element does not depend on where a run or a thread's range cut
// (the vector loops' contracted multiply-adds round differently from scalar code).
template <class E>
BK_INLINE bk_v16 load_n(const typename E::storage *p, int64_t len) {
  typename E::storage t[16] = {};
  std::copy(p, p + len, t);
  return VecIO<E>::load(t);
}
template <class E>
BK_INLINE void store_n(typename E::storage *p, bk_v16 v, int64_t len) {
  typename E::storage t[16];
  VecIO<E>::store(t, v);
  std::copy(t, t + len, p);
}

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
  // (scalar: through load_n / store_n this costs 1.8x on bfloat16 planes of 196)
  for (; i < len; ++i) y[i] = bk_bn::elemt_e<E>(x[i], mean, scale, bias);
}

// Planes whose length is not a multiple of 32 (e.g. 14 x 14): flat elements [e0, e1) (e0 a
// multiple of 32) in 32-element blocks; a block across a plane boundary takes each lane's
// constants from its own plane (a blend), so no plane has a scalar tail (a bfloat16 one costs
// about as much as the rest of a 196-element plane). Same arithmetic as elemt_plane.
template <class E>
BK_CLONES void elemt_planes_flat(typename E::storage *y, const typename E::storage *x, int64_t e0, int64_t e1,
                                 int64_t hw, int64_t c, const float *mean, const float *scale, const float *shift) {
  int64_t pl = e0 / hw, ch = pl % c, bnd = (pl + 1) * hw;  // bnd: where the current plane ends
  bk_v16 m = v16_splat(mean[ch]), sc = v16_splat(scale[ch]), b = v16_splat(shift[ch]);
  bk_v16 idx0, idx1;  // the element offsets (in the block) that load32's lanes hold
  for (int k = 0; k < 32; ++k) {
    const int64_t p = lane_of<E>(k);
    (p < 16 ? idx0 : idx1)[p & 15] = (float)k;
  }
  int64_t e = e0;
  for (; e + 32 <= e1; e += 32) {
    bk_v16 v0, v1;
    VecIO<E>::load32(x + e, v0, v1);
    if (e + 32 <= bnd) {
      VecIO<E>::store32(y + e, (v0 - m) * sc + b, (v1 - m) * sc + b);
      if (e + 32 < bnd) continue;
    }
    const int64_t ch2 = ch + 1 == c ? 0 : ch + 1;
    const bk_v16 m2 = v16_splat(mean[ch2]), sc2 = v16_splat(scale[ch2]), b2 = v16_splat(shift[ch2]);
    if (e + 32 > bnd) {
      const bk_v16 kv = v16_splat((float)(bnd - e));
      const auto in0 = idx0 < kv, in1 = idx1 < kv;
      VecIO<E>::store32(y + e, (v0 - (in0 ? m : m2)) * (in0 ? sc : sc2) + (in0 ? b : b2),
                        (v1 - (in1 ? m : m2)) * (in1 ? sc : sc2) + (in1 ? b : b2));
    }
    ch = ch2;
    bnd += hw;
    m = m2;
    sc = sc2;
    b = b2;
  }
  for (; e < e1; ++e) {
    if (e == bnd) {
      ch = ch + 1 == c ? 0 : ch + 1;
      bnd += hw;
    }
    y[e] = bk_bn::elemt_e<E>(x[e], mean[ch], scale[ch], shift[ch]);
  }
}

// m <= 16 elements of a folded row, per-column constants c[0], c[P], c[2P] (natural order).
// Inlined (not a lambda, which would be compiled for the baseline ISA: no fused multiply-add,
// so other roundings than the vector loops').
template <class E>
BK_INLINE void elemt_part(typename E::storage *y, const typename E::storage *x, int64_t m, const float *c, int64_t P) {
  using F = bk_half::F32;
  store_n<E>(y, (load_n<E>(x, m) - load_n<F>(c, m)) * load_n<F>(c + P, m) + load_n<F>(c + 2 * P, m), m);
}

// Row layout: len elements of one folded row from column j, with per-column mean / scale /
// bias arrays of P columns in natural order (`nat`: m, s, b, P apart) and with whole
// 32-blocks in load32's lane order (`lane`), read by the 32-element loop; L: an unfolded
// row's columns. (No software prefetch: measured 5-15% slower on [100352, 64] and
// [16384, 32] than without, once rows are folded.)
template <class E>
BK_CLONES void elemt_row(typename E::storage *y, const typename E::storage *x, int64_t len, int64_t j, int64_t P,
                         int64_t L, const float *nat, const float *lane) {
  const int64_t whole = P & ~int64_t(31);
  int64_t i = 0;
  // a thread's range may begin inside a block (P not a multiple of 32): on to the block's end
  while (i < len && (j & 31) != 0 && j < whole) {
    const int64_t m = std::min({len - i, int64_t(16), 32 - (j & 31)});
    elemt_part<E>(y + i, x + i, m, nat + j, P);
    i += m;
    j += m;
  }
  if (32 % L == 0) {
    // every block has the same constants (L divides 32, e.g. 32 channels last): in registers
    const bk_v16 m0 = v16_load(lane), m1 = v16_load(lane + 16), s0 = v16_load(lane + P), s1 = v16_load(lane + P + 16),
                 b0 = v16_load(lane + 2 * P), b1 = v16_load(lane + 2 * P + 16);
    for (; i + 32 <= len && j + 32 <= whole; i += 32, j += 32) {
      bk_v16 v0, v1;
      VecIO<E>::load32(x + i, v0, v1);
      VecIO<E>::store32(y + i, (v0 - m0) * s0 + b0, (v1 - m1) * s1 + b1);
    }
  }
  for (; i + 32 <= len && j + 32 <= whole; i += 32, j += 32) {
    bk_v16 v0, v1;
    VecIO<E>::load32(x + i, v0, v1);
    const float *m = lane + j, *sc = lane + P + j, *b = lane + 2 * P + j;
    VecIO<E>::store32(y + i, (v0 - v16_load(m)) * v16_load(sc) + v16_load(b),
                      (v1 - v16_load(m + 16)) * v16_load(sc + 16) + v16_load(b + 16));
  }
  for (; i + 16 <= len; i += 16, j += 16)
    VecIO<E>::store(y + i, (VecIO<E>::load(x + i) - v16_load(nat + j)) * v16_load(nat + P + j) +
                               v16_load(nat + 2 * P + j));
  if (i < len) elemt_part<E>(y + i, x + i, len - i, nat + j, P);
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
  if (hw >= kSmallHw && hw % 32 != 0) {
    split(nt, total, 32, [&](int64_t e0, int64_t e1) { elemt_planes_flat<E>(y, x, e0, e1, hw, c, mean, scale, shift); });
    return 0;
  }
  if (hw >= kSmallHw) {
    elementwise(nt, n, c, hw, [&](int64_t off, int64_t len, int64_t ch) {
      elemt_plane<E>(y + off, x + off, len, mean[ch], scale[ch], shift[ch]);
    });
    return 0;
  }
  const int64_t P = fold_elementwise(c * hw) * c * hw, whole = P & ~int64_t(31);
  float *cols;  // natural order, then lane order: mean, scale, bias each
  BK_SCRATCH(cols, bk::scratch(1, (size_t)(6 * P)));
  const float *per[3] = {mean, scale, shift};
  for (int q = 0; q < 3; ++q) {
    tile_cols<bk_half::F32>(cols + q * P, per[q], c, hw, P, 0);
    tile_cols<E>(cols + (3 + q) * P, per[q], c, hw, P, whole);
  }
  elementwise_rows(nt, total, P, [&](int64_t off, int64_t len, int64_t j) {
    elemt_row<E>(y + off, x + off, len, j, P, c * hw, cols, cols + 3 * P);
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
// time with float accumulators in registers, added to the double totals (16-element loads,
// as strip_stats).
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
      // the same columns of the next block (as strip_stats)
      __builtin_prefetch(dy + (r + rows) * ld + 16 * q);
      __builtin_prefetch(x + (r + rows) * ld + 16 * q);
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
    // row layout folded as the statistics are: n / R rows of P columns, n % R rows of L
    const int64_t L = c * hw, R = fold_reduce(L), P = R * L, n1 = n / R, n2 = n % R;
    const int64_t B = kRowBlock;
    float *cmean;  // per column: P, then L for the rows left
    double *col;   // sum_dy[P], sum_dy_xmu[P], then the same over L
    BK_SCRATCH(cmean, bk::scratch(0, (size_t)(P + L)));
    BK_SCRATCH(col, bk::scratch_d(1, (size_t)(2 * (P + L))));
    std::fill(col, col + 2 * (P + L), 0.0);
    tile_cols<bk_half::F32>(cmean, mean, c, hw, P, 0);
    tile_cols<bk_half::F32>(cmean + P, mean, c, hw, L, 0);
    double *tcol = col + 2 * P;
    const int nt = threads_for(total);
    if (n1 > 0)
      split(nt, P, 64, [&](int64_t j0, int64_t j1) {
        for (int64_t r0 = 0; r0 < n1; r0 += B)
          reduce_block<E>(dy + r0 * P + j0, x + r0 * P + j0, P, std::min(B, n1 - r0), j1 - j0, cmean + j0,
                          col + j0, col + P + j0);
      });
    if (n2 > 0)
      split(nt, L, 64, [&](int64_t j0, int64_t j1) {
        reduce_block<E>(dy + n1 * P + j0, x + n1 * P + j0, L, n2, j1 - j0, cmean + P + j0, tcol + j0,
                        tcol + L + j0);
      });
    // columns into channels, folds in order
    for (int64_t r = 0; r < R && n1 > 0; ++r)
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t s = 0, j = r * L + ch * hw; s < hw; ++s, ++j) {
          acc[ch] += col[j];
          acc[c + ch] += col[P + j];
        }
    for (int64_t ch = 0; ch < c && n2 > 0; ++ch)
      for (int64_t s = 0, j = ch * hw; s < hw; ++s, ++j) {
        acc[ch] += tcol[j];
        acc[c + ch] += tcol[L + j];
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

// m <= 16 elements, as elemt_part: constants [mean, mdy, k, a] at c[0], c[P], c[2P], c[3P].
template <class E>
BK_INLINE void bwd_elemt_part(typename E::storage *dx, const typename E::storage *dy, const typename E::storage *x,
                              int64_t m, const float *c, int64_t P) {
  using F = bk_half::F32;
  store_n<E>(dx, (load_n<E>(dy, m) - load_n<F>(c + P, m) - (load_n<E>(x, m) - load_n<F>(c, m)) * load_n<F>(c + 2 * P, m)) *
                     load_n<F>(c + 3 * P, m), m);
}

// Row layout: as elemt_row, per-column constants [mean, mdy, k, a] P apart, natural (`nat`)
// and with whole 32-blocks in lane order (`lane`).
template <class E>
BK_CLONES void bwd_elemt_row(typename E::storage *dx, const typename E::storage *dy, const typename E::storage *x,
                             int64_t len, int64_t j, int64_t P, int64_t L, const float *nat, const float *lane) {
  const int64_t whole = P & ~int64_t(31);
  const float *cm = nat, *cd = nat + P, *ck = nat + 2 * P, *ca = nat + 3 * P;
  int64_t i = 0;
  while (i < len && (j & 31) != 0 && j < whole) {
    const int64_t m = std::min({len - i, int64_t(16), 32 - (j & 31)});
    bwd_elemt_part<E>(dx + i, dy + i, x + i, m, nat + j, P);
    i += m;
    j += m;
  }
  if (32 % L == 0) {
    // the same constants for every block, in registers (as elemt_row)
    const bk_v16 m0 = v16_load(lane), m1 = v16_load(lane + 16), d0 = v16_load(lane + P), d1 = v16_load(lane + P + 16),
                 k0 = v16_load(lane + 2 * P), k1 = v16_load(lane + 2 * P + 16), a0 = v16_load(lane + 3 * P),
                 a1 = v16_load(lane + 3 * P + 16);
    for (; i + 32 <= len && j + 32 <= whole; i += 32, j += 32) {
      bk_v16 g0, g1, x0, x1;
      VecIO<E>::load32(dy + i, g0, g1);
      VecIO<E>::load32(x + i, x0, x1);
      VecIO<E>::store32(dx + i, (g0 - d0 - (x0 - m0) * k0) * a0, (g1 - d1 - (x1 - m1) * k1) * a1);
    }
  }
  for (; i + 32 <= len && j + 32 <= whole; i += 32, j += 32) {
    bk_v16 g0, g1, x0, x1;
    VecIO<E>::load32(dy + i, g0, g1);
    VecIO<E>::load32(x + i, x0, x1);
    const float *lm = lane + j, *ld = lane + P + j, *lk = lane + 2 * P + j, *la = lane + 3 * P + j;
    VecIO<E>::store32(dx + i, (g0 - v16_load(ld) - (x0 - v16_load(lm)) * v16_load(lk)) * v16_load(la),
                      (g1 - v16_load(ld + 16) - (x1 - v16_load(lm + 16)) * v16_load(lk + 16)) * v16_load(la + 16));
  }
  for (; i + 16 <= len; i += 16, j += 16)
    VecIO<E>::store(dx + i, (VecIO<E>::load(dy + i) - v16_load(cd + j) -
                             (VecIO<E>::load(x + i) - v16_load(cm + j)) * v16_load(ck + j)) *
                                v16_load(ca + j));
  if (i < len) bwd_elemt_part<E>(dx + i, dy + i, x + i, len - i, nat + j, P);
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
    elementwise(nt, n, c, hw, [&](int64_t off, int64_t len, int64_t ch) {
      bwd_elemt_plane<E>(dx + off, dy + off, x + off, len, km[ch], kd[ch], kk[ch], ka[ch]);
    });
    return 0;
  }
  const int64_t P = fold_elementwise(c * hw) * c * hw, whole = P & ~int64_t(31);
  float *cols;  // natural order, then lane order: mean, mdy, k, a each
  BK_SCRATCH(cols, bk::scratch(1, (size_t)(8 * P)));
  for (int q = 0; q < 4; ++q) {
    tile_cols<bk_half::F32>(cols + q * P, k + q * c, c, hw, P, 0);
    tile_cols<E>(cols + (4 + q) * P, k + q * c, c, hw, P, whole);
  }
  elementwise_rows(nt, total, P, [&](int64_t off, int64_t len, int64_t j) {
    bwd_elemt_row<E>(dx + off, dy + off, x + off, len, j, P, c * hw, cols, cols + 4 * P);
  });
  return 0;
}

}  // namespace

// float16 by the CPU's conversions (half_simd.h's F16HW) where bk::cpu_isa() is "avx512";
// read once when the library is loaded, as the GEMM kernel is.
bool g_f16hw = false;
__attribute__((constructor)) void init_f16hw() { g_f16hw = BK_HAVE_F16HW && !strcmp(bk::cpu_isa(), "avx512"); }

// The entry points of one element type: argument checks (messages name the entry point),
// then the shared bodies above, for E, or for EHW when HW (a run-time choice) holds.
#define BK_BN_PICK(HW, E, EHW, f, args) ((HW) ? f<EHW> args : f<E> args)
#define BK_BN_ENTRIES(SFX, E, EHW, HW, T)                                                                   \
  extern "C" int bk_bn_stats_##SFX(float *stats, const T *x, int64_t n, int64_t c, int64_t hw,      \
                                   float tag, void *) {                                             \
    BK_SIZES3(n, c, hw, per, total);                                                                \
    BK_NOTNULL(stats);                                                                              \
    BK_NOTNULL_IF(total > 0, x);                                                                    \
    return BK_BN_PICK(HW, E, EHW, bn_stats, (stats, x, n, c, hw, per, total, tag));                 \
  }                                                                                                 \
  extern "C" int bk_bn_stats_sums_##SFX(float *sums, const T *x, const float *shift, int64_t n,     \
                                        int64_t c, int64_t hw, int64_t ranks, int64_t rank,         \
                                        float tag, void *) {                                        \
    BK_SIZES3(n, c, hw, per, total);                                                                \
    BK_NOTNULL(sums);                                                                               \
    BK_NOTNULL_IF(total > 0, x);                                                                    \
    BK_REQUIRE(ranks >= 1 && rank >= 0 && rank < ranks, "%s: rank %lld is not in [0, ranks = %lld)", \
               __func__, (long long)rank, (long long)ranks);                                        \
    return BK_BN_PICK(HW, E, EHW, bn_stats_sums, (sums, x, shift, n, c, hw, per, total, ranks, rank, tag));\
  }                                                                                                 \
  extern "C" int bk_bn_elemt_##SFX(T *y, const T *x, const float *mean, const float *invstd,        \
                                   const float *weight, const float *bias, int64_t n, int64_t c,    \
                                   int64_t hw, void *) {                                            \
    BK_SIZES3(n, c, hw, per, total);                                                                \
    BK_NOTNULL_IF(total > 0, y, x, mean, invstd);                                                   \
    return BK_BN_PICK(HW, E, EHW, bn_elemt, (y, x, mean, invstd, weight, bias, n, c, hw, total));   \
  }                                                                                                 \
  extern "C" int bk_bn_backward_reduce_##SFX(float *sums, float *grad_weight, float *grad_bias,     \
                                             const T *dy, const T *x, const float *mean,            \
                                             const float *invstd, int64_t n, int64_t c, int64_t hw, \
                                             void *) {                                              \
    BK_SIZES3(n, c, hw, per, total);                                                                \
    BK_NOTNULL_IF(c > 0, sums);                                                                     \
    BK_NOTNULL_IF(total > 0, dy, x, mean);                                                          \
    BK_NOTNULL_IF(c > 0 && grad_weight != nullptr, invstd);                                         \
    return BK_BN_PICK(HW, E, EHW, bn_backward_reduce, (sums, grad_weight, grad_bias, dy, x, mean, invstd, n, c, hw, total));\
  }                                                                                                 \
  extern "C" int bk_bn_backward_elemt_##SFX(T *dx, const T *dy, const T *x, const float *mean,      \
                                            const float *invstd, const float *weight,               \
                                            const float *sums, const float *count, int64_t n,       \
                                            int64_t c, int64_t hw, void *) {                        \
    BK_SIZES3(n, c, hw, per, total);                                                                \
    BK_NOTNULL_IF(total > 0, dx, dy, x, mean, invstd, sums, count);                                 \
    return BK_BN_PICK(HW, E, EHW, bn_backward_elemt, (dx, dy, x, mean, invstd, weight, sums, count, n, c, hw, total));\
  }

BK_BN_ENTRIES(f32, bk_half::F32, bk_half::F32, false, float)
BK_BN_ENTRIES(bf16, bk_half::BF16, bk_half::BF16, false, bk_bfloat16)
BK_BN_ENTRIES(f16, bk_half::F16, bk_half::F16HW, g_f16hw, bk_float16)
