import type { Conv2dGeometry } from '@bagua/core';

/** A conv2d geometry with PyTorch's output size, for kernel-level tests. */
export function convGeom(n: number, c: number, h: number, w: number, k: number, r: number, s: number,
  o: { stride?: [number, number]; pad?: [number, number]; dil?: [number, number]; groups?: number } = {}): Conv2dGeometry {
  const [strideH, strideW] = o.stride ?? [1, 1];
  const [padH, padW] = o.pad ?? [0, 0];
  const [dilH, dilW] = o.dil ?? [1, 1];
  const oh = Math.floor((h + 2 * padH - dilH * (r - 1) - 1) / strideH) + 1;
  const ow = Math.floor((w + 2 * padW - dilW * (s - 1) - 1) / strideW) + 1;
  return { n, c, h, w, k, r, s, oh, ow, strideH, strideW, padH, padW, dilH, dilW, groups: o.groups ?? 1 };
}
