// conv2d as im2col + GEMM, written once over an executor E that runs the steps:
// conv.cu's executor launches CUDA kernels and cuBLAS, test_host.cu's runs the
// same element functions and a column-major GEMM on the CPU, so the layout and
// batching logic below is checked against the CPU library without a GPU.
//
// E provides:
//   int64_t col_bytes;                                 column scratch budget
//   float *scratch(int64_t bytes);                     nullptr on failure (error set)
//   int fill(float *p, int64_t n, float v);
//   int bias_fill(float *y, const float *bias, int64_t k, int64_t ohw, int64_t total);
//   int im2col(float *col, const float *x, const KGeom &g, uint32_t total);
//   int col2im(float *dx, const float *col, const KGeom &g, uint32_t total);
//   int gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
//            const float *a, int64_t lda, int64_t sa, const float *b, int64_t ldb, int64_t sb,
//            float beta, float *c, int64_t ldc, int64_t sc, int64_t batch);   row-major, batched
#pragma once

#include <stdint.h>

#include "bagua_bn_math.h"  // BK_HD
#include "bagua_geom.h"     // ConvGeom, conv_parse, conv_pointwise

namespace bk {

#define BK_CONV_TRY(expr)          \
  do {                             \
    int rc_ = (expr);              \
    if (rc_ != 0) return rc_;      \
  } while (0)

// Kernel-side geometry: 32-bit (a chunk of columns is < 2^31 elements).
struct KGeom {
  int c, h, w, r, s, oh, ow, sh, sw, ph, pw, dh, dw;
};
inline KGeom conv_kgeom(const ConvGeom &g) {
  return KGeom{(int)g.c, (int)g.h, (int)g.w, (int)g.r, (int)g.s, (int)g.oh, (int)g.ow,
               (int)g.sh, (int)g.sw, (int)g.ph, (int)g.pw, (int)g.dh, (int)g.dw};
}

// Column layout: col[img][(ci, ky, kx)][(oy, ox)] over all c channels (group gi's
// rows are [gi * crs, (gi + 1) * crs)); x[img][ci][iy][ix] with
// iy = oy*sh - ph + ky*dh, 0 outside the image.
BK_HD inline float im2col_at(uint32_t i, const float *x, const KGeom &g) {
  const uint32_t ohw = g.oh * g.ow, rs = g.r * g.s;
  const uint32_t p = i % ohw, row = i / ohw;
  const uint32_t ox = p % g.ow, oy = p / g.ow;
  const uint32_t kk = row % rs, ci_all = row / rs;  // ci_all = img * c + ci
  const uint32_t kx = kk % g.s, ky = kk / g.s;
  const int iy = (int)(oy * g.sh) - g.ph + (int)(ky * g.dh);
  const int ix = (int)(ox * g.sw) - g.pw + (int)(kx * g.dw);
  if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) return 0.f;
  return x[(size_t)ci_all * g.h * g.w + (size_t)iy * g.w + ix];
}

// The adjoint: dx[img][ci][iy][ix] = sum of the column entries im2col copied it to
// (a gather: every input element is written once, no atomics).
BK_HD inline float col2im_at(uint32_t i, const float *col, const KGeom &g) {
  const uint32_t ohw = g.oh * g.ow, rs = g.r * g.s;
  const uint32_t ix = i % g.w, t = i / g.w;
  const uint32_t iy = t % g.h, ci_all = t / g.h;
  const float *cbase = col + (size_t)ci_all * rs * ohw;
  float acc = 0.f;
  for (int ky = 0; ky < g.r; ky++) {
    const int ty = (int)iy + g.ph - ky * g.dh;  // = oy * sh
    if (ty < 0 || ty % g.sh) continue;
    const int oy = ty / g.sh;
    if (oy >= g.oh) continue;
    for (int kx = 0; kx < g.s; kx++) {
      const int tx = (int)ix + g.pw - kx * g.dw;
      if (tx < 0 || tx % g.sw) continue;
      const int ox = tx / g.sw;
      if (ox >= g.ow) continue;
      acc += cbase[(size_t)(ky * g.s + kx) * ohw + oy * g.ow + ox];
    }
  }
  return acc;
}

// Images per chunk of column scratch (at least one).
inline int64_t conv_chunk_images(const ConvGeom &g, int64_t col_bytes) {
  const int64_t per = g.c * g.r * g.s * g.ohw * (int64_t)sizeof(float);
  if (per <= 0) return g.n;
  const int64_t nb = col_bytes / per;
  return nb < 1 ? 1 : (nb > g.n ? g.n : nb);
}

inline int conv_check_chunk(const ConvGeom &g, int64_t nb, const char *fn) {
  const int64_t cols = nb * g.c * g.r * g.s * g.ohw, ins = nb * g.c * g.hw;
  if (cols >= (int64_t(1) << 31) || ins >= (int64_t(1) << 31))
    return fail("%s: one image's columns (%lld floats) exceed 2^31 elements", fn,
                (long long)(g.c * g.r * g.s * g.ohw));
  return 0;
}

// y_g = w_g @ B_g for `nb` images; B points at image 0, group 0 of a layout with
// the given image and group strides (columns, or the input itself when pointwise).
// Batched over images (one call per group) or over groups (one call per image),
// whichever makes fewer calls.
template <class E>
int conv_gemm_forward(E &e, const ConvGeom &g, const float *w, const float *b, int64_t b_img,
                      int64_t b_group, float *y, int64_t nb, float beta) {
  if (g.groups <= nb) {
    for (int64_t gi = 0; gi < g.groups; gi++)
      BK_CONV_TRY(e.gemm(false, false, g.kg, g.ohw, g.crs, 1.f, w + gi * g.kg * g.crs, g.crs, 0,
                         b + gi * b_group, g.ohw, b_img, beta, y + gi * g.kg * g.ohw, g.ohw, g.k * g.ohw, nb));
  } else {
    for (int64_t i = 0; i < nb; i++)
      BK_CONV_TRY(e.gemm(false, false, g.kg, g.ohw, g.crs, 1.f, w, g.crs, g.kg * g.crs, b + i * b_img,
                         g.ohw, b_group, beta, y + i * g.k * g.ohw, g.ohw, g.kg * g.ohw, g.groups));
  }
  return 0;
}

// out_g = w_g^T @ dy_g for `nb` images, into a layout with the given strides.
template <class E>
int conv_gemm_backward_input(E &e, const ConvGeom &g, const float *w, const float *dy, float *out,
                             int64_t out_img, int64_t out_group, int64_t nb) {
  if (g.groups <= nb) {
    for (int64_t gi = 0; gi < g.groups; gi++)
      BK_CONV_TRY(e.gemm(true, false, g.crs, g.ohw, g.kg, 1.f, w + gi * g.kg * g.crs, g.crs, 0,
                         dy + gi * g.kg * g.ohw, g.ohw, g.k * g.ohw, 0.f, out + gi * out_group, g.ohw,
                         out_img, nb));
  } else {
    for (int64_t i = 0; i < nb; i++)
      BK_CONV_TRY(e.gemm(true, false, g.crs, g.ohw, g.kg, 1.f, w, g.crs, g.kg * g.crs, dy + i * g.k * g.ohw,
                         g.ohw, g.kg * g.ohw, 0.f, out + i * out_img, g.ohw, out_group, g.groups));
  }
  return 0;
}

// The column buffer of the chunked im2col / col2im paths: up to `nb_max` images of
// `col_img` floats each, in the library's scratch, and the kernels' geometry.
struct ColChunks {
  int64_t nb_max, col_img;
  float *col;
  KGeom kg;
  // the images of the chunk starting at n0 (of n)
  int64_t images(int64_t n0, int64_t n) const { return n - n0 < nb_max ? n - n0 : nb_max; }
};

template <class E>
int conv_col_chunks(E &e, const ConvGeom &g, const char *fn, ColChunks &c) {
  c.nb_max = conv_chunk_images(g, e.col_bytes);
  c.col_img = g.c * g.r * g.s * g.ohw;
  c.kg = conv_kgeom(g);
  BK_CONV_TRY(conv_check_chunk(g, c.nb_max, fn));
  c.col = e.scratch(c.nb_max * c.col_img * (int64_t)sizeof(float));
  return c.col ? 0 : 1;
}

template <class E>
int conv2d_forward_impl(E &e, float *y, const float *x, const float *w, const float *bias, const ConvGeom &g,
                        const char *fn) {
  if (!(g.n > 0 && g.k > 0 && g.ohw > 0)) return 0;
  if (!y || (!x && g.hw > 0 && g.c > 0) || (!w && g.crs > 0)) return fail("%s: null pointer", fn);
  if (bias) BK_CONV_TRY(e.bias_fill(y, bias, g.k, g.ohw, g.n * g.k * g.ohw));
  const float beta = bias ? 1.f : 0.f;  // the GEMM accumulates onto the bias
  if (g.crs == 0) return bias ? 0 : e.fill(y, g.n * g.k * g.ohw, 0.f);
  if (conv_pointwise(g)) return conv_gemm_forward(e, g, w, x, g.c * g.hw, g.cg * g.hw, y, g.n, beta);
  ColChunks cc;
  BK_CONV_TRY(conv_col_chunks(e, g, fn, cc));
  for (int64_t n0 = 0; n0 < g.n; n0 += cc.nb_max) {
    const int64_t nb = cc.images(n0, g.n);
    BK_CONV_TRY(e.im2col(cc.col, x + n0 * g.c * g.hw, cc.kg, (uint32_t)(nb * cc.col_img)));
    BK_CONV_TRY(conv_gemm_forward(e, g, w, cc.col, cc.col_img, g.crs * g.ohw, y + n0 * g.k * g.ohw, nb, beta));
  }
  return 0;
}

template <class E>
int conv2d_backward_input_impl(E &e, float *dx, const float *dy, const float *w, const ConvGeom &g,
                               const char *fn) {
  if (!(g.n > 0 && g.c > 0 && g.hw > 0)) return 0;
  if (!dx) return fail("%s: dx is NULL", fn);
  if (g.k == 0 || g.ohw == 0) return e.fill(dx, g.n * g.c * g.hw, 0.f);
  if (!dy || !w) return fail("%s: null pointer", fn);
  if (conv_pointwise(g)) return conv_gemm_backward_input(e, g, w, dy, dx, g.c * g.hw, g.cg * g.hw, g.n);
  ColChunks cc;
  BK_CONV_TRY(conv_col_chunks(e, g, fn, cc));
  for (int64_t n0 = 0; n0 < g.n; n0 += cc.nb_max) {
    const int64_t nb = cc.images(n0, g.n);
    BK_CONV_TRY(conv_gemm_backward_input(e, g, w, dy + n0 * g.k * g.ohw, cc.col, cc.col_img, g.crs * g.ohw, nb));
    BK_CONV_TRY(e.col2im(dx + n0 * g.c * g.hw, cc.col, cc.kg, (uint32_t)(nb * g.c * g.hw)));
  }
  return 0;
}

// dw_g [kg, crs] (+)= dy_g [kg, ohw] @ cols_g^T [ohw, crs], one image at a time,
// all groups of an image in one batched call; the first image overwrites.
template <class E>
int conv2d_backward_weight_impl(E &e, float *dw, const float *dy, const float *x, const ConvGeom &g,
                                const char *fn) {
  if (!(g.k > 0 && g.crs > 0)) return 0;
  if (!dw) return fail("%s: dw is NULL", fn);
  if (g.n == 0 || g.ohw == 0) return e.fill(dw, g.k * g.crs, 0.f);
  if (!dy || !x) return fail("%s: null pointer", fn);
  const bool pw = conv_pointwise(g);
  ColChunks cc{g.n, 0, nullptr, conv_kgeom(g)};  // pointwise: the input planes are the columns, all images at once
  if (!pw) BK_CONV_TRY(conv_col_chunks(e, g, fn, cc));
  for (int64_t n0 = 0; n0 < g.n; n0 += cc.nb_max) {
    const int64_t nb = cc.images(n0, g.n);
    const float *b = x + n0 * g.c * g.hw;
    int64_t b_img = g.c * g.hw, b_group = g.cg * g.hw;
    if (!pw) {
      BK_CONV_TRY(e.im2col(cc.col, b, cc.kg, (uint32_t)(nb * cc.col_img)));
      b = cc.col;
      b_img = cc.col_img;
      b_group = g.crs * g.ohw;
    }
    for (int64_t i = 0; i < nb; i++) {
      const float beta = (n0 + i) == 0 ? 0.f : 1.f;
      BK_CONV_TRY(e.gemm(false, true, g.kg, g.crs, g.ohw, 1.f, dy + (n0 + i) * g.k * g.ohw, g.ohw, g.kg * g.ohw,
                         b + i * b_img, g.ohw, b_group, beta, dw, g.crs, g.kg * g.crs, g.groups));
    }
  }
  return 0;
}

// Row-major C = alpha op(A) op(B) + beta C through a column-major GEMM
// (cuBLAS's convention): C^T = op(B)^T op(A)^T, i.e. swap the operands and
// the roles of m and n; no copies. `colmajor` has cublasSgemmStridedBatched's
// arguments after the handle (ops as 0 = N, 1 = T).
template <class ColMajor>
int gemm_rowmajor(ColMajor colmajor, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                  float alpha, const float *a, int64_t lda, int64_t stride_a, const float *b, int64_t ldb,
                  int64_t stride_b, float beta, float *c, int64_t ldc, int64_t stride_c, int64_t batch) {
  // With k == 0 the leading dimensions may legitimately be 0; cuBLAS wants >= 1.
  const int ilda = (int)(lda < 1 ? 1 : lda), ildb = (int)(ldb < 1 ? 1 : ldb);
  return colmajor(trans_b ? 1 : 0, trans_a ? 1 : 0, (int)n, (int)m, (int)k, &alpha, b, ildb, (long long)stride_b, a,
                  ilda, (long long)stride_a, &beta, c, (int)ldc, (long long)stride_c, (int)batch);
}

}  // namespace bk
