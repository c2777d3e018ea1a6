// conv2d (and its two backward kernels) on oneDNN where it loads, else as im2col +
// the built-in GEMM. Pooling is in pool.cc.

#include <algorithm>

#include "bagua_geom.h"
#include "common.h"
#include "onednn.h"

using bk::ConvGeom;
using bk::conv_parse;
using bk::conv_pointwise;

namespace {

// Valid output range [lo, hi) along one axis for kernel offset `off`:
// those o with 0 <= o * stride - pad + off < size.
inline void valid_range(int64_t off, int64_t pad, int64_t stride, int64_t size, int64_t out,
                        int64_t &lo, int64_t &hi) {
  const int64_t a = pad - off;  // need o * stride >= a
  lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  const int64_t b = size + pad - off;  // need o * stride < b
  hi = b <= 0 ? 0 : (b + stride - 1) / stride;
  lo = std::min(lo, out);
  hi = std::min(std::max(hi, lo), out);
}

// Rows [j0, j1) of one group's column matrix into col (which starts at row j0), row
// j = (ci, ky, kx): col[j, (oy, ox)] = x[ci, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw], 0 outside.
void im2col(float *col, const float *x, const ConvGeom &g, int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; ++j) {
    const int64_t ci = j / (g.r * g.s), ky = j / g.s % g.r, kx = j % g.s;
    const float *xc = x + ci * g.hw;
    int64_t ylo, yhi, xlo, xhi;
    valid_range(ky * g.dh, g.ph, g.sh, g.h, g.oh, ylo, yhi);
    valid_range(kx * g.dw, g.pw, g.sw, g.w, g.ow, xlo, xhi);
    float *row = col + (j - j0) * g.ohw;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      float *dst = row + oy * g.ow;
      if (oy < ylo || oy >= yhi) {
        std::fill(dst, dst + g.ow, 0.0f);
        continue;
      }
      const float *src = xc + (oy * g.sh - g.ph + ky * g.dh) * g.w - g.pw + kx * g.dw;
      std::fill(dst, dst + xlo, 0.0f);
      if (g.sw == 1)
        memcpy(dst + xlo, src + xlo, (size_t)(xhi - xlo) * sizeof(float));
      else
        for (int64_t ox = xlo; ox < xhi; ++ox) dst[ox] = src[ox * g.sw];
      std::fill(dst + xhi, dst + g.ow, 0.0f);
    }
  }
}

// The adjoint of im2col for input channels [c0, c1): dx[...] += col[...] (dx zeroed by
// the caller). A channel's rows all land in its own plane of dx.
void col2im(float *dx, const float *col, const ConvGeom &g, int64_t c0, int64_t c1) {
  for (int64_t ci = c0; ci < c1; ++ci) {
    float *xc = dx + ci * g.hw;
    for (int64_t ky = 0; ky < g.r; ++ky) {
      int64_t ylo, yhi;
      valid_range(ky * g.dh, g.ph, g.sh, g.h, g.oh, ylo, yhi);
      for (int64_t kx = 0; kx < g.s; ++kx) {
        int64_t xlo, xhi;
        valid_range(kx * g.dw, g.pw, g.sw, g.w, g.ow, xlo, xhi);
        const float *row = col + ((ci * g.r + ky) * g.s + kx) * g.ohw;
        for (int64_t oy = ylo; oy < yhi; ++oy) {
          const float *src = row + oy * g.ow;
          float *dst = xc + (oy * g.sh - g.ph + ky * g.dh) * g.w - g.pw + kx * g.dw;
          if (g.sw == 1)
            for (int64_t ox = xlo; ox < xhi; ++ox) dst[ox] += src[ox];
          else
            for (int64_t ox = xlo; ox < xhi; ++ox) dst[ox * g.sw] += src[ox];
        }
      }
    }
  }
}

// im2col of rows [j0, j1), split over the threads (one thread inside a parallel region).
void im2col_rows(float *col, const float *xg, const ConvGeom &g, int64_t j0, int64_t j1) {
  bk::parallel_ranges(bk::threads_for((j1 - j0) * g.ohw, bk::kParallelMin), j1 - j0, 1,
                      [&](int64_t lo, int64_t hi) {
                        im2col(col + lo * g.ohw, xg, g, j0 + lo, j0 + hi);
                        return 0;
                      });
}

// One group's column matrix [crs, ohw]: the input planes themselves for a pointwise
// conv (col == nullptr), else im2col'd into col.
const float *columns(float *col, const float *xg, const ConvGeom &g) {
  if (!col) return xg;
  im2col_rows(col, xg, g, 0, g.crs);
  return col;
}

// Multiply-adds per thread below which a convolution uses fewer threads.
constexpr int64_t kConvGrain = 1 << 17;

// Threads for a convolution (n * k * crs * ohw multiply-adds).
int conv_threads(const ConvGeom &g) {
  const double work = (double)g.n * (double)g.k * (double)g.crs * (double)g.ohw;
  return bk::threads_for(work > 9e18 ? INT64_MAX : (int64_t)work, kConvGrain);
}

// Runs f(lo, hi) over ranges of [0, n), one parallel region for the whole call when
// there are at least as many items as threads: a convolution then forks and joins
// once, not once per image (which costs dearly when other processes share the cores).
// Otherwise f(0, n) on this thread, its im2col and GEMMs using the threads instead.
// Each element comes out the same either way, whatever the thread count.
template <class F>
int conv_split(int nt, int64_t n, const F &f) {
  return nt > 1 && n >= nt ? bk::parallel_ranges(nt, n, 1, f) : f(int64_t(0), n);
}

// Forward over images [n0, n1): non-zero when out of memory.
int forward_images(float *y, const float *x, const float *w, const float *bias,
                   const ConvGeom &g, int64_t n0, int64_t n1) {
  float *col = nullptr;  // none for a pointwise conv
  if (!conv_pointwise(g) && !(col = bk::scratch(0, (size_t)(g.crs * g.ohw)))) return 1;
  for (int64_t n = n0; n < n1; ++n) {
    float *yn = y + n * g.k * g.ohw;
    // the bias is written first and the GEMM accumulates onto it (beta = 1)
    if (bias)
      for (int64_t k = 0; k < g.k; ++k) std::fill(yn + k * g.ohw, yn + (k + 1) * g.ohw, bias[k]);
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      const float *b = columns(col, x + (n * g.c + gi * g.cg) * g.hw, g);
      // y_g [kg, ohw] = w_g [kg, crs] @ col [crs, ohw]
      if (bk::sgemm(false, false, g.kg, g.ohw, g.crs, 1.0f, w + gi * g.kg * g.crs, g.crs, b,
                    g.ohw, bias ? 1.0f : 0.0f, yn + gi * g.kg * g.ohw, g.ohw))
        return 1;
    }
  }
  return 0;
}

// Input gradient over images [n0, n1).
int input_images(float *dx, const float *dy, const float *w, const ConvGeom &g, int64_t n0,
                 int64_t n1) {
  const bool pw = conv_pointwise(g);
  float *col = nullptr;
  if (!pw && !(col = bk::scratch(0, (size_t)(g.crs * g.ohw)))) return 1;
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      float *dxg = dx + (n * g.c + gi * g.cg) * g.hw;
      const float *dyg = dy + (n * g.k + gi * g.kg) * g.ohw;
      const float *wg = w + gi * g.kg * g.crs;
      // dcol [crs, ohw] = w_g^T [crs, kg] @ dy_g [kg, ohw]
      if (bk::sgemm(true, false, g.crs, g.ohw, g.kg, 1.0f, wg, g.crs, dyg, g.ohw, 0.0f,
                    pw ? dxg : col, g.ohw))
        return 1;
      if (pw) continue;
      std::fill(dxg, dxg + g.cg * g.hw, 0.0f);
      bk::parallel_ranges(bk::threads_for(g.crs * g.ohw, bk::kParallelMin), g.cg, 1,
                          [&](int64_t lo, int64_t hi) {
                            col2im(dxg, col, g, lo, hi);
                            return 0;
                          });
    }
  }
  return 0;
}

// Weight gradient for rows [j0, j1) of [groups * crs] (columns of the [kg, crs] blocks
// of dw), summed over every image: each thread takes its own columns of dw and im2cols
// only the rows it needs.
int weight_rows(float *dw, const float *dy, const float *x, const ConvGeom &g, int64_t j0,
                int64_t j1) {
  const bool pw = conv_pointwise(g);
  float *col = nullptr;
  if (!pw && !(col = bk::scratch(0, (size_t)(std::min(j1 - j0, g.crs) * g.ohw)))) return 1;
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t gi = j0 / g.crs; gi * g.crs < j1; ++gi) {
      const int64_t lo = std::max(j0, gi * g.crs) - gi * g.crs;
      const int64_t hi = std::min(j1, (gi + 1) * g.crs) - gi * g.crs;
      const float *xg = x + (n * g.c + gi * g.cg) * g.hw;
      if (!pw) im2col_rows(col, xg, g, lo, hi);
      const float *b = pw ? xg + lo * g.hw : col;
      // dw_g [kg, lo:hi] += dy_g [kg, ohw] @ col[lo:hi]^T [ohw, hi - lo]
      if (bk::sgemm(false, true, g.kg, hi - lo, g.ohw, 1.0f, dy + (n * g.k + gi * g.kg) * g.ohw,
                    g.ohw, b, g.ohw, 1.0f, dw + gi * g.kg * g.crs + lo, g.crs))
        return 1;
    }
  }
  return 0;
}

// oneDNN takes a convolution only when no size is 0 (the built-in path handles those).
bool dnnl_takes(const ConvGeom &g) {
  return g.n > 0 && g.c > 0 && g.h > 0 && g.w > 0 && g.k > 0 && g.oh > 0 && g.ow > 0 &&
         bk::dnnl_on();
}

// NHWC operands (BK_LAYOUT_NHWC) run on oneDNN only: the built-in im2col + GEMM computes
// NCHW, and a caller without oneDNN permutes (core asks bk_cpu_use_dnnl(-1) first). A
// convolution with an empty operand has nothing for oneDNN to do: its NHWC output (the
// bias, or zeros) is written here. Returns -1 when oneDNN is to run it, else the result.
int nhwc_without_dnnl(const ConvGeom &g, float *y, const float *bias, const char *fn) {
  if (dnnl_takes(g)) return -1;
  if (!bk::dnnl_on())
    return bk::fail_status(BK_ERR_UNSUPPORTED,
                           "%s: NHWC (channels-last) convolution needs oneDNN, which is not in use in this thread "
                           "(bk_cpu_use_dnnl / bk_cpu_info): the built-in convolution computes NCHW only", fn);
  if (y) {  // forward into [n, oh, ow, k]
    const int64_t pixels = g.n * g.ohw;
    for (int64_t p = 0; p < pixels; ++p)
      for (int64_t k = 0; k < g.k; ++k) y[p * g.k + k] = bias ? bias[k] : 0.0f;
  }
  return 0;
}

}  // namespace

extern "C" int bk_conv2d_f32(float *y, const float *x, const float *w, const float *bias,
                             const bk_conv2d_geom *geom, void *) {
  ConvGeom g;
  if (conv_parse(g, geom, __func__)) return 1;
  const bool out_any = g.n > 0 && g.k > 0 && g.ohw > 0;
  BK_NOTNULL_IF(out_any, y);
  BK_NOTNULL_IF(out_any && g.hw > 0 && g.c > 0, x);
  BK_NOTNULL_IF(out_any && g.crs > 0, w);
  if (!out_any) return 0;
  if (g.nhwc)
    if (const int rc = nhwc_without_dnnl(g, y, bias, __func__); rc >= 0) return rc;
  if (dnnl_takes(g)) return bk::dnnl_conv(bk::kConvForward, g, x, w, y, bias, __func__);
  const int rc = conv_split(conv_threads(g), g.n, [&](int64_t lo, int64_t hi) {
    return forward_images(y, x, w, bias, g, lo, hi);
  });
  if (rc != 0) return bk::fail_status(BK_ERR_OUT_OF_MEMORY, "%s: out of memory", __func__);
  return 0;
}

extern "C" int bk_conv2d_backward_input_f32(float *dx, const float *dy, const float *w,
                                            const bk_conv2d_geom *geom, void *) {
  ConvGeom g;
  if (conv_parse(g, geom, __func__)) return 1;
  const bool in_any = g.n > 0 && g.c > 0 && g.hw > 0;
  BK_NOTNULL_IF(in_any, dx);
  BK_NOTNULL_IF(in_any && g.k > 0 && g.ohw > 0, dy);
  BK_NOTNULL_IF(in_any && g.k > 0, w);
  if (!in_any) return 0;
  if (g.nhwc && !dnnl_takes(g)) {  // dy or w empty: dx is zeros in either layout
    if (const int rc = nhwc_without_dnnl(g, nullptr, nullptr, __func__); rc > 0) return rc;
    std::fill(dx, dx + g.n * g.c * g.hw, 0.0f);
    return 0;
  }
  if (dnnl_takes(g)) return bk::dnnl_conv(bk::kConvBackwardData, g, dx, w, dy, nullptr, __func__);
  const int rc = conv_split(conv_threads(g), g.n, [&](int64_t lo, int64_t hi) {
    return input_images(dx, dy, w, g, lo, hi);
  });
  if (rc != 0) return bk::fail_status(BK_ERR_OUT_OF_MEMORY, "%s: out of memory", __func__);
  return 0;
}

extern "C" int bk_conv2d_backward_weight_f32(float *dw, const float *dy, const float *x,
                                             const bk_conv2d_geom *geom, void *) {
  ConvGeom g;
  if (conv_parse(g, geom, __func__)) return 1;
  const bool w_any = g.k > 0 && g.crs > 0;
  BK_NOTNULL_IF(w_any, dw);
  BK_NOTNULL_IF(w_any && g.n > 0 && g.ohw > 0, dy);
  BK_NOTNULL_IF(w_any && g.n > 0 && g.hw > 0, x);
  if (!w_any) return 0;
  if (g.nhwc && !dnnl_takes(g)) {  // x or dy empty: dw is zeros
    if (const int rc = nhwc_without_dnnl(g, nullptr, nullptr, __func__); rc > 0) return rc;
    std::fill(dw, dw + g.k * g.crs, 0.0f);
    return 0;
  }
  if (dnnl_takes(g))
    return bk::dnnl_conv(bk::kConvBackwardWeights, g, x, dw, dy, nullptr, __func__);
  std::fill(dw, dw + g.k * g.crs, 0.0f);
  if (g.ohw == 0) return 0;
  const int rc = conv_split(conv_threads(g), g.groups * g.crs, [&](int64_t lo, int64_t hi) {
    return weight_rows(dw, dy, x, g, lo, hi);
  });
  if (rc != 0) return bk::fail_status(BK_ERR_OUT_OF_MEMORY, "%s: out of memory", __func__);
  return 0;
}
