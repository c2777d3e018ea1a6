/** Gradient-ready hooks and backward-start listeners (the signals a data-parallel wrapper overlaps on). */
import test from 'ava';
import { useReferenceBackend } from './helpers/reference-backend.js';
import { memoryStats, nn, onBackwardStart, optim, randn, registerGradReadyHook, tensor, type Tensor } from '../src/index.js';

useReferenceBackend();

const values = (t: Tensor) => Array.from(t.toArray() as Float32Array);

test('hooks fire once per leaf, in the order backward finishes them (last layer first), with the final grad', (t) => {
  const a = tensor([1, 2], { requiresGrad: true });
  const b = tensor([3, 4], { requiresGrad: true });
  const c = tensor([5, 6], { requiresGrad: true });
  const seen: [string, number[]][] = [];
  const names = new Map([[a, 'a'], [b, 'b'], [c, 'c']]);
  for (const p of [a, b, c]) registerGradReadyHook(p, (leaf) => seen.push([names.get(leaf)!, values(leaf.grad!)]));
  // ((a * 2) * b) * c: c's gradient is ready first, then b's, then a's.
  a.mul(2).mul(b).mul(c).sum().backward();
  t.deepEqual(seen.map(([n]) => n), ['c', 'b', 'a']);
  t.deepEqual(seen[0][1], [6, 16]);
  t.deepEqual(seen[2][1], [30, 48]);
});

test('a leaf reached by several paths fires once, after the last path delivered', (t) => {
  const x = tensor([3], { requiresGrad: true });
  const w = tensor([2], { requiresGrad: true });
  const grads: number[][] = [];
  registerGradReadyHook(x, (leaf) => grads.push(values(leaf.grad!)));
  // x feeds the graph early (x*x) and late (+ x*w): d/dx = 2x + w = 8
  x.mul(x).add(x.mul(w)).mul(1).sum().backward();
  t.deepEqual(grads, [[8]]);
});

test('an unused leaf never fires; the backward-start listener says it is unreachable', (t) => {
  const used = tensor([1], { requiresGrad: true });
  const unused = tensor([1], { requiresGrad: true });
  let fired = 0;
  registerGradReadyHook(unused, () => fired++);
  registerGradReadyHook(used, () => {});
  const reach: boolean[] = [];
  const h = onBackwardStart((info) => reach.push(info.reaches(used), info.reaches(unused)));
  used.mul(2).sum().backward();
  h.remove();
  t.is(fired, 0);
  t.deepEqual(reach, [true, false]);
  used.mul(2).sum().backward();
  t.is(reach.length, 2, 'a removed listener is not called');
});

test('retainGraph: every backward through the graph fires again', (t) => {
  const x = tensor([1, 2], { requiresGrad: true });
  let fired = 0;
  registerGradReadyHook(x, () => fired++);
  const y = x.mul(x).sum();
  y.backward({ retainGraph: true });
  y.backward();
  t.is(fired, 2);
  t.deepEqual(values(x.grad!), [4, 8]);
});

test('a leaf root fires too; a removed hook does not; non-leaves are refused', (t) => {
  const x = tensor([5], { requiresGrad: true });
  let a = 0;
  let b = 0;
  const ha = registerGradReadyHook(x, () => a++);
  registerGradReadyHook(x, () => b++);
  x.backward();
  ha.remove();
  ha.remove();
  x.mul(3).sum().backward();
  t.deepEqual([a, b], [1, 2]);
  t.throws(() => registerGradReadyHook(x.mul(2), () => {}), { message: /not a leaf/ });
});

test('a hook may remove itself while it runs', (t) => {
  const x = tensor([1], { requiresGrad: true });
  let n = 0;
  const h = registerGradReadyHook(x, () => { n++; h.remove(); });
  x.mul(2).sum().backward();
  x.mul(2).sum().backward();
  t.is(n, 1);
});

test('hooks on a model add no memory over many steps', (t) => {
  const model = new nn.Sequential(new nn.Linear(4, 8), new nn.ReLU(), new nn.Linear(8, 2));
  const opt = new optim.SGD(model.parameters(), { lr: 0.01 });
  let fired = 0;
  const handles = model.parameters().map((p) => registerGradReadyHook(p, () => fired++));
  const step = () => {
    opt.zeroGrad();
    model.forward(randn([3, 4])).sum().backward();
    opt.step();
  };
  for (let i = 0; i < 20; i++) step();
  const before = memoryStats().allocated;
  for (let i = 0; i < 300; i++) step();
  t.is(memoryStats().allocated, before);
  t.is(fired, 320 * 4);
  for (const h of handles) h.remove();
});
