/** Core's nn.Module tree and optimizer mechanics, on the reference backend stand-in. */
import test from 'ava';
import { useReferenceBackend } from './helpers/reference-backend.js';
import { nn, optim, randn, tensor, zeros, type Tensor } from '../src/index.js';

useReferenceBackend();

class Block extends nn.Module {
  declare conv: nn.Conv2d;
  declare bn: nn.BatchNorm2d;
  constructor() {
    super();
    this.addModule('conv', new nn.Conv2d(2, 4, 3, { padding: 1 }));
    this.addModule('bn', new nn.BatchNorm2d(4));
    this.registerBuffer('scale', tensor([2]));
  }
  forward(x: Tensor): Tensor {
    return this.bn.forward(this.conv.forward(x));
  }
}

test('the tree is walked in registration order, depth first, with dotted names', (t) => {
  const model = new nn.Sequential(new Block(), new nn.ReLU(), new nn.Flatten());
  t.deepEqual([...model.namedModules()].map(([n]) => n), ['', '0', '0.conv', '0.bn', '1', '2']);
  t.deepEqual([...model.namedParameters()].map(([n]) => n), ['0.conv.weight', '0.conv.bias', '0.bn.weight', '0.bn.bias']);
  t.deepEqual([...model.namedBuffers()].map(([n]) => n), ['0.scale', '0.bn.runningMean', '0.bn.runningVar']);
  // PyTorch's order: a module's own parameters and buffers, then its children's
  t.deepEqual(Object.keys(model.stateDict()), ['0.scale', '0.conv.weight', '0.conv.bias', '0.bn.weight', '0.bn.bias',
    '0.bn.runningMean', '0.bn.runningVar', '0.bn.numBatchesTracked']);
  const order: string[] = [];
  model.apply((m) => order.push(m.constructor.name));
  t.deepEqual(order, ['Conv2d', 'BatchNorm2d', 'Block', 'ReLU', 'Flatten', 'Sequential'], 'children first, as PyTorch');
});

test('train/eval reach every descendant; properties follow replacements', (t) => {
  const block = new Block();
  block.eval();
  t.false(block.bn.training);
  block.train();
  t.true(block.bn.training);
  const other = new nn.BatchNorm2d(4);
  block.addModule('bn', other);
  t.is(block.bn, other);
  t.deepEqual([...block.namedChildren()].map(([n]) => n), ['conv', 'bn'], 'a replacement keeps its place');
});

test('names cannot clash or contain dots', (t) => {
  const block = new Block();
  t.throws(() => block.registerParameter('conv', null), { message: /a module has that name/ });
  t.throws(() => block.addModule('a.b', new nn.ReLU()), { message: /must be non-empty and contain no '.'/ });
  t.throws(() => block.registerBuffer('forward', null), { message: /attribute 'forward' already exists/ });
});

test('stateDict round-trips, numBatchesTracked included; strict loading names bad keys and shapes', (t) => {
  const a = new Block();
  a.forward(randn([2, 2, 3, 3]));
  const b = new Block();
  b.loadStateDict(a.stateDict());
  t.deepEqual(Array.from(b.conv.weight.toArray() as Float32Array), Array.from(a.conv.weight.toArray() as Float32Array));
  t.deepEqual(Array.from(b.bn.runningVar!.toArray() as Float32Array), Array.from(a.bn.runningVar!.toArray() as Float32Array));
  t.is(b.bn.numBatchesTracked, 1);
  t.not(b.conv.weight, a.conv.weight, 'values are copied, not shared');
  const { scale: _scale, ...missing } = a.stateDict();
  t.throws(() => b.loadStateDict(missing), { message: /missing keys \[scale\], unexpected keys \[\]/ });
  t.throws(() => b.loadStateDict({ ...a.stateDict(), 'conv.bias': zeros([5]) }),
    { message: /'conv.bias' has shape \[5\], the module expects \[4\]/ });
  // Same element count and rank, other layout: a transposed weight must not load silently (PyTorch refuses it).
  const lin = new nn.Linear(3, 2);
  t.throws(() => lin.loadStateDict({ weight: randn([3, 2]), bias: zeros([2]) }),
    { message: /'weight' has shape \[3,2\], the module expects \[2,3\]/ });
});

test('to() keeps the same Parameter objects; zeroGrad clears gradients', (t) => {
  const model = new nn.Linear(3, 2);
  const params = model.parameters();
  t.is(model.to('cpu'), model);
  t.deepEqual(model.parameters(), params);
  model.forward(randn([4, 3])).sum().backward();
  t.truthy(model.weight.grad);
  model.zeroGrad();
  t.is(model.weight.grad, null);
});

test('SGD refuses bad hyper-parameters and steps only parameters with gradients', (t) => {
  const p = new nn.Parameter(tensor([1, 2]));
  t.throws(() => new optim.SGD([p], { lr: NaN }), { message: /SGD: lr must be a finite non-negative number, got NaN/ });
  t.throws(() => new optim.SGD([p], { lr: 0.1, nesterov: true }), { message: /nesterov momentum requires a momentum/ });
  const opt = new optim.SGD([p], { lr: 0.5 });
  opt.step();
  t.deepEqual(Array.from(p.toArray() as Float32Array), [1, 2], 'no gradient, no step');
  p.grad = tensor([2, 2]);
  opt.step();
  t.deepEqual(Array.from(p.toArray() as Float32Array), [0, 1]);
});

test('default initialisation is PyTorch\'s: U(-1/sqrt(fanIn), 1/sqrt(fanIn)); BatchNorm starts at 1 and 0', (t) => {
  const lin = new nn.Linear(100, 50);
  const w = Array.from(lin.weight.toArray() as Float32Array);
  const bound = 1 / Math.sqrt(100);
  t.true(w.every((v) => Math.abs(v) <= bound));
  t.true(Math.max(...w) > 0.9 * bound && Math.min(...w) < -0.9 * bound, 'the whole range is used');
  const bn = new nn.BatchNorm1d(3);
  t.deepEqual(Array.from(bn.weight!.toArray() as Float32Array), [1, 1, 1]);
  t.deepEqual(Array.from(bn.bias!.toArray() as Float32Array), [0, 0, 0]);
  t.deepEqual(Array.from(bn.runningVar!.toArray() as Float32Array), [1, 1, 1]);
});
