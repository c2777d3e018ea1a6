import type { BinaryOp, UnaryOp } from '../backend.js';
import { broadcastShapes, broadcastStrides, fmt } from '../shape.js';
import { recordOp } from '../autograd.js';
import { empty, type Tensor } from '../tensor.js';
import { sumTo } from './reduce.js';
import { floatInputs } from './util.js';

function binaryKernel(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const backend = floatInputs(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const out = empty(shape, 'float32', a.device);
  const same = a.shape.length === shape.length && b.shape.length === shape.length &&
    a.numel === out.numel && b.numel === out.numel;
  // Same-shape operands go through as one flat dimension: the kernel's fast path.
  const flat = same ? [out.numel] : shape;
  const as = same ? [1] : broadcastStrides(a.shape, shape);
  const bs = same ? [1] : broadcastStrides(b.shape, shape);
  backend.binary(op, out.handle(op), a.handle(op), as, b.handle(op), bs, flat);
  return out;
}

/** out = alpha * x + beta: the scalar forms of add/sub/mul/div. */
export function affine(x: Tensor, alpha: number, beta: number, op = 'affine'): Tensor {
  const backend = floatInputs(op, x);
  const out = empty(x.shape, 'float32', x.device);
  backend.affine(out.handle(op), x.handle(op), x.numel, alpha, beta);
  return recordOp(out, op, [x], [], (g) => [alpha === 1 ? g : affine(g, alpha, 0)]);
}

export function add(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === 'number') return affine(a, 1, b, 'add');
  return recordOp(binaryKernel('add', a, b), 'add', [a, b], [], (g, _, needs) => [
    needs[0] ? sumTo(g, a.shape) : null, needs[1] ? sumTo(g, b.shape) : null]);
}

export function sub(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === 'number') return affine(a, 1, -b, 'sub');
  return recordOp(binaryKernel('sub', a, b), 'sub', [a, b], [], (g, _, needs) => [
    needs[0] ? sumTo(g, a.shape) : null, needs[1] ? sumTo(neg(g), b.shape) : null]);
}

export function mul(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === 'number') return affine(a, b, 0, 'mul');
  return recordOp(binaryKernel('mul', a, b), 'mul', [a, b], [a, b], (g, [sa, sb], needs) => [
    needs[0] ? sumTo(mul(g, sb), a.shape) : null,
    needs[1] ? sumTo(mul(g, sa), b.shape) : null,
  ]);
}

export function div(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === 'number') return affine(a, 1 / b, 0, 'div');
  return recordOp(binaryKernel('div', a, b), 'div', [a, b], [a, b], (g, [sa, sb], needs) => [
    needs[0] ? sumTo(div(g, sb), a.shape) : null,
    needs[1] ? sumTo(neg(div(mul(g, sa), mul(sb, sb))), b.shape) : null,
  ]);
}

function unaryKernel(op: UnaryOp, x: Tensor): Tensor {
  const backend = floatInputs(op, x);
  const out = empty(x.shape, 'float32', x.device);
  backend.unary(op, out.handle(op), x.handle(op), x.numel);
  return out;
}

export function neg(x: Tensor): Tensor {
  return recordOp(unaryKernel('neg', x), 'neg', [x], [], (g) => [neg(g)]);
}

export function relu(x: Tensor): Tensor {
  return recordOp(unaryKernel('relu', x), 'relu', [x], [x], (g, [sx]) => {
    const backend = floatInputs('relu', g, sx);
    const dx = empty(sx.shape, 'float32', sx.device);
    backend.reluBackward(dx.handle('relu'), g.handle('relu'), sx.handle('relu'), sx.numel);
    return [dx];
  });
}

export function exp(x: Tensor): Tensor {
  const out = unaryKernel('exp', x);
  return recordOp(out, 'exp', [x], [out], (g, [y]) => [mul(g, y)]);
}

export function log(x: Tensor): Tensor {
  return recordOp(unaryKernel('log', x), 'log', [x], [x], (g, [sx]) => [div(g, sx)]);
}

export function sqrt(x: Tensor): Tensor {
  const out = unaryKernel('sqrt', x);
  return recordOp(out, 'sqrt', [x], [out], (g, [y]) => [div(g, mul(y, 2))]);
}

/** A contiguous copy of x broadcast to `shape` (used by gradients of reductions). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
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
  const backend = floatInputs('addInPlace', a, b);
  if (a.numel !== b.numel) throw new Error(`addInPlace: ${fmt(b.shape)} does not match ${fmt(a.shape)}`);
  const h = a.handle('addInPlace');
  backend.binary('add', h, h, [1], b.handle('addInPlace'), [1], [a.numel]);
}
