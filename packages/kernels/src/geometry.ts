/**
 * conv2d and pooling geometry in the C ABI's form (native/include/bagua_kernels.h),
 * shared by the CPU and CUDA backends: the geometry structs the kernels read, and the
 * element counts each backend checks its operands against.
 *
 * bk_conv2d_geom and bk_pool2d_geom hold int32 fields only, `size` (the struct's
 * sizeof) first: here each is an Int32Array laid out as the struct, and koffi knows
 * the struct names as int32_t (declareGeometryTypes), so a kernel declared with the
 * header's own prototype takes the array as the struct pointer.
 */
import koffi from 'koffi';
import type { Conv2dGeometry, Pool2dGeometry } from '@bagua/core';

/** The C struct of each geometry kind. */
export const GEOM_CTYPES = { conv: 'bk_conv2d_geom', pool: 'bk_pool2d_geom' } as const;

/** int32 fields of bk_conv2d_geom (size, then 17) and bk_pool2d_geom (size, then 16). */
export const CONV2D_GEOM_FIELDS = 18;
export const POOL2D_GEOM_FIELDS = 17;

/** The layout field's values (BK_LAYOUT_NCHW, BK_LAYOUT_NHWC). */
export const LAYOUT_NCHW = 0;
export const LAYOUT_NHWC = 1;

/** Makes the geometry struct names known to koffi (once per koffi instance). */
export function declareGeometryTypes(): void {
  for (const name of Object.values(GEOM_CTYPES)) {
    try {
      koffi.sizeof(name);
    } catch {
      koffi.alias(name, 'int32_t');
    }
  }
}

/** Writes g into `a` as a bk_conv2d_geom: size, n, c, h, w, k, r, s, oh, ow, strides, pads, dilations, groups, layout. */
export function packConv2d(g: Conv2dGeometry, a: Int32Array = new Int32Array(CONV2D_GEOM_FIELDS)): Int32Array {
  a[0] = CONV2D_GEOM_FIELDS * 4;
  a[1] = g.n; a[2] = g.c; a[3] = g.h; a[4] = g.w; a[5] = g.k; a[6] = g.r; a[7] = g.s; a[8] = g.oh;
  a[9] = g.ow; a[10] = g.strideH; a[11] = g.strideW; a[12] = g.padH; a[13] = g.padW; a[14] = g.dilH;
  a[15] = g.dilW; a[16] = g.groups; a[17] = g.channelsLast ? LAYOUT_NHWC : LAYOUT_NCHW;
  return a;
}

/**
 * Writes g into `a` as a bk_pool2d_geom: size, planes, h, w, oh, ow, kernel, strides, pads, dilations, include_pad,
 * layout, channels (NHWC planes: `channels` per image).
 */
export function packPool2d(g: Pool2dGeometry, a: Int32Array = new Int32Array(POOL2D_GEOM_FIELDS)): Int32Array {
  a[0] = POOL2D_GEOM_FIELDS * 4;
  a[1] = g.planes; a[2] = g.h; a[3] = g.w; a[4] = g.oh; a[5] = g.ow; a[6] = g.kh; a[7] = g.kw;
  a[8] = g.strideH; a[9] = g.strideW; a[10] = g.padH; a[11] = g.padW; a[12] = g.dilH; a[13] = g.dilW;
  a[14] = g.countIncludePad ? 1 : 0;
  a[15] = g.channelsLast ? LAYOUT_NHWC : LAYOUT_NCHW; a[16] = g.channelsLast ? g.channels ?? 0 : 0;
  return a;
}

/** Element counts of a conv2d's input, weight and output. */
export function conv2dSizes(g: Conv2dGeometry): { x: number; w: number; y: number } {
  const cg = g.groups > 0 ? Math.floor(g.c / g.groups) : 0;
  return { x: g.n * g.c * g.h * g.w, w: g.k * cg * g.r * g.s, y: g.n * g.k * g.oh * g.ow };
}
