// LayerNorm and GroupNorm, fused (bk_row_norm_f32, bk_row_norm_backward_f32 in
// bagua_kernels.h): both normalise contiguous rows of the input, and the affine
// parameter of element p of row r is a = (r % groups) * (len / inner) + p / inner.
// Forward reads x twice (double sums, two passes) and writes y once; backward reads
// dy and x twice per row and writes dx once, with the weight and bias gradients
// summed per fixed block of rows and the blocks added in order, so the bits do not
// depend on the thread count.
#include <math.h>

#include <vector>

#include "common.h"

namespace {

constexpr int64_t kMaxBlocks = 256;  // row blocks of the parameter-gradient sums
constexpr int64_t kFlushRows = 32;   // rows a float accumulator takes before it is added to the double sums

struct RowGeom {
  int64_t rows, len, groups, inner, segs;  // segs = len / inner: affine entries per row
};

inline int64_t affine_base(const RowGeom &g, int64_t r) { return (r % g.groups) * g.segs; }

// Sums run in 16 float lanes (vectorisable without reassociating), each lane over at
// most kChunk / 16 values, and the chunk sums are added in double: float rounding stays at
// the level of a 32-term sum whatever the row length.
constexpr int64_t kLanes = 16, kChunk = 512;

// sum(x - shift), or with kSquare sum((x - shift)^2)
template <bool kSquare>
inline double sum_dev_t(const float *x, int64_t n, float shift) {
  double total = 0;
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < n ? c0 + kChunk : n;
    float acc[kLanes] = {};
    int64_t i = c0;
    for (; i + kLanes <= c1; i += kLanes)
      for (int64_t j = 0; j < kLanes; ++j) {
        const float d = x[i + j] - shift;
        acc[j] += kSquare ? d * d : d;
      }
    float tail = 0;
    for (; i < c1; ++i) {
      const float d = x[i] - shift;
      tail += kSquare ? d * d : d;
    }
    double chunk = tail;
    for (int64_t j = 0; j < kLanes; ++j) chunk += acc[j];
    total += chunk;
  }
  return total;
}

BK_CLONES double sum_plain(const float *x, int64_t n) { return sum_dev_t<false>(x, n, 0.0f); }
BK_CLONES double sum_sq_dev(const float *x, int64_t n, float shift) { return sum_dev_t<true>(x, n, shift); }

// sum(dy) and sum(dy * xhat), xhat = (x - mean) * rstd
BK_CLONES void sum_dy_xhat(const float *dy, const float *x, int64_t n, float m, float rs, double *sdy,
                           double *sdyx) {
  double t1 = 0, t2 = 0;
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < n ? c0 + kChunk : n;
    float a1[kLanes] = {}, a2[kLanes] = {};
    int64_t i = c0;
    for (; i + kLanes <= c1; i += kLanes)
      for (int64_t j = 0; j < kLanes; ++j) {
        const float g = dy[i + j];
        a1[j] += g;
        a2[j] += g * ((x[i + j] - m) * rs);
      }
    float e1 = 0, e2 = 0;
    for (; i < c1; ++i) {
      e1 += dy[i];
      e2 += dy[i] * ((x[i] - m) * rs);
    }
    double c_1 = e1, c_2 = e2;
    for (int64_t j = 0; j < kLanes; ++j) {
      c_1 += a1[j];
      c_2 += a2[j];
    }
    t1 += c_1;
    t2 += c_2;
  }
  *sdy = t1;
  *sdyx = t2;
}

// Two passes: the mean (float lanes around 0), then the squared deviations from it.
void row_stats(const float *x, int64_t len, float eps, float *mean, float *rstd) {
  const double m = sum_plain(x, len) / (double)len;
  // deviations from the float mean, corrected for its rounding: sum((x - mf)^2) - n (m - mf)^2
  const float mf = (float)m;
  const double dm = m - (double)mf;
  const double q = sum_sq_dev(x, len, mf) - (double)len * dm * dm;
  *mean = mf;
  *rstd = (float)(1.0 / sqrt((q > 0 ? q : 0) / (double)len + (double)eps));
}

BK_CLONES void dx_segment(float *dx, const float *dy, const float *x, int64_t n, float m, float rs, float w,
                          float c1, float c2) {
  for (int64_t i = 0; i < n; ++i) dx[i] = rs * (dy[i] * w - c1 - ((x[i] - m) * rs) * c2);
}

// y = (x - mean) * s + b per segment of `inner` values, s = rstd * w (x - mean first: no
// cancellation of two large products when |mean| >> std).
BK_CLONES void row_affine(float *y, const float *x, int64_t inner, float m, float s, float b) {
  for (int64_t i = 0; i < inner; ++i) y[i] = (x[i] - m) * s + b;
}

// inner == 1 (LayerNorm; GroupNorm on [N, C]): an affine entry per element.
BK_CLONES void row_affine_each(float *y, const float *x, int64_t n, float m, float rs, const float *w,
                               const float *b) {
  if (w && b)
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * (rs * w[i]) + b[i];
  else if (w)
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * (rs * w[i]);
  else if (b)
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * rs + b[i];
  else
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * rs;
}

// sum(dy * w) and sum(dy * w * xhat) over a row; fw += dy * xhat, fb += dy per element (float
// accumulators of at most kFlushRows rows, nullable together).
template <bool kW, bool kF>
inline void row_backward_each_t(const float *dy, const float *x, int64_t n, float m, float rs, const float *w,
                                float *fw, float *fb, double *s1, double *s2) {
  double t1 = 0, t2 = 0;
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < n ? c0 + kChunk : n;
    float a1[kLanes] = {}, a2[kLanes] = {};
    int64_t i = c0;
    for (; i + kLanes <= c1; i += kLanes)
      for (int64_t j = 0; j < kLanes; ++j) {
        const float d = dy[i + j], xh = (x[i + j] - m) * rs;
        const float g = kW ? d * w[i + j] : d;
        a1[j] += g;
        a2[j] += g * xh;
        if (kF) {
          fw[i + j] += d * xh;
          fb[i + j] += d;
        }
      }
    float e1 = 0, e2 = 0;
    for (; i < c1; ++i) {
      const float d = dy[i], xh = (x[i] - m) * rs;
      const float g = kW ? d * w[i] : d;
      e1 += g;
      e2 += g * xh;
      if (kF) {
        fw[i] += d * xh;
        fb[i] += d;
      }
    }
    double c_1 = e1, c_2 = e2;
    for (int64_t j = 0; j < kLanes; ++j) {
      c_1 += a1[j];
      c_2 += a2[j];
    }
    t1 += c_1;
    t2 += c_2;
  }
  *s1 = t1;
  *s2 = t2;
}

BK_CLONES void row_backward_each(const float *dy, const float *x, int64_t n, float m, float rs, const float *w,
                                 float *fw, float *fb, double *s1, double *s2) {
  if (w)
    fw ? row_backward_each_t<true, true>(dy, x, n, m, rs, w, fw, fb, s1, s2)
       : row_backward_each_t<true, false>(dy, x, n, m, rs, w, fw, fb, s1, s2);
  else
    fw ? row_backward_each_t<false, true>(dy, x, n, m, rs, w, fw, fb, s1, s2)
       : row_backward_each_t<false, false>(dy, x, n, m, rs, w, fw, fb, s1, s2);
}

BK_CLONES void dx_each(float *dx, const float *dy, const float *x, int64_t n, float m, float rs, const float *w,
                       float c1, float c2) {
  if (w)
    for (int64_t i = 0; i < n; ++i) dx[i] = rs * (dy[i] * w[i] - c1 - ((x[i] - m) * rs) * c2);
  else
    for (int64_t i = 0; i < n; ++i) dx[i] = rs * (dy[i] - c1 - ((x[i] - m) * rs) * c2);
}

}  // namespace

extern "C" int bk_row_norm_f32(float *y, float *mean, float *rstd, const float *x, const float *weight,
                               const float *bias, int64_t rows, int64_t len, int64_t groups, int64_t inner,
                               float eps, void *) {
  BK_NONNEG(rows);
  BK_REQUIRE(len > 0 && inner > 0 && groups > 0 && len % inner == 0,
             "%s: need len > 0, inner > 0 dividing len, groups > 0 (got len %lld, inner %lld, groups %lld)",
             __func__, (long long)len, (long long)inner, (long long)groups);
  BK_REQUIRE(eps > 0.0f, "%s: eps must be > 0 (got %g)", __func__, (double)eps);
  BK_NOTNULL_IF(rows > 0, y, mean, rstd, x);
  if (rows == 0) return 0;
  const RowGeom g = {rows, len, groups, inner, len / inner};
  const int nt = bk::threads_for(rows * len, bk::kParallelMin);
  bk::parallel_ranges(nt, rows, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float *xr = x + r * len;
      float *yr = y + r * len;
      row_stats(xr, len, eps, mean + r, rstd + r);
      const float m = mean[r], rs = rstd[r];
      const int64_t base = affine_base(g, r);
      if (inner == 1) {
        row_affine_each(yr, xr, len, m, rs, weight ? weight + base : nullptr, bias ? bias + base : nullptr);
        continue;
      }
      for (int64_t k = 0; k < g.segs; ++k) {
        const float s = weight ? rs * weight[base + k] : rs;
        row_affine(yr + k * inner, xr + k * inner, inner, m, s, bias ? bias[base + k] : 0.0f);
      }
    }
    return 0;
  });
  return 0;
}

extern "C" int bk_row_norm_backward_f32(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                                        const float *mean, const float *rstd, const float *weight, int64_t rows,
                                        int64_t len, int64_t groups, int64_t inner, void *) {
  BK_NONNEG(rows);
  BK_REQUIRE(len > 0 && inner > 0 && groups > 0 && len % inner == 0,
             "%s: need len > 0, inner > 0 dividing len, groups > 0 (got len %lld, inner %lld, groups %lld)",
             __func__, (long long)len, (long long)inner, (long long)groups);
  const RowGeom g = {rows, len, groups, inner, len / inner};
  const int64_t A = groups * g.segs;
  if (dweight) for (int64_t a = 0; a < A; ++a) dweight[a] = 0.0f;
  if (dbias) for (int64_t a = 0; a < A; ++a) dbias[a] = 0.0f;
  BK_NOTNULL_IF(rows > 0, dy, x, mean, rstd);
  if (rows == 0) return 0;
  const bool params = dweight || dbias;
  const int64_t per_block = (rows + kMaxBlocks - 1) / kMaxBlocks;
  const int64_t nblocks = (rows + per_block - 1) / per_block;
  // per block: sum(dy * xhat) and sum(dy) per affine entry, in double
  std::vector<double> part(params ? (size_t)(nblocks * 2 * A) : 0, 0.0);
  const int nt = bk::threads_for(rows * len, bk::kParallelMin);
  bk::parallel_ranges(nt, nblocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      double *pw = params ? part.data() + b * 2 * A : nullptr, *pb = pw ? pw + A : nullptr;
      // inner == 1: per-element float accumulators, added to pw / pb every kFlushRows rows
      std::vector<float> acc(params && inner == 1 ? (size_t)(2 * A) : 0, 0.0f);
      float *fw = acc.empty() ? nullptr : acc.data(), *fb = fw ? fw + A : nullptr;
      auto flush = [&]() {
        for (int64_t a = 0; a < A; ++a) {
          pw[a] += fw[a];
          pb[a] += fb[a];
          fw[a] = fb[a] = 0.0f;
        }
      };
      int64_t pending = 0;
      for (int64_t r = b * per_block; r < rows && r < (b + 1) * per_block; ++r) {
        const float *xr = x + r * len, *dyr = dy + r * len;
        const float m = mean[r], rs = rstd[r];
        const int64_t base = affine_base(g, r);
        double s1 = 0, s2 = 0;  // sum(dy * w), sum(dy * w * xhat)
        if (inner == 1) {
          const float *wr = weight ? weight + base : nullptr;
          row_backward_each(dyr, xr, len, m, rs, wr, fw ? fw + base : nullptr, fb ? fb + base : nullptr, &s1, &s2);
          if (fw && ++pending == kFlushRows) {
            flush();
            pending = 0;
          }
          if (dx) dx_each(dx + r * len, dyr, xr, len, m, rs, wr, (float)(s1 / (double)len), (float)(s2 / (double)len));
          continue;
        }
        for (int64_t k = 0; k < g.segs; ++k) {
          const float w = weight ? weight[base + k] : 1.0f;
          double sw, swx;
          sum_dy_xhat(dyr + k * inner, xr + k * inner, inner, m, rs, &sw, &swx);
          s1 += w * sw;
          s2 += w * swx;
          if (pw) {
            pw[base + k] += swx;
            pb[base + k] += sw;
          }
        }
        if (!dx) continue;
        float *dxr = dx + r * len;
        const float c1 = (float)(s1 / (double)len), c2 = (float)(s2 / (double)len);
        for (int64_t k = 0; k < g.segs; ++k) {
          const float w = weight ? weight[base + k] : 1.0f;
          dx_segment(dxr + k * inner, dyr + k * inner, xr + k * inner, inner, m, rs, w, c1, c2);
        }
      }
      if (fw && pending) flush();
    }
    return 0;
  });
  if (params) {
    for (int64_t a = 0; a < A; ++a) {
      double sw = 0, sb = 0;
      for (int64_t b = 0; b < nblocks; ++b) {
        sw += part[b * 2 * A + a];
        sb += part[b * 2 * A + A + a];
      }
      if (dweight) dweight[a] = (float)sw;
      if (dbias) dbias[a] = (float)sb;
    }
  }
  return 0;
}
