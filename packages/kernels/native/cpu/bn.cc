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
#include <math.h>

#include <algorithm>

#include "bagua_bn_math.h"
#include "common.h"

namespace {

constexpr int64_t kChunk = 2048;   // 8 KB: the second pass over a chunk hits L1
constexpr int64_t kSmallHw = 64;   // shorter planes use the row layout
constexpr int64_t kRowBlock = 32;  // rows per block in the row layout
constexpr int64_t kColTile = 256;  // columns per tile in the row layout (32 KB per block)

// ---- statistics -------------------------------------------------------------

// Mean and M2 of x[0:len), len <= kChunk: pass 1 estimates the mean m in float,
// pass 2 sums d = x - m and d^2; mean = m + S1/len, M2 = S2 - S1^2/len corrects
// for the error in m. Float lanes hold few terms each; totals go to double.
BK_CLONES void chunk_stats(const float *x, int64_t len, double *mean_out, double *m2_out) {
  bk_v16 a0 = {}, a1 = {};
  int64_t i = 0;
  for (; i + 32 <= len; i += 32) {
    a0 += v16_load(x + i);
    a1 += v16_load(x + i + 16);
  }
  double s = v16_hsum(a0 + a1);
  for (; i < len; ++i) s += x[i];
  const float m = (float)(s / (double)len);
  const bk_v16 mv = v16_splat(m);
  bk_v16 s1a = {}, s1b = {}, s2a = {}, s2b = {};
  i = 0;
  for (; i + 32 <= len; i += 32) {
    const bk_v16 d0 = v16_load(x + i) - mv, d1 = v16_load(x + i + 16) - mv;
    s1a += d0;
    s1b += d1;
    s2a += d0 * d0;
    s2b += d1 * d1;
  }
  double s1 = v16_hsum(s1a + s1b), s2 = v16_hsum(s2a) + v16_hsum(s2b);
  for (; i < len; ++i) {
    const float d = x[i] - m;
    s1 += d;
    s2 += (double)d * d;
  }
  *mean_out = (double)m + s1 / (double)len;
  *m2_out = s2 - s1 * s1 / (double)len;
}

// Row layout, one block of `rows` rows (stride ld) by `cols` columns (<= kColTile):
// per-column block mean and M2 (same corrected two-pass), merged into the per-column
// double state (mean, m2) that has already seen `seen` rows.
BK_CLONES void block_stats(const float *x, int64_t ld, int64_t rows, int64_t cols, double seen,
                           double *cmean, double *cm2) {
  float sum[kColTile], s1[kColTile], s2[kColTile], m[kColTile];
  for (int64_t j = 0; j < cols; ++j) sum[j] = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * ld;
    for (int64_t j = 0; j < cols; ++j) sum[j] += xr[j];
  }
  const float inv_rows = 1.0f / (float)rows;
  for (int64_t j = 0; j < cols; ++j) {
    m[j] = sum[j] * inv_rows;
    s1[j] = 0.0f;
    s2[j] = 0.0f;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * ld;
    for (int64_t j = 0; j < cols; ++j) {
      const float d = xr[j] - m[j];
      s1[j] += d;
      s2[j] += d * d;
    }
  }
  const double nb = (double)rows, total = seen + nb, fb = nb / total;
  for (int64_t j = 0; j < cols; ++j) {
    const double bmean = (double)m[j] + (double)s1[j] / nb;
    const double bm2 = (double)s2[j] - (double)s1[j] * (double)s1[j] / nb;
    // Chan's merge with a count shared by all columns (bk_bn::chan_merge, unrolled
    // here so the loop vectorises)
    const double delta = bmean - cmean[j];
    cmean[j] += delta * fb;
    cm2[j] += bm2 + delta * delta * seen * fb;
  }
}

}  // namespace

extern "C" int bk_bn_stats_f32(float *stats, const float *x, int64_t n, int64_t c, int64_t hw,
                               void *) {
  BK_NONNEG(n);
  BK_NONNEG(c);
  BK_NONNEG(hw);
  int64_t per, total;
  BK_MUL(per, n, hw);
  BK_MUL(total, per, c);
  BK_NOTNULL(stats);
  BK_NOTNULL_IF(total > 0, x);
  BK_GUARD({
    float *smean = stats, *svar = stats + c;
    stats[2 * c] = (float)per;
    if (per == 0) {
      // empty local batch: an all-zero record, skipped by the merge
      std::fill(stats, stats + 2 * c, 0.0f);
      return 0;
    }
    if (hw >= kSmallHw) {
      double *st = bk::scratch_d(0, (size_t)(3 * c));  // count, mean, m2 per channel
      std::fill(st, st + 3 * c, 0.0);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t ch = 0; ch < c; ++ch) {
          const float *plane = x + (i * c + ch) * hw;
          double *s = st + 3 * ch;
          for (int64_t off = 0; off < hw; off += kChunk) {
            const int64_t len = std::min(kChunk, hw - off);
            double cm, cm2;
            chunk_stats(plane + off, len, &cm, &cm2);
            bk_bn::chan_merge(s[0], s[1], s[2], (double)len, cm, cm2);
          }
        }
      for (int64_t ch = 0; ch < c; ++ch) {
        smean[ch] = (float)st[3 * ch + 1];
        svar[ch] = (float)bk_bn::biased_var(st[3 * ch], st[3 * ch + 2]);
      }
      return 0;
    }
    // row layout: per-column state over rows, then columns folded into channels
    const int64_t L = c * hw;
    double *cmean = bk::scratch_d(0, (size_t)L), *cm2 = bk::scratch_d(1, (size_t)L);
    std::fill(cmean, cmean + L, 0.0);
    std::fill(cm2, cm2 + L, 0.0);
    for (int64_t r0 = 0; r0 < n; r0 += kRowBlock) {
      const int64_t rows = std::min(kRowBlock, n - r0);
      for (int64_t j0 = 0; j0 < L; j0 += kColTile)
        block_stats(x + r0 * L + j0, L, rows, std::min(kColTile, L - j0), (double)r0, cmean + j0,
                    cm2 + j0);
    }
    for (int64_t ch = 0; ch < c; ++ch) {
      double cnt = 0, mean = 0, m2 = 0;
      for (int64_t s = 0; s < hw; ++s)
        bk_bn::chan_merge(cnt, mean, m2, (double)n, cmean[ch * hw + s], cm2[ch * hw + s]);
      smean[ch] = (float)mean;
      svar[ch] = (float)bk_bn::biased_var(cnt, m2);
    }
    return 0;
  })
}

// Global count 0 (every rank empty): mean 0, var 0, so invstd = 1/sqrt(eps), and the
// running statistics are left alone. Running statistics are also left alone for a
// global count of 1, whose unbiased variance is undefined (the TS layer rejects
// training with count <= 1 before it gets here, as PyTorch does).
extern "C" int bk_bn_merge_stats_f32(float *mean, float *invstd, float *count, const float *stats,
                                     int64_t ranks, int64_t c, float eps, float *running_mean,
                                     float *running_var, float factor, void *) {
  BK_NONNEG(ranks);
  BK_NONNEG(c);
  BK_NOTNULL(count);
  BK_NOTNULL_IF(c > 0, mean);
  BK_NOTNULL_IF(c > 0, invstd);
  BK_NOTNULL_IF(ranks > 0, stats);
  BK_REQUIRE(eps >= 0.0f, "%s: eps must be >= 0 (got %g)", __func__, (double)eps);
  BK_REQUIRE((running_mean == nullptr) == (running_var == nullptr),
             "%s: running_mean and running_var must both be given or both be NULL", __func__);
  const int64_t rec = 2 * c + 1;
  double total = 0;
  for (int64_t r = 0; r < ranks; ++r) {
    const float cnt = stats[r * rec + 2 * c];
    BK_REQUIRE(cnt >= 0.0f, "%s: rank %lld has a negative or NaN count (%g)", __func__,
               (long long)r, (double)cnt);
    total += cnt;
  }
  *count = (float)total;
  for (int64_t ch = 0; ch < c; ++ch) {
    double cnt = 0, m = 0, m2 = 0;
    for (int64_t r = 0; r < ranks; ++r) {
      const float *s = stats + r * rec;
      const double nb = s[2 * c];
      bk_bn::chan_merge(cnt, m, m2, nb, (double)s[ch], (double)s[c + ch] * nb);
    }
    const double var = bk_bn::biased_var(cnt, m2);
    mean[ch] = (float)m;
    invstd[ch] = (float)bk_bn::invstd(var, (double)eps);
    if (running_mean && cnt > 1) {
      running_mean[ch] = (float)bk_bn::running_update((double)running_mean[ch], m, (double)factor);
      running_var[ch] = (float)bk_bn::running_update(
          (double)running_var[ch], bk_bn::unbiased_var(var, cnt), (double)factor);
    }
  }
  return 0;
}

extern "C" int bk_bn_invstd_f32(float *invstd, const float *var, int64_t c, float eps, void *) {
  BK_NONNEG(c);
  BK_NOTNULL_IF(c > 0, invstd);
  BK_NOTNULL_IF(c > 0, var);
  BK_REQUIRE(eps >= 0.0f, "%s: eps must be >= 0 (got %g)", __func__, (double)eps);
  for (int64_t ch = 0; ch < c; ++ch)
    invstd[ch] = (float)bk_bn::invstd((double)var[ch], (double)eps);
  return 0;
}

// ---- forward elementwise -----------------------------------------------------

namespace {

// y = (x - mean) * scale + bias over one plane. Explicit 16-lane vectors: each
// block is loaded before it is stored, so y may alias x exactly.
BK_CLONES void elemt_plane(float *y, const float *x, int64_t len, float mean, float scale,
                           float bias) {
  const bk_v16 mv = v16_splat(mean), sv = v16_splat(scale), bv = v16_splat(bias);
  int64_t i = 0;
  for (; i + 32 <= len; i += 32) {
    const bk_v16 x0 = v16_load(x + i), x1 = v16_load(x + i + 16);
    v16_store(y + i, (x0 - mv) * sv + bv);
    v16_store(y + i + 16, (x1 - mv) * sv + bv);
  }
  for (; i + 16 <= len; i += 16) v16_store(y + i, (v16_load(x + i) - mv) * sv + bv);
  for (; i < len; ++i) y[i] = bk_bn::elemt(x[i], mean, scale, bias);
}

// Row layout: per-column mean / scale / bias arrays of length L.
BK_CLONES void elemt_row(float *y, const float *x, int64_t len, const float *mean,
                         const float *scale, const float *bias) {
  int64_t i = 0;
  for (; i + 16 <= len; i += 16)
    v16_store(y + i, (v16_load(x + i) - v16_load(mean + i)) * v16_load(scale + i) +
                         v16_load(bias + i));
  for (; i < len; ++i) y[i] = bk_bn::elemt(x[i], mean[i], scale[i], bias[i]);
}

}  // namespace

extern "C" int bk_bn_elemt_f32(float *y, const float *x, const float *mean, const float *invstd,
                               const float *weight, const float *bias, int64_t n, int64_t c,
                               int64_t hw, void *) {
  BK_NONNEG(n);
  BK_NONNEG(c);
  BK_NONNEG(hw);
  int64_t per, total;
  BK_MUL(per, n, hw);
  BK_MUL(total, per, c);
  BK_NOTNULL_IF(total > 0, y);
  BK_NOTNULL_IF(total > 0, x);
  BK_NOTNULL_IF(total > 0, mean);
  BK_NOTNULL_IF(total > 0, invstd);
  BK_GUARD({
    if (total == 0) return 0;
    // per-channel constants computed once
    float *k = bk::scratch(0, (size_t)(2 * c));
    float *scale = k, *shift = k + c;
    for (int64_t ch = 0; ch < c; ++ch) {
      scale[ch] = bk_bn::elemt_scale(invstd[ch], weight, ch);
      shift[ch] = bias ? bias[ch] : 0.0f;
    }
    if (hw >= kSmallHw) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t ch = 0; ch < c; ++ch) {
          const int64_t off = (i * c + ch) * hw;
          elemt_plane(y + off, x + off, hw, mean[ch], scale[ch], shift[ch]);
        }
      return 0;
    }
    const int64_t L = c * hw;
    float *cols = bk::scratch(1, (size_t)(3 * L));
    float *cm = cols, *cs = cols + L, *cb = cols + 2 * L;
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t s = 0; s < hw; ++s) {
        cm[ch * hw + s] = mean[ch];
        cs[ch * hw + s] = scale[ch];
        cb[ch * hw + s] = shift[ch];
      }
    for (int64_t i = 0; i < n; ++i) elemt_row(y + i * L, x + i * L, L, cm, cs, cb);
    return 0;
  })
}

// ---- backward ------------------------------------------------------------------

namespace {

// sum dy and sum dy * (x - mean) over one plane; float lanes per chunk, double totals.
BK_CLONES void reduce_plane(const float *dy, const float *x, int64_t len, float mean,
                            double *sdy_out, double *sdx_out) {
  const bk_v16 mv = v16_splat(mean);
  double sdy = 0, sdx = 0;
  int64_t i = 0;
  while (i < len) {
    const int64_t end = std::min(len, i + kChunk);
    bk_v16 a0 = {}, a1 = {}, b0 = {}, b1 = {};
    for (; i + 32 <= end; i += 32) {
      const bk_v16 g0 = v16_load(dy + i), g1 = v16_load(dy + i + 16);
      a0 += g0;
      a1 += g1;
      b0 += g0 * (v16_load(x + i) - mv);
      b1 += g1 * (v16_load(x + i + 16) - mv);
    }
    sdy += v16_hsum(a0 + a1);
    sdx += v16_hsum(b0) + v16_hsum(b1);
    for (; i < end; ++i) {
      sdy += dy[i];
      sdx += (double)dy[i] * (x[i] - mean);
    }
  }
  *sdy_out += sdy;
  *sdx_out += sdx;
}

// Row layout: per-column sums over a block of rows in float, added to double totals.
BK_CLONES void reduce_block(const float *dy, const float *x, int64_t ld, int64_t rows,
                            int64_t cols, const float *cmean, double *sdy, double *sdx) {
  float a[kColTile], b[kColTile];
  for (int64_t j = 0; j < cols; ++j) a[j] = b[j] = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float *g = dy + r * ld, *xr = x + r * ld;
    for (int64_t j = 0; j < cols; ++j) {
      a[j] += g[j];
      b[j] += g[j] * (xr[j] - cmean[j]);
    }
  }
  for (int64_t j = 0; j < cols; ++j) {
    sdy[j] += a[j];
    sdx[j] += b[j];
  }
}

}  // namespace

extern "C" int bk_bn_backward_reduce_f32(float *sums, float *grad_weight, float *grad_bias,
                                         const float *dy, const float *x, const float *mean,
                                         const float *invstd, int64_t n, int64_t c, int64_t hw,
                                         void *) {
  BK_NONNEG(n);
  BK_NONNEG(c);
  BK_NONNEG(hw);
  int64_t per, total;
  BK_MUL(per, n, hw);
  BK_MUL(total, per, c);
  BK_NOTNULL_IF(c > 0, sums);
  BK_NOTNULL_IF(total > 0, dy);
  BK_NOTNULL_IF(total > 0, x);
  BK_NOTNULL_IF(total > 0, mean);
  BK_NOTNULL_IF(c > 0 && grad_weight != nullptr, invstd);
  BK_GUARD({
    double *acc = bk::scratch_d(0, (size_t)(2 * c));  // sum_dy[c], sum_dy_xmu[c]
    std::fill(acc, acc + 2 * c, 0.0);
    if (total > 0 && hw >= kSmallHw) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t ch = 0; ch < c; ++ch) {
          const int64_t off = (i * c + ch) * hw;
          reduce_plane(dy + off, x + off, hw, mean[ch], acc + ch, acc + c + ch);
        }
    } else if (total > 0) {
      const int64_t L = c * hw;
      float *cmean = bk::scratch(0, (size_t)L);
      double *col = bk::scratch_d(1, (size_t)(2 * L));
      std::fill(col, col + 2 * L, 0.0);
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t s = 0; s < hw; ++s) cmean[ch * hw + s] = mean[ch];
      for (int64_t r0 = 0; r0 < n; r0 += kRowBlock) {
        const int64_t rows = std::min(kRowBlock, n - r0);
        for (int64_t j0 = 0; j0 < L; j0 += kColTile)
          reduce_block(dy + r0 * L + j0, x + r0 * L + j0, L, rows, std::min(kColTile, L - j0),
                       cmean + j0, col + j0, col + L + j0);
      }
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
  })
}

namespace {

// dx = (dy - mdy - (x - mean) * k) * a over one plane (dx may alias dy or x exactly).
BK_CLONES void bwd_elemt_plane(float *dx, const float *dy, const float *x, int64_t len, float mean,
                               float mdy, float k, float a) {
  const bk_v16 mv = v16_splat(mean), dv = v16_splat(mdy), kv = v16_splat(k), av = v16_splat(a);
  int64_t i = 0;
  for (; i + 16 <= len; i += 16)
    v16_store(dx + i, (v16_load(dy + i) - dv - (v16_load(x + i) - mv) * kv) * av);
  bk_bn::BackwardCoeffs co;
  co.a = a;
  co.mdy = mdy;
  co.k = k;
  for (; i < len; ++i) dx[i] = bk_bn::backward_elemt(dy[i], x[i], mean, co);
}

// Row layout: per-column constants, packed as [mean, mdy, k, a] arrays of length L.
BK_CLONES void bwd_elemt_row(float *dx, const float *dy, const float *x, int64_t len,
                             const float *cm, const float *cd, const float *ck, const float *ca) {
  int64_t i = 0;
  for (; i + 16 <= len; i += 16)
    v16_store(dx + i, (v16_load(dy + i) - v16_load(cd + i) -
                       (v16_load(x + i) - v16_load(cm + i)) * v16_load(ck + i)) *
                          v16_load(ca + i));
  for (; i < len; ++i) dx[i] = (dy[i] - cd[i] - (x[i] - cm[i]) * ck[i]) * ca[i];
}

}  // namespace

extern "C" int bk_bn_backward_elemt_f32(float *dx, const float *dy, const float *x,
                                        const float *mean, const float *invstd,
                                        const float *weight, const float *sums,
                                        const float *count, int64_t n, int64_t c, int64_t hw,
                                        void *) {
  BK_NONNEG(n);
  BK_NONNEG(c);
  BK_NONNEG(hw);
  int64_t per, total;
  BK_MUL(per, n, hw);
  BK_MUL(total, per, c);
  BK_NOTNULL_IF(total > 0, dx);
  BK_NOTNULL_IF(total > 0, dy);
  BK_NOTNULL_IF(total > 0, x);
  BK_NOTNULL_IF(total > 0, mean);
  BK_NOTNULL_IF(total > 0, invstd);
  BK_NOTNULL_IF(total > 0, sums);
  BK_NOTNULL_IF(total > 0, count);
  BK_GUARD({
    if (total == 0) return 0;
    const float N = *count;
    float *k = bk::scratch(0, (size_t)(4 * c));
    float *km = k, *kd = k + c, *kk = k + 2 * c, *ka = k + 3 * c;
    for (int64_t ch = 0; ch < c; ++ch) {
      const bk_bn::BackwardCoeffs co = bk_bn::backward_coeffs(
          invstd[ch], weight ? weight[ch] : 1.0f, sums[ch], sums[c + ch], N);
      km[ch] = mean[ch];
      kd[ch] = co.mdy;
      kk[ch] = co.k;
      ka[ch] = co.a;
    }
    if (hw >= kSmallHw) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t ch = 0; ch < c; ++ch) {
          const int64_t off = (i * c + ch) * hw;
          bwd_elemt_plane(dx + off, dy + off, x + off, hw, km[ch], kd[ch], kk[ch], ka[ch]);
        }
      return 0;
    }
    const int64_t L = c * hw;
    float *cols = bk::scratch(1, (size_t)(4 * L));
    for (int64_t q = 0; q < 4; ++q)
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t s = 0; s < hw; ++s) cols[q * L + ch * hw + s] = k[q * c + ch];
    for (int64_t i = 0; i < n; ++i)
      bwd_elemt_row(dx + i * L, dy + i * L, x + i * L, L, cols, cols + L, cols + 2 * L,
                    cols + 3 * L);
    return 0;
  })
}
