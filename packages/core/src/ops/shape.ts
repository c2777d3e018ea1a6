import { Device } from '../device.js';
import { checkFormat, checkFormatRank, permuteStorage, type MemoryFormat } from '../memory-format.js';
import { type DType, isDType, isFloatDType } from '../dtype.js';
import { storageFormat, tagStorage } from '../memory-format.js';
import { contiguousStrides, fmt, inferShape, normAxis, type Shape } from '../shape.js';
import { noGrad, recordOp } from '../autograd.js';
import { empty, Tensor } from '../tensor.js';
import { floatInputs } from './util.js';

/**
 * Same storage, new shape. A channels-last tensor keeps its storage only for
 * its own shape; to another, reshape reads it through a row-major copy and view
 * refuses (as PyTorch's view, which cannot express NHWC order in NCHW-derived strides).
 */
export function reshape(x: Tensor, shape: Shape, op = 'reshape'): Tensor {
  const target = inferShape(op, x.shape, shape);
  const same = target.length === x.ndim && target.every((d, i) => d === x.shape[i]);
  if (!same && !x.isContiguous()) {
    if (op === 'view') {
      throw new Error(`view: a channels-last tensor of shape ${fmt(x.shape)} cannot be viewed as ${fmt(target)}; ` +
        'use reshape() (which copies) or contiguous() first');
    }
    const rowMajor = contiguous(x);
    const out = reshape(rowMajor, target, op);
    rowMajor.dispose(); // the node of contiguous() keeps what it needs; out shares the storage
    return out;
  }
  const out = new Tensor(x.storage(op).retain(), target);
  return recordOp(out, op, [x], [], (g) => [reshape(g, x.shape)]);
}

/**
 * x in `format` order (PyTorch's x.contiguous(memory_format)): x itself when its
 * storage already is, else a copy (one stridedCopy); the gradient goes back to x's format.
 */
export function contiguous(x: Tensor, format: MemoryFormat = 'contiguous'): Tensor {
  const op = 'contiguous';
  checkFormat(op, format);
  checkFormatRank(op, x.shape, format);
  if (x.isContiguous(format)) return x;
  const s = x.storage(op);
  const from = x.memoryFormat;
  const out = empty(x.shape, s.dtype, s.device, format);
  permuteStorage(out.storage(op), s, x.shape, from, format);
  return recordOp(out, op, [x], [], (g) => [contiguous(g, from)]);
}

export function flatten(x: Tensor, startDim = 0, endDim = -1): Tensor {
  if (x.ndim === 0) return reshape(x, [1], 'flatten');
  const s = normAxis('flatten', startDim, x.shape);
  const e = normAxis('flatten', endDim, x.shape);
  if (s > e) throw new Error(`flatten: startDim ${startDim} comes after endDim ${endDim}`);
  const merged = x.shape.slice(s, e + 1).reduce((a, b) => a * b, 1);
  return reshape(x, [...x.shape.slice(0, s), merged, ...x.shape.slice(e + 1)], 'flatten');
}

/** Swaps two dimensions, materialised as a contiguous copy. */
export function transpose(x: Tensor, d0: number, d1: number): Tensor {
  const backend = floatInputs('transpose', x);
  const a = normAxis('transpose', d0, x.shape);
  const b = normAxis('transpose', d1, x.shape);
  if (a === b) return reshape(x, x.shape, 'transpose');
  const shape = [...x.shape];
  [shape[a], shape[b]] = [shape[b], shape[a]];
  const strides = contiguousStrides(x.shape);
  [strides[a], strides[b]] = [strides[b], strides[a]];
  const out = empty(shape, 'float32', x.device);
  if (out.numel > 0) backend.stridedCopy(out.handle('transpose'), x.handle('transpose'), shape, strides);
  return recordOp(out, 'transpose', [x], [], (g) => [transpose(g, a, b)]);
}

export function clone(x: Tensor): Tensor {
  const s = x.storage('clone');
  const out = empty(x.shape, s.dtype, s.device, x.memoryFormat);
  if (s.dtype === 'float32') s.backend.copy(out.handle('clone'), s.handle, x.numel);
  else out.storage('clone').backend.upload(out.handle('clone'), s.backend.download(s.handle, s.dtype, s.numel));
  return recordOp(out, 'clone', [x], [], (g) => [g]);
}

/**
 * A copy on another device (differentiable: the gradient moves back), or, given a dtype,
 * the same values in that float dtype (rounded to nearest even; the gradient is cast back).
 */
export function to(x: Tensor, device: string | Device | DType): Tensor {
  if (isDType(device)) return cast(x, device);
  const target = Device.parse(device);
  const s = x.storage('to');
  if (s.device.equals(target)) return x;
  const out = empty(x.shape, s.dtype, target, x.memoryFormat);
  out.storage('to').backend.upload(out.handle('to'), s.backend.download(s.handle, s.dtype, s.numel));
  const from = s.device;
  return recordOp(out, 'to', [x], [], (g) => [to(g, from)]);
}

/**
 * x in another float dtype: float32 <-> float16 / bfloat16 by the backend's cast kernels
 * (round to nearest even), float16 <-> bfloat16 through float32 (exact: every half value
 * is a float32). Elementwise over the storage, so the memory format is kept. The
 * gradient is the incoming one cast back to x's dtype.
 */
export function cast(x: Tensor, dtype: DType): Tensor {
  const s = x.storage('to');
  if (s.dtype === dtype) return x;
  if (!isFloatDType(s.dtype) || !isFloatDType(dtype)) {
    throw new Error(`to: only float32, float16 and bfloat16 convert to each other (got ${s.dtype} to ${dtype})`);
  }
  if (s.dtype !== 'float32' && dtype !== 'float32') {
    const mid = cast(x, 'float32');
    const out = cast(mid, dtype);
    mid.dispose();
    return out;
  }
  const out = empty(x.shape, dtype, x.device);
  const format = storageFormat(s, x.shape);
  if (format) tagStorage(out.storage('to'), x.shape, format);
  castInto(out, x, 'to');
  const from = s.dtype;
  return recordOp(out, 'to', [x], [], (g) => [cast(g, from)]);
}

/** Writes x converted to out's dtype into out (same numel; one of the two float32), not recorded. */
export function castInto(out: Tensor, x: Tensor, op: string): void {
  // Storage to storage: x first in out's memory format (a channels-last gradient unscaled in place).
  if (x.ndim >= 4 && x.ndim === out.ndim && x.memoryFormat !== out.memoryFormat) {
    const laid = noGrad(() => contiguous(x, out.memoryFormat));
    castInto(out, laid, op);
    laid.dispose();
    return;
  }
  const so = out.storage(op), sx = x.storage(op);
  if (so.numel !== sx.numel) throw new Error(`${op}: cast of ${sx.numel} elements into ${so.numel}`);
  if (sx.numel === 0) return;
  const b = sx.backend;
  const kernel =
    sx.dtype === 'float32' && so.dtype === 'bfloat16' ? b.castF32ToBf16 :
    sx.dtype === 'float32' && so.dtype === 'float16' ? b.castF32ToF16 :
    sx.dtype === 'bfloat16' && so.dtype === 'float32' ? b.castBf16ToF32 :
    sx.dtype === 'float16' && so.dtype === 'float32' ? b.castF16ToF32 : undefined;
  if (!kernel) {
    if (sx.dtype === so.dtype && sx.dtype === 'float32') return b.copy(so.handle, sx.handle, sx.numel);
    // the same half type: the bits as they are (rare: in-place updates of half tensors)
    if (sx.dtype === so.dtype) return so.backend.upload(so.handle, b.download(sx.handle, sx.dtype, sx.numel));
    throw new Error(`${op}: the ${x.device.type} backend cannot convert ${sx.dtype} to ${so.dtype}`);
  }
  kernel.call(b, so.handle, sx.handle, sx.numel);
}
