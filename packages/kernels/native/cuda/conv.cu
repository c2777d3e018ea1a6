// conv2d as im2col + cuBLAS GEMM, and its two backward kernels (col2im gathers,
// so the input gradient needs no atomics and is deterministic).
#include "common.cuh"

namespace bk {
namespace {

constexpr int kThreads = 256;
// Column scratch is bounded: images are processed in chunks that fit.
constexpr int64_t kColBytes = int64_t(256) << 20;

struct Geom {
  int64_t n, c, h, w, k, r, s, oh, ow, sh, sw, ph, pw, dh, dw, groups;
  int64_t cg, kg, crs, ohw, hw;
};

int parse(Geom &g, const int32_t *geom, const char *fn) {
  if (!geom) return fail("%s: geom is NULL", fn);
  g.n = geom[0]; g.c = geom[1]; g.h = geom[2]; g.w = geom[3]; g.k = geom[4];
  g.r = geom[5]; g.s = geom[6]; g.oh = geom[7]; g.ow = geom[8];
  g.sh = geom[9]; g.sw = geom[10]; g.ph = geom[11]; g.pw = geom[12];
  g.dh = geom[13]; g.dw = geom[14]; g.groups = geom[15];
  if (g.n < 0 || g.c < 0 || g.h < 0 || g.w < 0 || g.k < 0 || g.oh < 0 || g.ow < 0)
    return fail("%s: sizes must be >= 0 (n %lld, c %lld, h %lld, w %lld, k %lld, oh %lld, ow %lld)",
                fn, (long long)g.n, (long long)g.c, (long long)g.h, (long long)g.w, (long long)g.k,
                (long long)g.oh, (long long)g.ow);
  if (g.r < 1 || g.s < 1 || g.sh < 1 || g.sw < 1 || g.dh < 1 || g.dw < 1 || g.groups < 1)
    return fail("%s: kernel size, stride, dilation and groups must be >= 1", fn);
  if (g.ph < 0 || g.pw < 0) return fail("%s: padding must be >= 0", fn);
  if (g.c % g.groups || g.k % g.groups)
    return fail("%s: channels in (%lld) and out (%lld) must be divisible by groups (%lld)", fn,
                (long long)g.c, (long long)g.k, (long long)g.groups);
  const int64_t eh = g.h + 2 * g.ph - g.dh * (g.r - 1) - 1, ew = g.w + 2 * g.pw - g.dw * (g.s - 1) - 1;
  const int64_t xoh = eh < 0 ? 0 : eh / g.sh + 1, xow = ew < 0 ? 0 : ew / g.sw + 1;
  if (g.oh != xoh || g.ow != xow)
    return fail("%s: output size %lldx%lld does not match the geometry (expected %lldx%lld)", fn,
                (long long)g.oh, (long long)g.ow, (long long)xoh, (long long)xow);
  g.cg = g.c / g.groups;
  g.kg = g.k / g.groups;
  g.crs = g.cg * g.r * g.s;
  g.ohw = g.oh * g.ow;
  g.hw = g.h * g.w;
  return 0;
}

bool pointwise(const Geom &g) {
  return g.r == 1 && g.s == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

// Kernel-side geometry: 32-bit (a chunk of columns is < 2^31 elements).
struct KGeom {
  int c, h, w, r, s, oh, ow, sh, sw, ph, pw, dh, dw;
};
KGeom kgeom(const Geom &g) {
  return KGeom{(int)g.c, (int)g.h, (int)g.w, (int)g.r, (int)g.s, (int)g.oh, (int)g.ow,
               (int)g.sh, (int)g.sw, (int)g.ph, (int)g.pw, (int)g.dh, (int)g.dw};
}

// col[img][(ci, ky, kx)][(oy, ox)] = x[img][ci][oy*sh - ph + ky*dh][ox*sw - pw + kx*dw], 0 outside.
__global__ void __launch_bounds__(kThreads)
im2col_kernel(float *__restrict__ col, const float *__restrict__ x, KGeom g, uint32_t total) {
  const uint32_t ohw = g.oh * g.ow, rs = g.r * g.s;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    uint32_t p = i % ohw, row = i / ohw;
    uint32_t ox = p % g.ow, oy = p / g.ow;
    uint32_t kk = row % rs, ci_all = row / rs;  // ci_all = img * c + ci
    uint32_t kx = kk % g.s, ky = kk / g.s;
    int iy = (int)(oy * g.sh) - g.ph + (int)(ky * g.dh);
    int ix = (int)(ox * g.sw) - g.pw + (int)(kx * g.dw);
    float v = 0.f;
    if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
      v = x[(size_t)ci_all * g.h * g.w + (size_t)iy * g.w + ix];
    col[i] = v;
  }
}

// dx[img][ci][iy][ix] = sum of the column entries im2col copied it to.
__global__ void __launch_bounds__(kThreads)
col2im_kernel(float *__restrict__ dx, const float *__restrict__ col, KGeom g, uint32_t total) {
  const uint32_t ohw = g.oh * g.ow, rs = g.r * g.s;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    uint32_t ix = i % g.w, t = i / g.w;
    uint32_t iy = t % g.h, ci_all = t / g.h;
    const float *cbase = col + (size_t)ci_all * rs * ohw;
    float acc = 0.f;
    for (int ky = 0; ky < g.r; ky++) {
      int ty = (int)iy + g.ph - ky * g.dh;  // = oy * sh
      if (ty < 0 || ty % g.sh) continue;
      int oy = ty / g.sh;
      if (oy >= g.oh) continue;
      for (int kx = 0; kx < g.s; kx++) {
        int tx = (int)ix + g.pw - kx * g.dw;
        if (tx < 0 || tx % g.sw) continue;
        int ox = tx / g.sw;
        if (ox >= g.ow) continue;
        acc += cbase[(size_t)(ky * g.s + kx) * ohw + oy * g.ow + ox];
      }
    }
    dx[i] = acc;
  }
}

__global__ void bias_fill_kernel(float *y, const float *bias, int64_t k, int64_t ohw, int64_t total) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = bias[(i / ohw) % k];
}

// Images per chunk of column scratch (at least one).
int64_t chunk_images(const Geom &g) {
  int64_t per = g.c * g.r * g.s * g.ohw * (int64_t)sizeof(float);
  if (per <= 0) return g.n;
  int64_t nb = kColBytes / per;
  return nb < 1 ? 1 : (nb > g.n ? g.n : nb);
}

int check_chunk(const Geom &g, int64_t nb, const char *fn) {
  int64_t cols = nb * g.c * g.r * g.s * g.ohw, ins = nb * g.c * g.hw;
  BK_REQUIRE(cols < (int64_t(1) << 31) && ins < (int64_t(1) << 31),
             "%s: one image's columns (%lld floats) exceed 2^31 elements", fn,
             (long long)(g.c * g.r * g.s * g.ohw));
  return 0;
}

// y_g = w_g @ cols_g for `nb` images; B points at image 0, group 0 of a
// [img][groups][rows_b][ohw] layout with rows_b rows per group.
int gemm_forward(cudaStream_t st, const Geom &g, const float *w, const float *b, int64_t b_img_stride,
                 int64_t b_group_stride, float *y, int64_t nb, float beta) {
  if (g.groups <= nb) {
    for (int64_t gi = 0; gi < g.groups; gi++)
      BK_TRY(sgemm_strided_batched(st, false, false, g.kg, g.ohw, g.crs, 1.f, w + gi * g.kg * g.crs,
                                   g.crs, 0, b + gi * b_group_stride, g.ohw, b_img_stride, beta,
                                   y + gi * g.kg * g.ohw, g.ohw, g.k * g.ohw, nb));
  } else {
    for (int64_t i = 0; i < nb; i++)
      BK_TRY(sgemm_strided_batched(st, false, false, g.kg, g.ohw, g.crs, 1.f, w, g.crs,
                                   g.kg * g.crs, b + i * b_img_stride, g.ohw, b_group_stride, beta,
                                   y + i * g.k * g.ohw, g.ohw, g.kg * g.ohw, g.groups));
  }
  return 0;
}

// dcols_g = w_g^T @ dy_g for `nb` images, written as [img][groups][crs][ohw] with strides given.
int gemm_backward_input(cudaStream_t st, const Geom &g, const float *w, const float *dy, float *out,
                        int64_t out_img_stride, int64_t out_group_stride, int64_t nb) {
  if (g.groups <= nb) {
    for (int64_t gi = 0; gi < g.groups; gi++)
      BK_TRY(sgemm_strided_batched(st, true, false, g.crs, g.ohw, g.kg, 1.f, w + gi * g.kg * g.crs,
                                   g.crs, 0, dy + gi * g.kg * g.ohw, g.ohw, g.k * g.ohw, 0.f,
                                   out + gi * out_group_stride, g.ohw, out_img_stride, nb));
  } else {
    for (int64_t i = 0; i < nb; i++)
      BK_TRY(sgemm_strided_batched(st, true, false, g.crs, g.ohw, g.kg, 1.f, w, g.crs, g.kg * g.crs,
                                   dy + i * g.k * g.ohw, g.ohw, g.kg * g.ohw, 0.f,
                                   out + i * out_img_stride, g.ohw, out_group_stride, g.groups));
  }
  return 0;
}

}  // namespace
}  // namespace bk

using namespace bk;

extern "C" {

BK_API int bk_conv2d_f32(float *y, const float *x, const float *w, const float *bias,
                         const int32_t *geom, void *stream) {
  Geom g = {};
  BK_TRY(parse(g, geom, "bk_conv2d_f32"));
  const bool out_any = g.n > 0 && g.k > 0 && g.ohw > 0;
  if (!out_any) return 0;
  BK_REQUIRE(y && (x || g.hw == 0 || g.c == 0) && (w || g.crs == 0), "bk_conv2d_f32: null pointer");
  cudaStream_t st = as_stream(stream);
  int dev;
  BK_TRY(current_device(&dev));
  if (bias) {
    int64_t total = g.n * g.k * g.ohw;
    bias_fill_kernel<<<grid_for(total, kThreads, dev), kThreads, 0, st>>>(y, bias, g.k, g.ohw, total);
    BK_TRY(check_launch("conv2d bias"));
  }
  const float beta = bias ? 1.f : 0.f;
  if (g.crs == 0) return bias ? 0 : bk_fill_f32(y, g.n * g.k * g.ohw, 0.f, stream);
  if (pointwise(g))
    return gemm_forward(st, g, w, x, g.c * g.hw, g.cg * g.hw, y, g.n, beta);
  const int64_t nb_max = chunk_images(g);
  BK_TRY(check_chunk(g, nb_max, "bk_conv2d_f32"));
  Scratch col;
  BK_TRY(col.acquire(nb_max * g.c * g.r * g.s * g.ohw * (int64_t)sizeof(float), st));
  float *cp = static_cast<float *>(col.ptr);
  const KGeom kg = kgeom(g);
  for (int64_t n0 = 0; n0 < g.n; n0 += nb_max) {
    int64_t nb = std::min(nb_max, g.n - n0);
    uint32_t total = (uint32_t)(nb * g.c * g.r * g.s * g.ohw);
    im2col_kernel<<<grid_for(total, kThreads, dev), kThreads, 0, st>>>(cp, x + n0 * g.c * g.hw, kg, total);
    BK_TRY(check_launch("conv2d im2col"));
    BK_TRY(gemm_forward(st, g, w, cp, g.c * g.r * g.s * g.ohw, g.crs * g.ohw, y + n0 * g.k * g.ohw, nb, beta));
  }
  return 0;
}

BK_API int bk_conv2d_backward_input_f32(float *dx, const float *dy, const float *w,
                                        const int32_t *geom, void *stream) {
  Geom g = {};
  BK_TRY(parse(g, geom, "bk_conv2d_backward_input_f32"));
  const bool in_any = g.n > 0 && g.c > 0 && g.hw > 0;
  if (!in_any) return 0;
  BK_REQUIRE(dx, "bk_conv2d_backward_input_f32: dx is NULL");
  if (g.k == 0 || g.ohw == 0) return bk_fill_f32(dx, g.n * g.c * g.hw, 0.f, stream);
  BK_REQUIRE(dy && w, "bk_conv2d_backward_input_f32: null pointer");
  cudaStream_t st = as_stream(stream);
  if (pointwise(g))
    return gemm_backward_input(st, g, w, dy, dx, g.c * g.hw, g.cg * g.hw, g.n);
  int dev;
  BK_TRY(current_device(&dev));
  const int64_t nb_max = chunk_images(g);
  BK_TRY(check_chunk(g, nb_max, "bk_conv2d_backward_input_f32"));
  Scratch col;
  BK_TRY(col.acquire(nb_max * g.c * g.r * g.s * g.ohw * (int64_t)sizeof(float), st));
  float *cp = static_cast<float *>(col.ptr);
  const KGeom kg = kgeom(g);
  for (int64_t n0 = 0; n0 < g.n; n0 += nb_max) {
    int64_t nb = std::min(nb_max, g.n - n0);
    BK_TRY(gemm_backward_input(st, g, w, dy + n0 * g.k * g.ohw, cp, g.c * g.r * g.s * g.ohw,
                               g.crs * g.ohw, nb));
    uint32_t total = (uint32_t)(nb * g.c * g.hw);
    col2im_kernel<<<grid_for(total, kThreads, dev), kThreads, 0, st>>>(dx + n0 * g.c * g.hw, cp, kg, total);
    BK_TRY(check_launch("conv2d col2im"));
  }
  return 0;
}

BK_API int bk_conv2d_backward_weight_f32(float *dw, const float *dy, const float *x,
                                         const int32_t *geom, void *stream) {
  Geom g = {};
  BK_TRY(parse(g, geom, "bk_conv2d_backward_weight_f32"));
  const bool w_any = g.k > 0 && g.crs > 0;
  if (!w_any) return 0;
  BK_REQUIRE(dw, "bk_conv2d_backward_weight_f32: dw is NULL");
  if (g.n == 0 || g.ohw == 0) return bk_fill_f32(dw, g.k * g.crs, 0.f, stream);
  BK_REQUIRE(dy && x, "bk_conv2d_backward_weight_f32: null pointer");
  cudaStream_t st = as_stream(stream);
  int dev;
  BK_TRY(current_device(&dev));
  const bool pw = pointwise(g);
  const int64_t nb_max = pw ? g.n : chunk_images(g);
  if (!pw) BK_TRY(check_chunk(g, nb_max, "bk_conv2d_backward_weight_f32"));
  Scratch col;
  if (!pw) BK_TRY(col.acquire(nb_max * g.c * g.r * g.s * g.ohw * (int64_t)sizeof(float), st));
  float *cp = static_cast<float *>(col.ptr);
  const KGeom kg = kgeom(g);
  // dw_g [kg, crs] (+)= dy_g [kg, ohw] @ cols_g^T [ohw, crs], one image at a time,
  // all groups of an image in one batched call.
  for (int64_t n0 = 0; n0 < g.n; n0 += nb_max) {
    int64_t nb = std::min(nb_max, g.n - n0);
    const float *b = x + n0 * g.c * g.hw;
    int64_t b_img = g.c * g.hw, b_group = g.cg * g.hw;
    if (!pw) {
      uint32_t total = (uint32_t)(nb * g.c * g.r * g.s * g.ohw);
      im2col_kernel<<<grid_for(total, kThreads, dev), kThreads, 0, st>>>(cp, b, kg, total);
      BK_TRY(check_launch("conv2d im2col"));
      b = cp;
      b_img = g.c * g.r * g.s * g.ohw;
      b_group = g.crs * g.ohw;
    }
    for (int64_t i = 0; i < nb; i++) {
      float beta = (n0 + i) == 0 ? 0.f : 1.f;
      BK_TRY(sgemm_strided_batched(st, false, true, g.kg, g.crs, g.ohw, 1.f,
                                   dy + (n0 + i) * g.k * g.ohw, g.ohw, g.kg * g.ohw, b + i * b_img,
                                   g.ohw, b_group, beta, dw, g.crs, g.kg * g.crs, g.groups));
    }
  }
  return 0;
}

}  // extern "C"
