import { Device } from '../device.js';
import { checkFormat, checkFormatRank, permuteStorage, type MemoryFormat } from '../memory-format.js';
import { contiguousStrides, fmt, inferShape, normAxis, type Shape } from '../shape.js';
import { recordOp } from '../autograd.js';
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

/** A copy on another device (differentiable: the gradient moves back). */
export function to(x: Tensor, device: string | Device): Tensor {
  const target = Device.parse(device);
  const s = x.storage('to');
  if (s.device.equals(target)) return x;
  const out = empty(x.shape, s.dtype, target, x.memoryFormat);
  out.storage('to').backend.upload(out.handle('to'), s.backend.download(s.handle, s.dtype, s.numel));
  const from = s.device;
  return recordOp(out, 'to', [x], [], (g) => [to(g, from)]);
}
