import type { Backend } from '../backend.js';
import { recordOp } from '../autograd.js';
import { defaultGenerator, type Generator } from '../random.js';
import { empty, tensor, type Tensor } from '../tensor.js';
import { floatInputs, hasHalf, viaFloat32 } from './util.js';

/**
 * PyTorch's F.dropout: in training each element is zeroed with probability p and
 * the others scaled by 1 / (1 - p); otherwise (or with p = 0) the input itself.
 * The mask comes from `generator` (core's seeded default unless given), so runs
 * repeat under manualSeed; its stream is not PyTorch's. The mask, already
 * scaled, is the one tensor the gradient keeps: dx = dy * mask.
 */
export function dropout(x: Tensor, p = 0.5, training = true, opts: { generator?: Generator } = {}): Tensor {
  const op = 'dropout';
  if (!(p >= 0 && p <= 1)) throw new Error(`${op}: probability has to be between 0 and 1, but got ${p}`);
  if (!training || p === 0) return x;
  if (hasHalf(x)) return viaFloat32(op, [x], (x32) => dropout(x32, p, training, opts)); // rounded once
  const backend = floatInputs(op, x);
  const gen = opts.generator ?? defaultGenerator;
  const values = new Float32Array(x.numel);
  // p = 1 zeroes everything (PyTorch gives zeros, not NaN from a scale of 1/0).
  const scale = p === 1 ? 0 : 1 / (1 - p);
  for (let i = 0; i < values.length; i++) values[i] = gen.uniform() < p ? 0 : scale;
  const mask = tensor(values, { shape: x.shape, device: x.device });
  const out = recordOp(mulKernel(backend, x, mask), op, [x], [mask], (dy, [m]) => [mulKernel(backend, dy, m!)]);
  mask.dispose(); // the node holds its own reference when it needs one
  return out;
}

function mulKernel(backend: Backend, a: Tensor, b: Tensor): Tensor {
  const out = empty(a.shape, 'float32', a.device);
  if (out.numel) backend.binary('mul', out.handle('dropout'), a.handle('dropout'), [1], b.handle('dropout'), [1], [a.numel]);
  return out;
}
