import { normAxis } from '../shape.js';
import { recordOp } from '../autograd.js';
import { empty, type Tensor } from '../tensor.js';
import { transpose } from './shape.js';
import { floatInputs } from './util.js';

/** Softmax over the last axis, by the row kernel. */
function lastAxis(x: Tensor, log: boolean): Tensor {
  const op = log ? 'logSoftmax' : 'softmax';
  const backend = floatInputs(op, x);
  const cols = x.shape[x.ndim - 1];
  const rows = cols === 0 ? 0 : x.numel / cols;
  const y = empty(x.shape, 'float32', x.device);
  if (y.numel) backend.softmax(y.handle(op), x.handle(op), rows, cols, log);
  return recordOp(y, op, [x], [y], (g, [sy]) => {
    const dx = empty(sy.shape, 'float32', sy.device);
    if (dx.numel) backend.softmaxBackward(dx.handle(op), g.handle(op), sy.handle(op), rows, cols, log);
    return [dx];
  });
}

/** Other axes move to the end and back, through differentiable transposes. */
function along(x: Tensor, dim: number, log: boolean): Tensor {
  if (x.ndim === 0) throw new Error(`${log ? 'logSoftmax' : 'softmax'}: expected at least 1D input, got a scalar`);
  const d = normAxis(log ? 'logSoftmax' : 'softmax', dim, x.shape);
  if (d === x.ndim - 1) return lastAxis(x, log);
  return transpose(lastAxis(transpose(x, d, -1), log), d, -1);
}

export const softmax = (x: Tensor, dim: number): Tensor => along(x, dim, false);
export const logSoftmax = (x: Tensor, dim: number): Tensor => along(x, dim, true);
