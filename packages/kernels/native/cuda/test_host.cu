// Host-side check of the CUDA library's per-element code against the CPU library,
// without a GPU: the pooling element functions (bagua_pool_math.h, over flat indices as
// the kernels call them; the CPU library walks rows), the strided
// elementwise offsets (strided_hd.cuh) and the whole conv2d orchestration
// (conv_impl.cuh: im2col/col2im, group/image batching, chunking, pointwise path,
// and the row-major to column-major GEMM mapping, run here against a reference
// GEMM with cuBLAS's column-major semantics and argument checks).
// Run by `make -C native/cuda check` once the CPU library is built.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bagua_kernels.h"
#include "bagua_pool_math.h"
#include "conv_impl.cuh"
#include "emu/reference_gemm.h"
#include "strided_hd.cuh"

namespace bk {
int fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "  (error) ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  return 1;
}
}  // namespace bk

using namespace bk;

static int failures = 0, checks = 0;

static unsigned rng_state = 12345;
static float frand() {
  rng_state = rng_state * 1664525u + 1013904223u;
  return (float)((rng_state >> 8) / 16777216.0) * 2.f - 1.f;
}
static int irand(int lo, int hi) {
  rng_state = rng_state * 1664525u + 1013904223u;
  return lo + (int)((rng_state >> 8) % (unsigned)(hi - lo + 1));
}
static std::vector<float> randv(size_t n) {
  std::vector<float> v(n);
  for (auto &x : v) x = frand();
  return v;
}

// |got - want| <= tol * (scale + 1e-30) elementwise, scale = sum of |terms| (or |want| when absent)
static void compare(const char *what, const float *got, const float *want, size_t n, double tol,
                    const float *scale = nullptr) {
  checks++;
  for (size_t i = 0; i < n; i++) {
    const double s = scale ? fabs((double)scale[i]) : fabs((double)want[i]);
    const double err = fabs((double)got[i] - (double)want[i]);
    const bool same = got[i] == want[i] || (got[i] != got[i] && want[i] != want[i]);  // incl. inf, NaN
    if (!same && !(err <= tol * s + 1e-30)) {
      if (failures++ < 20)
        fprintf(stderr, "FAIL %s: element %zu: got %.9g, want %.9g (|diff| %.3g, allowed %.3g)\n", what, i,
                (double)got[i], (double)want[i], err, tol * s);
      return;
    }
  }
}

static void compare_i(const char *what, const int32_t *got, const int32_t *want, size_t n) {
  checks++;
  for (size_t i = 0; i < n; i++)
    if (got[i] != want[i]) {
      if (failures++ < 20) fprintf(stderr, "FAIL %s: element %zu: got %d, want %d\n", what, i, got[i], want[i]);
      return;
    }
}

// ---- GEMM with cuBLAS's column-major semantics and its argument checks -------------
static int colmajor_ref(int ta, int tb, int m, int n, int k, const float *alpha, const float *A, int lda, long long sa,
                        const float *B, int ldb, long long sb, const float *beta, float *C, int ldc, long long sc,
                        int batch) {
  int st = reference_sgemm_strided_batched(ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
  if (st != 0)
    fprintf(stderr, "  (cuBLAS would refuse: ta %d tb %d m %d n %d k %d lda %d ldb %d ldc %d)\n", ta, tb, m, n, k,
            lda, ldb, ldc);
  return st;
}

struct HostExec {
  int64_t col_bytes;
  std::vector<float> col;
  float *scratch(int64_t bytes) {
    col.assign((size_t)(bytes / 4), NAN);  // unwritten columns would show up as NaN
    return col.data();
  }
  int fill(float *p, int64_t n, float v) {
    std::fill(p, p + n, v);
    return 0;
  }
  int bias_fill(float *y, const float *bias, int64_t k, int64_t ohw, int64_t total) {
    for (int64_t i = 0; i < total; i++) y[i] = bias[(i / ohw) % k];
    return 0;
  }
  int im2col(float *c, const float *x, const KGeom &g, uint32_t total) {
    for (uint32_t i = 0; i < total; i++) c[i] = im2col_at(i, x, g);
    return 0;
  }
  int col2im(float *dx, const float *c, const KGeom &g, uint32_t total) {
    for (uint32_t i = 0; i < total; i++) dx[i] = col2im_at(i, c, g);
    return 0;
  }
  int gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, int64_t sa,
           const float *b, int64_t ldb, int64_t sb, float beta, float *c, int64_t ldc, int64_t sc, int64_t batch) {
    if (m == 0 || n == 0 || batch == 0) return 0;  // as sgemm_strided_batched
    return gemm_rowmajor(colmajor_ref, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
  }
};

static void check_conv(int n, int c, int h, int w, int k, int r, int s, int stride, int pad, int dil, int groups,
                       bool bias, int64_t col_bytes) {
  const int eh = h + 2 * pad - dil * (r - 1) - 1, ew = w + 2 * pad - dil * (s - 1) - 1;
  if (eh < 0 || ew < 0) return;
  const int oh = eh / stride + 1, ow = ew / stride + 1;
  const bk_conv2d_geom gv = {(int32_t)sizeof(bk_conv2d_geom), n, c, h, w, k, r, s, oh, ow, stride, stride, pad, pad,
                             dil, dil, groups};
  const bk_conv2d_geom *geom = &gv;
  ConvGeom g;
  if (conv_parse(g, geom, "check_conv")) {
    failures++;
    return;
  }
  const size_t nx = (size_t)n * c * h * w, nw = (size_t)k * (c / groups) * r * s, ny = (size_t)n * k * oh * ow;
  auto x = randv(nx), wt = randv(nw), b = randv(k), dy = randv(ny);
  auto absv = [](std::vector<float> v) { for (auto &e : v) e = fabsf(e); return v; };
  auto ax = absv(x), aw = absv(wt), ab = absv(b), ady = absv(dy);
  char what[200];
  snprintf(what, sizeof what, "conv n%d c%d %dx%d k%d %dx%d s%d p%d d%d g%d%s chunk %lld", n, c, h, w, k, r, s, stride,
           pad, dil, groups, bias ? " bias" : "", (long long)col_bytes);
  HostExec e{col_bytes, {}};
  // forward
  std::vector<float> y(ny, NAN), yr(ny), ys(ny);
  if (conv2d_forward_impl(e, y.data(), x.data(), wt.data(), bias ? b.data() : nullptr, g, "fwd")) {
    failures++;
    fprintf(stderr, "FAIL %s: forward returned an error\n", what);
    return;
  }
  bk_conv2d_f32(yr.data(), x.data(), wt.data(), bias ? b.data() : nullptr, geom, nullptr);
  bk_conv2d_f32(ys.data(), ax.data(), aw.data(), bias ? ab.data() : nullptr, geom, nullptr);
  std::string f = std::string(what) + " forward";
  compare(f.c_str(), y.data(), yr.data(), ny, 1e-5, ys.data());
  // input gradient
  std::vector<float> dx(nx, NAN), dxr(nx), dxs(nx);
  if (conv2d_backward_input_impl(e, dx.data(), dy.data(), wt.data(), g, "bwd input")) {
    failures++;
    fprintf(stderr, "FAIL %s: backward input returned an error\n", what);
    return;
  }
  bk_conv2d_backward_input_f32(dxr.data(), dy.data(), wt.data(), geom, nullptr);
  bk_conv2d_backward_input_f32(dxs.data(), ady.data(), aw.data(), geom, nullptr);
  f = std::string(what) + " input grad";
  compare(f.c_str(), dx.data(), dxr.data(), nx, 1e-5, dxs.data());
  // weight gradient
  std::vector<float> dw(nw, NAN), dwr(nw), dws(nw);
  if (conv2d_backward_weight_impl(e, dw.data(), dy.data(), x.data(), g, "bwd weight")) {
    failures++;
    fprintf(stderr, "FAIL %s: backward weight returned an error\n", what);
    return;
  }
  bk_conv2d_backward_weight_f32(dwr.data(), dy.data(), x.data(), geom, nullptr);
  bk_conv2d_backward_weight_f32(dws.data(), ady.data(), ax.data(), geom, nullptr);
  f = std::string(what) + " weight grad";
  compare(f.c_str(), dw.data(), dwr.data(), nw, 1e-5, dws.data());
}

static void check_gemm(bool ta, bool tb, int m, int n, int k, int batch, int pad, float alpha, float beta) {
  const int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
  const int lda = ac + pad, ldb = bc + pad, ldc = n + pad;
  const int64_t sa = (int64_t)ar * lda, sb = (int64_t)br * ldb, sc = (int64_t)m * ldc;
  auto a = randv((size_t)std::max<int64_t>(1, batch * sa)), b = randv((size_t)std::max<int64_t>(1, batch * sb));
  auto c = randv((size_t)(batch * sc)), cr = c;
  HostExec e{0, {}};
  char what[160];
  snprintf(what, sizeof what, "gemm ta%d tb%d m%d n%d k%d batch%d pad%d", ta, tb, m, n, k, batch, pad);
  if (e.gemm(ta, tb, m, n, k, alpha, a.data(), lda, sa, b.data(), ldb, sb, beta, c.data(), ldc, sc, batch)) {
    failures++;
    fprintf(stderr, "FAIL %s: returned an error\n", what);
    return;
  }
  bk_gemm_f32(cr.data(), a.data(), b.data(), ta, tb, m, n, k, alpha, beta, lda, ldb, ldc, batch, sa, sb, sc, nullptr);
  std::vector<float> scale(c.size(), (float)(k + 2));  // |terms| <= 1 each
  compare(what, c.data(), cr.data(), c.size(), 1e-6, scale.data());
}

static void check_pool(int planes, int h, int w, int kh, int kw, int stride, int pad, int dil, bool include_pad) {
  const int eh = h + 2 * pad - dil * (kh - 1) - 1, ew = w + 2 * pad - dil * (kw - 1) - 1;
  if (eh < 0 || ew < 0) return;
  const int oh = eh / stride + 1, ow = ew / stride + 1;
  const bk_pool2d_geom gv = {(int32_t)sizeof(bk_pool2d_geom), planes, h, w, oh, ow, kh, kw, stride, stride, pad, pad,
                             dil, dil, include_pad ? 1 : 0};
  const bk_pool2d_geom *geom = &gv;
  PGeom g{};
  g.planes = planes; g.h = h; g.w = w; g.oh = oh; g.ow = ow; g.kh = kh; g.kw = kw; g.sh = stride; g.sw = stride;
  g.ph = pad; g.pw = pad; g.dh = dil; g.dw = dil; g.include_pad = include_pad;
  const size_t nx = (size_t)planes * h * w, ny = (size_t)planes * oh * ow;
  auto x = randv(nx), dy = randv(ny);
  if (nx > 5) x[5] = NAN;  // NaN wins its windows
  char what[160];
  snprintf(what, sizeof what, "pool %dx%dx%d k%dx%d s%d p%d d%d%s", planes, h, w, kh, kw, stride, pad, dil,
           include_pad ? " include_pad" : "");
  std::vector<float> y(ny), yr(ny);
  std::vector<int32_t> ind(ny), indr(ny);
  for (size_t i = 0; i < ny; i++) max_pool_at((int64_t)i, y.data(), ind.data(), x.data(), g);
  bk_max_pool2d_f32(yr.data(), indr.data(), x.data(), geom, nullptr);
  std::string f = std::string(what) + " max";
  compare(f.c_str(), y.data(), yr.data(), ny, 0);
  compare_i((f + " indices").c_str(), ind.data(), indr.data(), ny);
  std::vector<float> dx(nx), dxr(nx), ones(nx, (float)(kh * kw) * 2);
  for (size_t i = 0; i < nx; i++) dx[i] = max_pool_backward_at((int64_t)i, dy.data(), indr.data(), g);
  bk_max_pool2d_backward_f32(dxr.data(), dy.data(), indr.data(), geom, nullptr);
  compare((f + " backward").c_str(), dx.data(), dxr.data(), nx, 1e-6, ones.data());
  for (size_t i = 0; i < ny; i++) y[i] = avg_pool_at((int64_t)i, x.data(), g);
  bk_avg_pool2d_f32(yr.data(), x.data(), geom, nullptr);
  f = std::string(what) + " avg";
  compare(f.c_str(), y.data(), yr.data(), ny, 0);  // same order of additions, same divisor
  for (size_t i = 0; i < nx; i++) dx[i] = avg_pool_backward_at((int64_t)i, dy.data(), g);
  bk_avg_pool2d_backward_f32(dxr.data(), dy.data(), geom, nullptr);
  compare((f + " backward").c_str(), dx.data(), dxr.data(), nx, 1e-6, ones.data());
}

static void check_adaptive(int planes, int h, int w, int oh, int ow) {
  const bk_pool2d_geom gv = {(int32_t)sizeof(bk_pool2d_geom), planes, h, w, oh, ow, 1, 1, 1, 1, 0, 0, 1, 1, 1};
  const bk_pool2d_geom *geom = &gv;
  PGeom g{};
  g.planes = planes; g.h = h; g.w = w; g.oh = oh; g.ow = ow;
  const size_t nx = (size_t)planes * h * w, ny = (size_t)planes * oh * ow;
  auto x = randv(nx), dy = randv(ny);
  std::vector<float> y(ny), yr(ny), dx(nx), dxr(nx), scale(nx, 2.f * ((h + oh - 1) / oh + 1) * ((w + ow - 1) / ow + 1));
  char what[120];
  snprintf(what, sizeof what, "adaptive %dx%dx%d -> %dx%d", planes, h, w, oh, ow);
  for (size_t i = 0; i < ny; i++) y[i] = adaptive_avg_at((int64_t)i, x.data(), g);
  bk_adaptive_avg_pool2d_f32(yr.data(), x.data(), geom, nullptr);
  compare(what, y.data(), yr.data(), ny, 0);
  for (size_t i = 0; i < nx; i++) dx[i] = adaptive_avg_backward_at((int64_t)i, dy.data(), g);
  bk_adaptive_avg_pool2d_backward_f32(dxr.data(), dy.data(), geom, nullptr);
  compare((std::string(what) + " backward").c_str(), dx.data(), dxr.data(), nx, 1e-6, scale.data());
}

// binary and strided copy through collapse + offsets (the kernels' general path)
static void check_strided() {
  const int ndim = irand(0, 6);
  int64_t shape[8], sa[8], sb[8];
  int64_t numel = 1;
  for (int d = 0; d < ndim; d++) {
    shape[d] = irand(1, 4);
    numel *= shape[d];
  }
  // a: a permutation of a contiguous layout, or broadcast; b: broadcast some dimensions
  int64_t ea = 1, eb = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    sa[d] = irand(0, 4) == 0 ? 0 : ea;
    if (sa[d]) ea *= shape[d];
    sb[d] = irand(0, 2) == 0 ? 0 : eb;
    if (sb[d]) eb *= shape[d];
  }
  if (ndim >= 2 && irand(0, 1)) {  // transpose two dimensions of a
    const int d0 = irand(0, ndim - 1), d1 = irand(0, ndim - 1);
    std::swap(sa[d0], sa[d1]);
    std::swap(shape[d0], shape[d1]);
    // keep sb valid for the new shape: recompute as contiguous-or-broadcast
    int64_t e = 1;
    for (int d = ndim - 1; d >= 0; d--) {
      sb[d] = sb[d] ? e : 0;
      if (sb[d]) e *= shape[d];
    }
    eb = e;
    e = 1;
    int64_t mx = 0;
    for (int d = 0; d < ndim; d++) mx += (shape[d] - 1) * sa[d];
    ea = mx + 1;
  }
  auto a = randv((size_t)ea), b = randv((size_t)eb);
  for (auto &v : b) v = v * 0.5f + 1.5f;  // no division by ~0
  BkShape s{};
  s.ndim = ndim;
  for (int d = 0; d < ndim; d++) {
    s.size[d] = shape[d];
    s.stride_a[d] = sa[d];
    s.stride_b[d] = sb[d];
  }
  collapse(s, 2);
  std::vector<float> out((size_t)numel), ref((size_t)numel);
  for (int op = 0; op < 4; op++) {
    for (int64_t i = 0; i < numel; i++) {
      int64_t oa, ob;
      offsets<uint32_t>(s, (uint32_t)i, oa, ob);
      const float x = a[(size_t)oa], y = b[(size_t)ob];
      out[(size_t)i] = op == 0 ? x + y : op == 1 ? x - y : op == 2 ? x * y : x / y;
    }
    bk_binary_f32(op, ref.data(), a.data(), sa, b.data(), sb, shape, ndim, nullptr);
    compare("binary (collapsed offsets)", out.data(), ref.data(), (size_t)numel, 0);
  }
  BkShape c{};
  c.ndim = ndim;
  for (int d = 0; d < ndim; d++) {
    c.size[d] = shape[d];
    c.stride_a[d] = sa[d];
  }
  collapse(c, 1);
  for (int64_t i = 0; i < numel; i++) {
    int64_t oa, ob;
    offsets<int64_t>(c, i, oa, ob);
    out[(size_t)i] = a[(size_t)oa];
  }
  bk_strided_copy_f32(ref.data(), a.data(), shape, sa, ndim, nullptr);
  compare("strided copy (collapsed offsets)", out.data(), ref.data(), (size_t)numel, 0);
}

int main() {
  // GEMM mapping: every transpose, padding, batches, k = 0
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      check_gemm(ta, tb, 7, 5, 9, 1, 0, 1.f, 0.f);
      check_gemm(ta, tb, 6, 11, 3, 3, 2, -0.5f, 0.75f);
      check_gemm(ta, tb, 4, 3, 0, 2, 0, 1.f, 0.5f);
    }
  // conv2d: the shapes of the GPU parity tests, plus chunked columns and random ones
  const int64_t big = int64_t(256) << 20, tiny = 4096;
  for (int64_t cb : {big, tiny}) {
    check_conv(3, 8, 12, 10, 16, 3, 3, 1, 1, 1, 1, false, cb);
    check_conv(3, 8, 12, 10, 16, 3, 3, 1, 1, 1, 1, true, cb);
    check_conv(2, 3, 32, 32, 8, 7, 7, 2, 3, 1, 1, true, cb);
    check_conv(4, 16, 7, 9, 12, 1, 1, 1, 0, 1, 1, false, cb);
    check_conv(2, 16, 8, 8, 12, 1, 1, 2, 0, 1, 1, true, cb);
    check_conv(2, 8, 9, 9, 6, 3, 3, 1, 1, 1, 2, false, cb);
    check_conv(3, 12, 10, 10, 12, 3, 3, 1, 1, 1, 12, true, cb);
    check_conv(2, 4, 15, 13, 5, 3, 3, 1, 2, 2, 1, false, cb);
    check_conv(5, 6, 6, 6, 6, 3, 3, 1, 1, 1, 3, false, cb);  // groups < images
  }
  for (int t = 0; t < 60; t++) {
    const int groups = irand(1, 3);
    check_conv(irand(1, 4), groups * irand(1, 3), irand(1, 9), irand(1, 9), groups * irand(1, 3), irand(1, 3),
               irand(1, 3), irand(1, 3), irand(0, 2), irand(1, 2), groups, irand(0, 1), irand(0, 1) ? big : 2048);
  }
  // pooling
  check_pool(6, 15, 14, 3, 3, 2, 1, 1, true);
  check_pool(6, 15, 14, 3, 3, 2, 1, 1, false);
  check_pool(5, 8, 8, 2, 2, 2, 0, 1, true);
  check_pool(4, 11, 9, 3, 3, 1, 2, 2, false);
  check_pool(3, 9, 9, 3, 3, 1, 1, 2, true);
  for (int t = 0; t < 80; t++) {
    const int k = irand(1, 4);
    check_pool(irand(1, 3), irand(1, 12), irand(1, 12), k, irand(1, 4), irand(1, 3), irand(0, k / 2), irand(1, 2),
               irand(0, 1));
  }
  check_adaptive(6, 7, 7, 3, 3);
  check_adaptive(6, 56, 56, 1, 1);
  check_adaptive(6, 10, 13, 4, 5);
  check_adaptive(6, 5, 5, 7, 7);
  for (int t = 0; t < 40; t++) check_adaptive(irand(1, 3), irand(1, 15), irand(1, 15), irand(1, 9), irand(1, 9));
  // strided elementwise
  for (int t = 0; t < 300; t++) check_strided();

  if (failures) {
    fprintf(stderr, "test_host: %d failure(s) in %d comparisons\n", failures, checks);
    return 1;
  }
  printf("test_host: %d comparisons of the CUDA library's per-element code with the CPU library: all match\n", checks);
  return 0;
}
