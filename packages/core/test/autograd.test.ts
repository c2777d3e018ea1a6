/** Core's autograd and tensor mechanics, on the reference backend stand-in (core itself has no kernels). */
import test from 'ava';
import { useReferenceBackend } from './helpers/reference-backend.js';
import { F, full, noGrad, ones, randn, tensor, zeros, type Tensor } from '../src/index.js';

useReferenceBackend();

const values = (t: Tensor) => Array.from(t.toArray() as Float32Array);

test('gradients accumulate across backward calls until cleared', (t) => {
  const w = tensor([1, 2, 3], { requiresGrad: true });
  w.mul(2).sum().backward();
  t.deepEqual(values(w.grad!), [2, 2, 2]);
  w.mul(w).sum().backward();
  t.deepEqual(values(w.grad!), [4, 6, 8]);
  w.grad = null;
  w.sum().backward();
  t.deepEqual(values(w.grad!), [1, 1, 1]);
});

test('a tensor used twice gets the sum of both paths', (t) => {
  const x = tensor([3], { requiresGrad: true });
  x.mul(x).add(x).sum().backward(); // d(x^2 + x) = 2x + 1
  t.deepEqual(values(x.grad!), [7]);
});

test('noGrad and detach record nothing', (t) => {
  const x = tensor([1, 2], { requiresGrad: true });
  const y = noGrad(() => x.mul(3));
  t.false(y.requiresGrad);
  t.is(y.gradFn, null);
  const d = x.detach();
  t.false(d.requiresGrad);
  t.deepEqual(values(d), [1, 2]);
  t.throws(() => y.backward(), { message: /does not require grad/ });
});

test('backward needs a gradient for non-scalar outputs, of the right size', (t) => {
  const x = randn([2, 3], { requiresGrad: true });
  const y = x.mul(2);
  t.throws(() => y.backward(), { message: /implicitly created only for scalar outputs, got shape \[2,3\]/ });
  t.throws(() => y.backward(ones([4])), { message: /gradient of shape \[4\] does not match output \[2,3\]/ });
  y.backward(full([2, 3], 0.5));
  t.deepEqual(values(x.grad!), new Array(6).fill(1));
});

test('requiresGrad is for floating-point leaves only', (t) => {
  const x = tensor([1], { requiresGrad: true });
  t.throws(() => { x.mul(2).requiresGrad = true; }, { message: /only be set on leaf tensors/ });
  t.throws(() => { tensor(new Int32Array([1])).requiresGrad = true; }, { message: /only floating-point tensors/ });
});

test('views share storage; dispose frees only after the last view, and use after dispose names the op', (t) => {
  const x = tensor([1, 2, 3, 4]);
  const v = x.view([2, 2]);
  x.dispose();
  t.true(x.isReleased);
  t.deepEqual(values(v), [1, 2, 3, 4], 'the view keeps the storage alive');
  t.throws(() => x.add(1), { message: /add: tensor of shape \[4\] was released by dispose\(\)/ });
  t.throws(() => x.toArray(), { message: /toArray: tensor of shape \[4\] was released by dispose\(\)/ });
  x.dispose(); // twice is harmless
});

test('to() on the same device is the tensor itself; an unknown device is refused', (t) => {
  const x = zeros([2]);
  t.is(x.to('cpu'), x);
  // @ts-expect-error: not a device name, refused at compile time too (DeviceLike); a name read at run time is checked
  t.throws(() => x.to('tpu:0'), { message: /unknown device 'tpu:0'/ });
});

test('factories: nested arrays, explicit shapes, item()', (t) => {
  const x = tensor([[1, 2, 3], [4, 5, 6]]);
  t.deepEqual(x.shape, [2, 3]);
  t.throws(() => tensor([[1, 2], [3]]), { message: /ragged/ });
  t.throws(() => tensor([1, 2, 3], { shape: [2, 2] }), { message: /shape \[2,2\] does not match 3 values/ });
  t.is(tensor([[7]]).item(), 7);
  t.throws(() => x.item(), { message: /item: tensor of shape \[2,3\] has 6 elements, not 1/ });
  t.is(F.mean(x).item(), 3.5);
});
