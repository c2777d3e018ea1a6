/**
 * conv2d and pooling geometry in the C ABI's form (native/include/bagua_kernels.h),
 * shared by the CPU and CUDA backends: the int32 arrays the kernels read, and the
 * element counts each backend checks its operands against.
 */
import type { Conv2dGeometry, Pool2dGeometry } from '@bagua/core';

/** Writes g into `a` (int32[16]: n, c, h, w, k, r, s, oh, ow, strides, pads, dilations, groups). */
export function packConv2d(g: Conv2dGeometry, a: Int32Array): Int32Array {
  a[0] = g.n; a[1] = g.c; a[2] = g.h; a[3] = g.w; a[4] = g.k; a[5] = g.r; a[6] = g.s; a[7] = g.oh;
  a[8] = g.ow; a[9] = g.strideH; a[10] = g.strideW; a[11] = g.padH; a[12] = g.padW; a[13] = g.dilH;
  a[14] = g.dilW; a[15] = g.groups;
  return a;
}

/** Writes g into `a` (int32[14]: planes, h, w, oh, ow, kernel, strides, pads, dilations, include_pad). */
export function packPool2d(g: Pool2dGeometry, a: Int32Array): Int32Array {
  a[0] = g.planes; a[1] = g.h; a[2] = g.w; a[3] = g.oh; a[4] = g.ow; a[5] = g.kh; a[6] = g.kw;
  a[7] = g.strideH; a[8] = g.strideW; a[9] = g.padH; a[10] = g.padW; a[11] = g.dilH; a[12] = g.dilW;
  a[13] = g.countIncludePad ? 1 : 0;
  return a;
}

/** Element counts of a conv2d's input, weight and output. */
export function conv2dSizes(g: Conv2dGeometry): { x: number; w: number; y: number } {
  const cg = g.groups > 0 ? Math.floor(g.c / g.groups) : 0;
  return { x: g.n * g.c * g.h * g.w, w: g.k * cg * g.r * g.s, y: g.n * g.k * g.oh * g.ow };
}
