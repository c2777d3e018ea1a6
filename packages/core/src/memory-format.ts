/**
 * Memory formats, as PyTorch's: a 4D [N, C, H, W] or 5D [N, C, D, H, W] tensor
 * keeps its logical shape and may store its elements in NHWC / NDHWC order
 * ('channelsLast'). The order belongs to the storage (it is how the elements
 * were written), so every tensor over one storage (views, aliases the autograd
 * graph keeps, a Parameter made from it) agrees on it.
 */
import type { Storage } from './memory.js';
import { contiguousStrides, fmt, type Shape } from './shape.js';

export type MemoryFormat = 'contiguous' | 'channelsLast';

export const MEMORY_FORMATS: readonly MemoryFormat[] = ['contiguous', 'channelsLast'];

export function checkFormat(op: string, format: string): MemoryFormat {
  if (!(MEMORY_FORMATS as readonly string[]).includes(format)) {
    throw new Error(`${op}: unknown memory format '${format}' (expected ${MEMORY_FORMATS.map((f) => `'${f}'`).join(' or ')})`);
  }
  return format as MemoryFormat;
}

/** Channels-last applies to 4D and 5D shapes only (as torch.channels_last and channels_last_3d). */
export function checkFormatRank(op: string, shape: Shape, format: MemoryFormat): void {
  if (format === 'channelsLast' && shape.length !== 4 && shape.length !== 5) {
    throw new Error(`${op}: channelsLast needs a 4D [N,C,H,W] or 5D [N,C,D,H,W] tensor, got shape ${fmt(shape)}`);
  }
}

/** The logical dimensions in storage order, outermost first: [0, 2, 3, 1] for NHWC. */
export function storageOrder(ndim: number, format: MemoryFormat): number[] {
  const dims = Array.from({ length: ndim }, (_, i) => i);
  return format === 'channelsLast' ? [0, ...dims.slice(2), 1] : dims;
}

/** The stride of each logical dimension in a storage of this format. */
export function formatStrides(shape: Shape, format: MemoryFormat): number[] {
  if (format === 'contiguous') return contiguousStrides(shape);
  const order = storageOrder(shape.length, format);
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = order.length - 1; i >= 0; i--) {
    strides[order[i]] = s;
    s *= shape[order[i]];
  }
  return strides;
}

/**
 * Whether a storage laid out as `stored` is also in `format` order: true when
 * they are the same, or when the dimensions they order differently are of size 1
 * (a [N, C, 1, 1] or [N, 1, H, W] tensor is both), as PyTorch's is_contiguous.
 */
export function isLaidOutAs(shape: Shape, stored: MemoryFormat, format: MemoryFormat): boolean {
  if (stored === format) return true;
  if (shape.length !== 4 && shape.length !== 5) return false;
  const a = formatStrides(shape, stored);
  const b = formatStrides(shape, format);
  return shape.every((d, i) => d === 1 || a[i] === b[i]);
}

/**
 * The strides that stridedCopy needs to write `shape` in `to` order while
 * reading a storage in `from` order: the output is written row-major over the
 * returned iteration shape.
 */
export function permuteCopyArgs(shape: Shape, from: MemoryFormat, to: MemoryFormat): { shape: number[]; strides: number[] } {
  const order = storageOrder(shape.length, to);
  const src = formatStrides(shape, from);
  return { shape: order.map((d) => shape[d]), strides: order.map((d) => src[d]) };
}

/** Channels-last storages and the logical shape they were written for. */
const channelsLastStorages = new WeakMap<Storage, readonly number[]>();

export function tagStorage(storage: Storage, shape: Shape, format: MemoryFormat): void {
  if (format === 'channelsLast') channelsLastStorages.set(storage, shape);
  else channelsLastStorages.delete(storage);
}

/**
 * The storage's format as seen by a tensor of `shape`; null when it is channels-last
 * for another shape and not also row-major (so `shape` would misread it).
 */
export function storageFormat(storage: Storage, shape: Shape): MemoryFormat | null {
  const cl = channelsLastStorages.get(storage);
  if (!cl) return 'contiguous';
  if (cl.length === shape.length && cl.every((d, i) => d === shape[i])) return 'channelsLast';
  return isLaidOutAs(cl, 'channelsLast', 'contiguous') ? 'contiguous' : null;
}

/**
 * Ops whose kernels read (and write) storages in whatever order they are, given
 * the layout: elementwise ops (flat over same-format operands, strided
 * otherwise), the format conversions, batch norm (an NHWC [N, C, H, W]
 * storage is a row-major [N*H*W, C] matrix), and conv2d / pooling on a backend
 * whose kernels take NHWC (Backend.nativeChannelsLast). floatInputs lends every other op a
 * row-major copy of a channels-last input, and Tensor.handle refuses one to an
 * op that got none, so no kernel misreads NHWC as NCHW.
 */
const LAYOUT_AWARE_OPS = new Set([
  'add', 'sub', 'mul', 'div', 'affine', 'neg', 'relu', 'exp', 'log', 'sqrt', 'addInPlace', 'contiguous', 'clone', 'to',
  'batchNorm', 'batchNormStats', 'batchNormStatsSums', 'batchNormElemt', 'batchNormBackwardReduce',
  'batchNormBackwardElemt',
  'scale', 'unscale', // GradScaler's affine maps, flat over the storage like affine
  // conv2d and pooling under these names when the backend's kernels take NHWC (ops/conv.ts, NHWC_OP)
  'conv2d (channels-last)', 'maxPool2d (channels-last)', 'avgPool2d (channels-last)', 'adaptiveAvgPool2d (channels-last)',
]);

export function layoutAware(op: string): boolean {
  return LAYOUT_AWARE_OPS.has(op);
}

/** Writes the elements of `x` (in `from` order) into `out` in `to` order: one stridedCopy. */
export function permuteStorage(out: Storage, x: Storage, shape: Shape, from: MemoryFormat, to: MemoryFormat): void {
  if (x.numel === 0) return;
  const args = permuteCopyArgs(shape, from, to);
  if (x.dtype === 'float32' && out.backend === x.backend) {
    x.backend.stridedCopy(out.handle, x.handle, args.shape, args.strides);
  } else {
    // The kernel copies float32; other dtypes go through the host (a rare, small case: indices, masks).
    out.backend.upload(out.handle, hostPermute(x.backend.download(x.handle, x.dtype, x.numel), shape, from, to));
  }
}

/** The host array `src` (in `from` order) in `to` order. */
export function hostPermute<T extends ArrayLike<unknown> & { constructor: unknown }>(src: T, shape: Shape,
  from: MemoryFormat, to: MemoryFormat): T {
  const { shape: iter, strides } = permuteCopyArgs(shape, from, to);
  const out = new (src.constructor as new (n: number) => T)(src.length) as unknown as { [i: number]: unknown };
  const nd = iter.length;
  const idx = new Array<number>(nd).fill(0);
  let off = 0;
  for (let i = 0; i < src.length; i++) {
    out[i] = src[off];
    for (let d = nd - 1; d >= 0; d--) {
      off += strides[d];
      if (++idx[d] < iter[d]) break;
      off -= strides[d] * iter[d];
      idx[d] = 0;
    }
  }
  return out as unknown as T;
}
