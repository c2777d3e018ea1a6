/** Memory formats (channels-last) in core, on the reference backend stand-in: storage order, propagation, the guard. */
import test from 'ava';
import { useReferenceBackend } from './helpers/reference-backend.js';
import { endStep, F, memoryStats, noGrad, randn, tensor, type MemoryFormat, type Tensor } from '../src/index.js';

useReferenceBackend();

const values = (t: Tensor, order?: 'storage') => Array.from(t.toArray(order ? { order } : {}) as Float32Array);
const iota = (shape: number[]) => tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i),
  { shape });
const close = (t: { true(v: boolean, m?: string): void }, a: number[], b: number[], tol = 1e-5) => {
  t.true(a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) <= tol * (1 + Math.abs(b[i]))),
    `${a.slice(0, 8)} vs ${b.slice(0, 8)}`);
};

test('contiguous(channelsLast) stores NHWC, keeps the NCHW shape and logical values', (t) => {
  const x = iota([1, 2, 2, 3]); // c0: 0..5, c1: 6..11
  t.is(x.memoryFormat, 'contiguous');
  const y = x.contiguous('channelsLast');
  t.deepEqual([...y.shape], [1, 2, 2, 3]);
  t.is(y.memoryFormat, 'channelsLast');
  t.true(y.isContiguous('channelsLast'));
  t.false(y.isContiguous());
  t.deepEqual(y.strides, [12, 1, 6, 2]);
  t.deepEqual(values(y), values(x), 'toArray is in logical order');
  t.deepEqual(values(y, 'storage'), [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11]);
  const back = y.contiguous();
  t.is(back.memoryFormat, 'contiguous');
  t.deepEqual(values(back, 'storage'), values(x));
  t.is(y.contiguous('channelsLast'), y, 'already in that format: the tensor itself');
  t.is(x.contiguous(), x);
});

test('5D channels-last is NDHWC', (t) => {
  const x = iota([1, 2, 2, 1, 2]);
  const y = x.contiguous('channelsLast');
  t.deepEqual(y.strides, [8, 1, 4, 4, 2]);
  t.deepEqual(values(y, 'storage'), [0, 4, 1, 5, 2, 6, 3, 7]);
  t.deepEqual(values(y), values(x));
});

test('size-1 dimensions make a tensor both contiguous and channels-last (as PyTorch)', (t) => {
  const x = iota([2, 3, 1, 1]);
  t.true(x.isContiguous('channelsLast'));
  t.is(x.contiguous('channelsLast'), x);
  const y = iota([2, 1, 2, 2]).contiguous('channelsLast');
  t.true(y.isContiguous());
  // A view to another shape of such a storage is fine: its order is row-major too.
  t.deepEqual([...y.view([2, 4]).shape], [2, 4]);
});

test('channels-last needs 4D or 5D; unknown formats are named', (t) => {
  t.throws(() => iota([2, 3]).contiguous('channelsLast'), { message: /channelsLast needs a 4D .* got shape \[2,3\]/ });
  t.throws(() => iota([1, 2, 2, 2]).contiguous('nhwc' as never), { message: /unknown memory format 'nhwc'/ });
  t.false(iota([2, 3]).isContiguous('channelsLast'));
});

test('clone and unary, scalar and same-format binary ops keep channels-last', (t) => {
  const x = randn([2, 3, 2, 2]).contiguous('channelsLast');
  const z = randn([2, 3, 2, 2]).contiguous('channelsLast');
  const ref = x.contiguous();
  for (const [name, y, expect] of [
    ['clone', x.clone(), values(ref)],
    ['relu', x.relu(), values(ref.relu())],
    ['exp', x.exp(), values(ref.exp())],
    ['neg', x.neg(), values(ref.neg())],
    ['mul scalar', x.mul(3), values(ref.mul(3))],
    ['add', x.add(z), values(ref.add(z.contiguous()))],
    ['mul', x.mul(z), values(ref.mul(z.contiguous()))],
  ] as const) {
    t.is(y.memoryFormat, 'channelsLast', name);
    close(t, values(y), expect);
  }
});

test('binary ops: the first full-shape operand decides the format; broadcasting reads each operand by its strides', (t) => {
  const x = randn([2, 3, 2, 2]).contiguous('channelsLast');
  const r = randn([2, 3, 2, 2]);
  const bias = randn([1, 3, 1, 1]);
  const xr = x.contiguous();
  const cases: [string, Tensor, MemoryFormat, number[]][] = [
    ['cl + rowmajor', x.add(r), 'channelsLast', values(xr.add(r))],
    ['rowmajor + cl', r.sub(x), 'contiguous', values(r.sub(xr))],
    ['cl * bias', x.mul(bias), 'channelsLast', values(xr.mul(bias))],
    ['bias - cl', bias.sub(x), 'channelsLast', values(bias.sub(xr))],
    ['cl / [W]', x.div(tensor([2, 4])), 'channelsLast', values(xr.div(tensor([2, 4])))],
  ];
  for (const [name, y, format, expect] of cases) {
    t.is(y.memoryFormat, format, name);
    close(t, values(y), expect);
  }
});

test('ops that do not read channels-last get a row-major copy (the guard); results are right', (t) => {
  const x = randn([2, 3, 2, 2]).contiguous('channelsLast');
  const xr = x.contiguous();
  close(t, values(x.sum([0, 2, 3])), values(xr.sum([0, 2, 3])));
  close(t, values(x.softmax(1)), values(xr.softmax(1)));
  close(t, values(x.transpose(1, 3)), values(xr.transpose(1, 3)));
  close(t, values(x.reshape([2, 12])), values(xr.reshape([2, 12])));
  close(t, values(x.flatten(1)), values(xr.flatten(1)));
  t.is(x.sum([0, 2, 3]).memoryFormat, 'contiguous');
  t.throws(() => x.view([2, 12]), { message: /view: a channels-last tensor of shape \[2,3,2,2\] cannot be viewed/ });
});

test('a kernel call on channels-last storage without the guard is refused, not misread', (t) => {
  const x = randn([1, 2, 2, 2]).contiguous('channelsLast');
  t.throws(() => x.handle('SGD.step'), { message: /SGD.step: reads its input in row-major order but got a channels-last/ });
  t.notThrows(() => x.handle('add'), 'elementwise ops read any order');
});

test('gradients have the format of their tensor', (t) => {
  const base = randn([2, 3, 2, 2]);
  const x = base.contiguous('channelsLast').detach();
  x.requiresGrad = true;
  const w = randn([2, 3, 2, 2]);
  // Through ops that keep the format, one that does not (sum over a copy), and a mixed binary.
  x.relu().mul(w).sum().backward();
  t.is(x.grad!.memoryFormat, 'channelsLast');
  const xr = base.detach();
  xr.requiresGrad = true;
  xr.relu().mul(w).sum().backward();
  close(t, values(x.grad!), values(xr.grad!));
  // A row-major leaf whose gradient flows through channels-last ops gets a row-major one.
  const r = randn([2, 3, 2, 2], { requiresGrad: true });
  r.contiguous('channelsLast').mul(2).sum().backward();
  t.is(r.grad!.memoryFormat, 'contiguous');
  t.deepEqual(values(r.grad!), new Array(24).fill(2));
  // Accumulating gradients of either format into a channels-last leaf.
  x.grad = null;
  x.mul(2).sum().backward();
  x.contiguous().mul(3).sum().backward();
  t.is(x.grad!.memoryFormat, 'channelsLast');
  t.deepEqual(values(x.grad!), new Array(24).fill(5));
});

test('batch norm runs channels-last as [N*H*W, C, 1] and keeps the format', (t) => {
  const xr = randn([3, 4, 2, 3]).mul(2).add(1);
  const x = xr.contiguous('channelsLast');
  t.deepEqual(F.bnLayout('batchNorm', x), { n: 18, c: 4, hw: 1 });
  t.deepEqual(F.bnLayout('batchNorm', xr), { n: 3, c: 4, hw: 6 });
  const stats = values(F.batchNormStats(x));
  close(t, stats, values(F.batchNormStats(xr)), 1e-5);
  const weight = randn([4]);
  const bias = randn([4]);
  const rm1 = randn([4]).mul(0.1);
  const rv1 = randn([4]).exp();
  const rm2 = rm1.clone();
  const rv2 = rv1.clone();
  const y = F.batchNorm(x, rm1, rv1, weight, bias, true, 0.1, 1e-5);
  const yr = F.batchNorm(xr, rm2, rv2, weight, bias, true, 0.1, 1e-5);
  t.is(y.memoryFormat, 'channelsLast');
  close(t, values(y), values(yr), 1e-5);
  close(t, values(rm1), values(rm2));
  close(t, values(rv1), values(rv2));
});

test('a channels-last storage cannot be read as another shape through assign', (t) => {
  const x = randn([1, 2, 2, 2]).contiguous('channelsLast');
  const flat = randn([8]);
  t.throws(() => flat._assign(x), { message: /channels-last \[1,2,2,2\] storage cannot be read as \[8\]/ });
});

test('a plain loop over channels-last tensors stays flat (lent copies and conversions are released)', (t) => {
  const weight = randn([4]).keep();
  const bias = randn([4]).keep();
  const step = () => {
    const x = randn([2, 4, 3, 3]).contiguous('channelsLast').detach();
    x.requiresGrad = true;
    noGrad(() => F.batchNorm(x, null, null, weight, bias, true, 0.1, 1e-5)); // (the stand-in has no BN backward)
    const y = x.relu().add(bias.reshape([1, 4, 1, 1]));
    // sum reads a lent row-major copy; mul meets a row-major operand; gradients go back to channels-last
    y.mul(y.contiguous()).sum().backward();
    x.grad = null;
    endStep();
  };
  for (let i = 0; i < 5; i++) step();
  const before = memoryStats().allocated;
  for (let i = 0; i < 30; i++) step();
  t.is(memoryStats().allocated, before);
});
