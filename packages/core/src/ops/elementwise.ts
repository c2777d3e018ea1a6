import type { BinaryOp, UnaryOp } from '../backend.js';
import { broadcastShapes, broadcastStrides, fmt } from '../shape.js';
import { noGrad, recordOp } from '../autograd.js';
import { formatStrides, storageOrder, type MemoryFormat } from '../memory-format.js';
import { empty, type Tensor } from '../tensor.js';
import { sumTo } from './reduce.js';
import { cast, castInto, contiguous } from './shape.js';
import { floatInputs, hasHalf, inFormat, viaFloat32 } from './util.js';

/**
 * The output's memory format, as PyTorch's: that of the first operand with the
 * output's full shape (so channels-last x + bias[1, C, 1, 1] stays channels-last,
 * and x + y keeps x's format when they differ).
 */
function outputFormat(shape: readonly number[], a: Tensor, b: Tensor): MemoryFormat {
  for (const t of [a, b]) {
    if (t.ndim === shape.length && t.numel === numel(shape)) return t.memoryFormat;
  }
  return 'contiguous';
}

const numel = (shape: readonly number[]) => shape.reduce((p, q) => p * q, 1);

/** Strides reading `t` (in its storage order) as if it had `outShape` (0 on broadcast dimensions). */
function operandStrides(t: Tensor, outShape: readonly number[]): number[] {
  if (t.ndim < 4) return broadcastStrides(t.shape, outShape);
  const own = formatStrides(t.shape, t.memoryFormat);
  const offset = outShape.length - t.ndim;
  return outShape.map((_, i) => (i < offset || t.shape[i - offset] === 1 ? 0 : own[i - offset]));
}

function binaryKernel(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const backend = floatInputs(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const format = outputFormat(shape, a, b);
  const out = empty(shape, 'float32', a.device, format);
  const same = a.shape.length === shape.length && b.shape.length === shape.length &&
    a.numel === out.numel && b.numel === out.numel && a.isContiguous(format) && b.isContiguous(format);
  // Same-shape, same-order operands go through as one flat dimension: the kernel's fast path.
  // Otherwise the kernel walks the output's storage order, each operand by its own strides.
  const order = storageOrder(shape.length, format);
  const flat = same ? [out.numel] : order.map((d) => shape[d]);
  const as = same ? [1] : permute(operandStrides(a, shape), order);
  const bs = same ? [1] : permute(operandStrides(b, shape), order);
  backend.binary(op, out.handle(op), a.handle(op), as, b.handle(op), bs, flat);
  return out;
}

const permute = (v: readonly number[], order: readonly number[]) => order.map((d) => v[d]);

/**
 * A gradient in the memory format of its tensor (as PyTorch's); the original stays the caller's.
 * The format is read at forward: by backward the input itself may have been released.
 */
const like = (g: Tensor | null, format: MemoryFormat): Tensor | null => g && inFormat(g, format);

/** out = alpha * x + beta: the scalar forms of add/sub/mul/div. */
export function affine(x: Tensor, alpha: number, beta: number, op = 'affine'): Tensor {
  if (hasHalf(x)) return viaFloat32(op, [x], (x32) => affine(x32, alpha, beta, op));
  const backend = floatInputs(op, x);
  const out = empty(x.shape, 'float32', x.device, x.memoryFormat);
  backend.affine(out.handle(op), x.handle(op), x.numel, alpha, beta);
  return recordOp(out, op, [x], [], (g) => [alpha === 1 ? g : affine(g, alpha, 0)]);
}

export function add(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b !== 'number' && hasHalf(a, b)) return viaFloat32('add', [a, b], (a32, b32) => add(a32, b32));
  if (typeof b === 'number') return affine(a, 1, b, 'add');
  const fa = a.memoryFormat, fb = b.memoryFormat;
  return recordOp(binaryKernel('add', a, b), 'add', [a, b], [], (g, _, needs) => [
    needs[0] ? like(sumTo(g, a.shape), fa) : null, needs[1] ? like(sumTo(g, b.shape), fb) : null]);
}

export function sub(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b !== 'number' && hasHalf(a, b)) return viaFloat32('sub', [a, b], (a32, b32) => sub(a32, b32));
  if (typeof b === 'number') return affine(a, 1, -b, 'sub');
  const fa = a.memoryFormat, fb = b.memoryFormat;
  return recordOp(binaryKernel('sub', a, b), 'sub', [a, b], [], (g, _, needs) => [
    needs[0] ? like(sumTo(g, a.shape), fa) : null, needs[1] ? like(sumTo(neg(g), b.shape), fb) : null]);
}

export function mul(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b !== 'number' && hasHalf(a, b)) return viaFloat32('mul', [a, b], (a32, b32) => mul(a32, b32));
  if (typeof b === 'number') return affine(a, b, 0, 'mul');
  const fa = a.memoryFormat, fb = b.memoryFormat;
  return recordOp(binaryKernel('mul', a, b), 'mul', [a, b], [a, b], (g, [sa, sb], needs) => [
    needs[0] ? like(sumTo(mul(g, sb), a.shape), fa) : null,
    needs[1] ? like(sumTo(mul(g, sa), b.shape), fb) : null,
  ]);
}

export function div(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b !== 'number' && hasHalf(a, b)) return viaFloat32('div', [a, b], (a32, b32) => div(a32, b32));
  if (typeof b === 'number') return affine(a, 1 / b, 0, 'div');
  const fa = a.memoryFormat, fb = b.memoryFormat;
  return recordOp(binaryKernel('div', a, b), 'div', [a, b], [a, b], (g, [sa, sb], needs) => [
    needs[0] ? like(sumTo(div(g, sb), a.shape), fa) : null,
    needs[1] ? like(sumTo(neg(div(mul(g, sa), mul(sb, sb))), b.shape), fb) : null,
  ]);
}

function unaryKernel(op: UnaryOp, x: Tensor): Tensor {
  const backend = floatInputs(op, x);
  const out = empty(x.shape, 'float32', x.device, x.memoryFormat);
  backend.unary(op, out.handle(op), x.handle(op), x.numel);
  return out;
}

export function neg(x: Tensor): Tensor {
  if (hasHalf(x)) return viaFloat32('neg', [x], (x32) => neg(x32));
  return recordOp(unaryKernel('neg', x), 'neg', [x], [], (g) => [neg(g)]);
}

export function relu(x: Tensor): Tensor {
  if (hasHalf(x)) return viaFloat32('relu', [x], (x32) => relu(x32));
  return recordOp(unaryKernel('relu', x), 'relu', [x], [x], (g, [sx]) => {
    const backend = floatInputs('relu', g, sx);
    // The kernel is flat: dy in x's order, dx too.
    const dy = like(g, sx.memoryFormat)!;
    const dx = empty(sx.shape, 'float32', sx.device, sx.memoryFormat);
    backend.reluBackward(dx.handle('relu'), dy.handle('relu'), sx.handle('relu'), sx.numel);
    return [dx];
  });
}

export function exp(x: Tensor): Tensor {
  if (hasHalf(x)) return viaFloat32('exp', [x], (x32) => exp(x32));
  const out = unaryKernel('exp', x);
  return recordOp(out, 'exp', [x], [out], (g, [y]) => [mul(g, y)]);
}

export function log(x: Tensor): Tensor {
  if (hasHalf(x)) return viaFloat32('log', [x], (x32) => log(x32));
  return recordOp(unaryKernel('log', x), 'log', [x], [x], (g, [sx]) => [div(g, sx)]);
}

export function sqrt(x: Tensor): Tensor {
  if (hasHalf(x)) return viaFloat32('sqrt', [x], (x32) => sqrt(x32));
  const out = unaryKernel('sqrt', x);
  return recordOp(out, 'sqrt', [x], [out], (g, [y]) => [div(g, mul(y, 2))]);
}

/** A contiguous copy of x broadcast to `shape` (used by gradients of reductions). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  if (hasHalf(x)) return viaFloat32('expand', [x], (x32) => expand(x32, shape));
  const backend = floatInputs('expand', x);
  broadcastShapes('expand', x.shape, shape);
  const out = empty(shape, 'float32', x.device);
  if (out.numel > 0) {
    backend.stridedCopy(out.handle('expand'), x.handle('expand'), shape, broadcastStrides(x.shape, shape));
  }
  return recordOp(out, 'expand', [x], [], (g) => [sumTo(g, x.shape)]);
}


/** a += b for same-shape tensors, not recorded: gradient accumulation (a must not be shared). */
export function addInPlace(a: Tensor, b: Tensor): void {
  if (hasHalf(a, b)) {
    // a half gradient accumulates in float32 and is rounded back once (unrecorded)
    if (a.numel !== b.numel) throw new Error(`addInPlace: ${fmt(b.shape)} does not match ${fmt(a.shape)}`);
    const sum = noGrad(() => add(cast(a, 'float32'), cast(b, 'float32')));
    castInto(a, sum, 'addInPlace');
    return;
  }
  const backend = floatInputs('addInPlace', a, b);
  if (a.numel !== b.numel) throw new Error(`addInPlace: ${fmt(b.shape)} does not match ${fmt(a.shape)}`);
  const h = a.handle('addInPlace');
  // Flat over a's storage: b in the same order first (gradients of one leaf may come in either).
  const sameShape = a.ndim === b.ndim && a.shape.every((d, i) => d === b.shape[i]);
  if (!sameShape && !(a.isContiguous() && b.isContiguous())) {
    throw new Error(`addInPlace: ${fmt(b.shape)} and ${fmt(a.shape)} differ in shape and one is channels-last`);
  }
  const bb = !sameShape || b.isContiguous(a.memoryFormat) ? b : noGrad(() => contiguous(b, a.memoryFormat));
  backend.binary('add', h, h, [1], bb.handle('addInPlace'), [1], [a.numel]);
  if (bb !== b) bb.dispose();
}
