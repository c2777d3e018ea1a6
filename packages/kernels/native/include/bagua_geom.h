/* bagua_geom.h: decoding and checking the geometry structs of the conv2d and
 * pooling entry points (bk_conv2d_geom, bk_pool2d_geom in bagua_kernels.h), shared by the CPU (g++) and
 * CUDA (nvcc) libraries so both accept the same geometries with the same messages.
 * Host code only; each library defines bk::fail.
 */
#ifndef BAGUA_GEOM_H
#define BAGUA_GEOM_H

#include <stdint.h>

#include "bagua_kernels.h"
#include "bagua_pool_math.h"

namespace bk {

int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct ConvGeom {
  int64_t n, c, h, w, k, r, s, oh, ow, sh, sw, ph, pw, dh, dw, groups;
  int64_t cg, kg, crs, ohw, hw;  // derived: per-group channels, column rows, plane sizes
  bool nhwc;                     // x, y (dx, dy) stored [n, h, w, c] (BK_LAYOUT_NHWC)
};

static_assert(sizeof(bk_conv2d_geom) == 18 * sizeof(int32_t), "bk_conv2d_geom: int32 fields only (geometry.ts)");
static_assert(sizeof(bk_pool2d_geom) == 17 * sizeof(int32_t), "bk_pool2d_geom: int32 fields only (geometry.ts)");

// A layout field: BK_LAYOUT_NCHW or BK_LAYOUT_NHWC.
inline int layout_parse(int32_t layout, bool &nhwc, const char *fn) {
  if (layout != BK_LAYOUT_NCHW && layout != BK_LAYOUT_NHWC)
    return fail("%s: geom->layout must be %d (NCHW) or %d (NHWC), got %d", fn, BK_LAYOUT_NCHW, BK_LAYOUT_NHWC,
                (int)layout);
  nhwc = layout == BK_LAYOUT_NHWC;
  return 0;
}

// A geometry struct's `size` must be the size this library was built with.
inline int geom_size_check(int32_t given, int32_t expected, const char *type, const char *fn) {
  if (given != expected)
    return fail("%s: geom->size is %d, expected sizeof(%s) = %d (a caller built for another kernel ABI?)", fn,
                (int)given, type, (int)expected);
  return 0;
}

inline int conv_parse(ConvGeom &g, const bk_conv2d_geom *geom, const char *fn) {
  g = ConvGeom{};
  if (!geom) return fail("%s: geom is NULL", fn);
  if (geom_size_check(geom->size, (int32_t)sizeof(bk_conv2d_geom), "bk_conv2d_geom", fn)) return 1;
  g.n = geom->n; g.c = geom->c; g.h = geom->h; g.w = geom->w; g.k = geom->k;
  g.r = geom->r; g.s = geom->s; g.oh = geom->oh; g.ow = geom->ow;
  g.sh = geom->stride_h; g.sw = geom->stride_w; g.ph = geom->pad_h; g.pw = geom->pad_w;
  g.dh = geom->dil_h; g.dw = geom->dil_w; g.groups = geom->groups;
  if (layout_parse(geom->layout, g.nhwc, fn)) return 1;
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
  // the output size must be the one the geometry implies (catches caller bugs)
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

// 1x1, stride 1, no padding: the input planes are already the column matrix.
inline bool conv_pointwise(const ConvGeom &g) {
  return g.r == 1 && g.s == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

// Both libraries pool over a PGeom (bagua_pool_math.h), whose spatial sizes are int:
// besides the sizes' own ranges, the positions the window math forms (o*stride - pad +
// k*dil, size + pad + stride) and in-plane indices (h*w, oh*ow: int32 indices) must fit,
// else the geometry is refused here rather than wrapping in a kernel.
// Adaptive pooling reads only planes, h, w, oh, ow.
inline int pool_parse(PGeom &g, const bk_pool2d_geom *geom, bool adaptive, const char *fn) {
  g = PGeom{};
  if (!geom) return fail("%s: geom is NULL", fn);
  if (geom_size_check(geom->size, (int32_t)sizeof(bk_pool2d_geom), "bk_pool2d_geom", fn)) return 1;
  g.planes = geom->planes; g.h = geom->h; g.w = geom->w; g.oh = geom->oh; g.ow = geom->ow;
  if (layout_parse(geom->layout, g.nhwc, fn)) return 1;
  if (g.nhwc) {
    // planes = n * channels; channels 0 only for an empty batch
    g.c = geom->channels;
    if (g.c < 0 || (g.c == 0 ? g.planes != 0 : g.planes % g.c != 0))
      return fail("%s: NHWC pooling: %lld planes are not a whole number of images of %lld channels", fn,
                  (long long)g.planes, (long long)g.c);
  }
  if (g.planes < 0 || g.h < 0 || g.w < 0 || g.oh < 0 || g.ow < 0)
    return fail("%s: sizes must be >= 0 (planes %lld, h %d, w %d, oh %d, ow %d)", fn, (long long)g.planes, g.h,
                g.w, g.oh, g.ow);
  const int64_t kIntMax = 0x7fffffff;
  if ((int64_t)g.h * g.w > kIntMax || (int64_t)g.oh * g.ow > kIntMax)
    return fail("%s: a plane of %dx%d or %dx%d elements is too large (pooling indexes a plane with int32)", fn,
                g.h, g.w, g.oh, g.ow);
  if (adaptive) {
    // an empty window would average nothing
    if ((g.oh > 0 && g.h == 0) || (g.ow > 0 && g.w == 0))
      return fail("%s: adaptive pooling of an empty plane", fn);
    return 0;
  }
  g.kh = geom->kh; g.kw = geom->kw; g.sh = geom->stride_h; g.sw = geom->stride_w; g.ph = geom->pad_h;
  g.pw = geom->pad_w; g.dh = geom->dil_h; g.dw = geom->dil_w; g.include_pad = geom->count_include_pad != 0;
  if (g.kh < 1 || g.kw < 1 || g.sh < 1 || g.sw < 1 || g.dh < 1 || g.dw < 1)
    return fail("%s: kernel size, stride and dilation must be >= 1", fn);
  if (g.ph < 0 || g.pw < 0) return fail("%s: padding must be >= 0", fn);
  // the farthest position a window reaches, and the largest a backward pass forms
  auto reach = [](int64_t size, int64_t out, int64_t k, int64_t s, int64_t p, int64_t d) {
    const int64_t last = (out > 0 ? out - 1 : 0) * s + (k - 1) * d;
    return last > size + p + s ? last : size + p + s;
  };
  if (reach(g.h, g.oh, g.kh, g.sh, g.ph, g.dh) > kIntMax || reach(g.w, g.ow, g.kw, g.sw, g.pw, g.dw) > kIntMax)
    return fail("%s: the windows reach past 2^31 - 1 (size %dx%d, output %dx%d, kernel %dx%d, stride %dx%d, "
                "padding %dx%d, dilation %dx%d)", fn, g.h, g.w, g.oh, g.ow, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw,
                g.dh, g.dw);
  return 0;
}

}  // namespace bk

#endif /* BAGUA_GEOM_H */
