/**
 * Channels-last against PyTorch (fixtures/channels-last.json, tools/gen-layout-fixtures.py):
 * batch norm modules (4D/5D, every affine/momentum/running-stats combination, 3 training
 * steps and 1 eval step), conv2d, pooling and the elementwise format rule, on channels-last
 * inputs; values, and that outputs and input gradients are channels-last where PyTorch's are.
 * Runs on the CPU and (the package's test script) on the emulated cuda:0.
 */
import test, { type ExecutionContext } from 'ava';
import { useOneDnn } from '@bagua/kernels';
import { type Backend, F, memoryStats, nn, optim, randn, tensor, type Tensor } from '@bagua/core';
import { assertClose, DEFAULT_TOL, loadFixture, testDevice, toTensor, type FixtureTensor } from '@bagua/testing';

type T = FixtureTensor;
type TN = FixtureTensor | null;

interface BnCase {
  name: string; module: 'BatchNorm2d' | 'BatchNorm3d'; numFeatures: number;
  options: { eps: number; momentum: number | null; affine: boolean; trackRunningStats: boolean };
  initial: { weight: TN; bias: TN; runningMean: TN; runningVar: TN };
  steps: {
    training: boolean; input: T; output: T; gradOutput: T; gradInput: T; gradWeight: TN; gradBias: TN;
    runningMean: TN; runningVar: TN; numBatchesTracked: number | null;
    outputChannelsLast: boolean; gradInputChannelsLast: boolean;
  }[];
}
interface ConvCase {
  name: string; x: T; w: T; b: TN;
  attrs: { stride: [number, number]; padding: [number, number]; dilation: [number, number]; groups: number };
  output: T; gradOutput: T; grads: Record<string, T>; outputChannelsLast: boolean; gradInputChannelsLast: boolean;
}
interface PoolCase {
  name: string; op: 'maxPool2d' | 'avgPool2d' | 'adaptiveAvgPool2d'; x: T;
  attrs: { kernelSize?: [number, number]; stride?: [number, number]; padding?: [number, number];
    countIncludePad?: boolean; outputSize?: [number, number] };
  output: T; gradOutput: T; gradInput: T; outputChannelsLast: boolean; gradInputChannelsLast: boolean;
}
interface ElementwiseCase {
  name: string; op: 'add' | 'sub' | 'mul' | 'relu' | 'mulScalar'; a: T; aChannelsLast: boolean; b: TN;
  bChannelsLast: boolean; output: T; outputChannelsLast: boolean; outputContiguous: boolean;
}
interface LayoutFixture {
  expectedCounts: Record<string, number>;
  torch32Worst: Record<string, number>;
  batchnorm: BnCase[]; conv: ConvCase[]; pool: PoolCase[]; elementwise: ElementwiseCase[];
}

const fx = loadFixture<LayoutFixture>('channels-last.json');
const device = testDevice();
// PyTorch's own float32 convolution misses the default tolerance by up to 1.33x (torch32Worst.conv):
// sums of 27-54 products rounded in another order. 4x the default covers it with margin.
const CONV_TOL = { rtol: 4e-5, atol: 4e-6 };

const EXPECTED = { batchnorm: 16, conv: 4, pool: 6, elementwise: 7, sync: 4 };

test('parity channels-last.json: fixture holds every expected case', (t) => {
  t.deepEqual(fx.expectedCounts, EXPECTED);
  t.is(fx.batchnorm.length, EXPECTED.batchnorm);
  t.true(fx.torch32Worst.conv! < CONV_TOL.rtol / DEFAULT_TOL.rtol, 'the conv tolerance covers PyTorch float32');
});

/** A channels-last tensor from a fixture (values in logical order), optionally a leaf that requires grad. */
function cl(ft: T, requiresGrad = false): Tensor {
  const x = toTensor(ft).contiguous('channelsLast').detach();
  if (requiresGrad) x.requiresGrad = true;
  return x;
}

/** Our tensor is channels-last exactly where PyTorch's is (and stored so when it is not also row-major). */
function checkFormat(t: ExecutionContext, y: Tensor | null, torchCl: boolean, label: string): void {
  t.truthy(y, `${label}: missing`);
  if (!y) return;
  t.is(y.isContiguous('channelsLast'), torchCl, `${label}: channels-last as PyTorch's`);
  if (torchCl && !y.isContiguous()) t.is(y.memoryFormat, 'channelsLast', `${label}: memoryFormat`);
}

for (const c of fx.batchnorm) {
  test(`parity channels-last batchnorm: ${c.name}`, (t) => {
    const m = new nn[c.module](c.numFeatures, c.options);
    const state: Record<string, Tensor> = { ...m.stateDict() };
    for (const k of ['weight', 'bias', 'runningMean', 'runningVar'] as const) {
      const v = c.initial[k];
      if (v) state[k] = toTensor(v, { device: 'cpu' });
    }
    m.loadStateDict(state);
    if (device !== 'cpu') m.to(device);
    c.steps.forEach((s, i) => {
      const label = `${c.name} step ${i} (${s.training ? 'train' : 'eval'})`;
      m.train(s.training);
      m.zeroGrad();
      const x = cl(s.input, true);
      const y = m.forward(x);
      assertClose(t, y, s.output, `${label} output`);
      checkFormat(t, y, s.outputChannelsLast, `${label} output`);
      y.backward(toTensor(s.gradOutput).contiguous('channelsLast'));
      assertClose(t, x.grad, s.gradInput, `${label} grad input`);
      checkFormat(t, x.grad, s.gradInputChannelsLast, `${label} grad input`);
      if (c.options.affine) {
        // per-channel sums of up to 120 terms that may cancel: 8x the default absolute tolerance
        assertClose(t, m.weight?.grad, s.gradWeight!, `${label} grad weight`, { rtol: 1e-5, atol: 8e-6 });
        assertClose(t, m.bias?.grad, s.gradBias!, `${label} grad bias`, { rtol: 1e-5, atol: 8e-6 });
      }
      if (c.options.trackRunningStats) {
        assertClose(t, m.runningMean, s.runningMean!, `${label} runningMean`);
        assertClose(t, m.runningVar, s.runningVar!, `${label} runningVar`);
        t.is(m.numBatchesTracked, s.numBatchesTracked ?? NaN);
      }
    });
  });
}

test('parity channels-last batchnorm: a row-major dy into channels-last batch norm gives the same gradient', (t) => {
  const c = fx.batchnorm[0]!;
  const s = c.steps[0]!;
  const x = cl(s.input, true);
  const y = F.batchNorm(x, null, null, null, null, true, 0.1, c.options.eps);
  y.backward(toTensor(s.gradOutput)); // row-major, as a layer that does not keep the format would send
  t.is(x.grad!.memoryFormat, 'channelsLast');
  const xr = toTensor(s.input, { requiresGrad: true });
  F.batchNorm(xr, null, null, null, null, true, 0.1, c.options.eps).backward(toTensor(s.gradOutput));
  assertClose(t, x.grad, { shape: s.input.shape, data: Array.from(xr.grad!.toArray() as Float32Array) }, 'grad x');
});

/**
 * Runs f with the calling thread's CPU convolutions on the built-in GEMM (oneDNN off): the
 * CPU backend then computes NCHW and core permutes channels-last operands, as on a machine
 * without oneDNN. Elsewhere (cuda:0) f as it is.
 */
function builtIn<T>(f: () => T): T {
  if (device !== 'cpu') return f();
  const was = useOneDnn();
  useOneDnn(false);
  try {
    return f();
  } finally {
    useOneDnn(was);
  }
}

const convVariants = device === 'cpu' ? [['', (f: () => void) => f()], [' (built-in conv, permuted)', builtIn]] as const
  : [['', (f: () => void) => f()]] as const;

for (const c of fx.conv) for (const [label, around] of convVariants) {
  test(`parity channels-last ${c.name}${label}`, (t) => around(() => {
    const x = cl(c.x, true);
    const w = toTensor(c.w, { requiresGrad: true });
    const b = c.b ? toTensor(c.b, { requiresGrad: true }) : null;
    const y = F.conv2d(x, w, b, c.attrs);
    assertClose(t, y, c.output, `${c.name} output`, CONV_TOL);
    checkFormat(t, y, c.outputChannelsLast, `${c.name} output`);
    y.backward(toTensor(c.gradOutput).contiguous('channelsLast'));
    assertClose(t, x.grad, c.grads.x!, `${c.name} grad x`, CONV_TOL);
    checkFormat(t, x.grad, c.gradInputChannelsLast, `${c.name} grad x`);
    assertClose(t, w.grad, c.grads.w!, `${c.name} grad w`, CONV_TOL);
    t.is(w.grad!.memoryFormat, 'contiguous', 'the weight gradient keeps the weight\'s format');
    if (b) assertClose(t, b.grad, c.grads.b!, `${c.name} grad b`, CONV_TOL);
  }));
}

/** Counts the backend's stridedCopy calls and records the geometries its conv / pool kernels get, during f. */
function spyKernels(backend: Backend, f: () => void): { copies: number; layouts: Record<string, boolean[]> } {
  const seen = { copies: 0, layouts: {} as Record<string, boolean[]> };
  const names = ['stridedCopy', 'conv2d', 'conv2dBackwardInput', 'conv2dBackwardWeight', 'maxPool2d', 'maxPool2dBackward',
    'avgPool2d', 'avgPool2dBackward', 'adaptiveAvgPool2d', 'adaptiveAvgPool2dBackward'] as const;
  const target = backend as unknown as Record<string, (...a: unknown[]) => unknown>;
  const saved = names.map((n) => [n, Object.prototype.hasOwnProperty.call(target, n), target[n]!] as const);
  for (const [name, , fn] of saved) {
    target[name] = (...a: unknown[]) => {
      if (name === 'stridedCopy') seen.copies++;
      else (seen.layouts[name] ??= []).push((a[a.length - 1] as { channelsLast?: boolean }).channelsLast === true);
      return fn.apply(backend, a);
    };
  }
  try {
    f();
  } finally {
    for (const [name, own, fn] of saved) {
      if (own) target[name] = fn;
      else delete target[name];
    }
  }
  return seen;
}

test('channels-last conv2d and pooling run on NHWC storage where the backend reads it (no permutations), else permute', (t) => {
  const c = fx.conv[0]!;
  const x = cl(c.x, true);
  const backend = x.storage('test').backend;
  const w = toTensor(c.w, { requiresGrad: true });
  const b = c.b ? toTensor(c.b, { requiresGrad: true }) : null;
  t.truthy(b, 'a case with a bias (its gradient too runs on NHWC storage)');
  const dy = toTensor(c.gradOutput).contiguous('channelsLast');
  const natConv = backend.nativeChannelsLast?.('conv2d') === true;
  const natPool = backend.nativeChannelsLast?.('pool2d') === true;
  t.log(`${device}: NHWC conv ${natConv ? 'native' : 'permuted'}, NHWC pooling ${natPool ? 'native' : 'permuted'}`);
  if (device === 'cpu') t.true(natPool, 'the CPU pools NHWC itself');
  const conv = spyKernels(backend, () => F.conv2d(x, w, b, c.attrs).backward(dy));
  assertClose(t, b!.grad, c.grads.b!, 'grad b', CONV_TOL);
  for (const k of ['conv2d', 'conv2dBackwardInput', 'conv2dBackwardWeight']) {
    t.deepEqual(conv.layouts[k], [natConv], `${k}: channelsLast in the geometry exactly where the backend takes it`);
  }
  // permuted: x in, y out; dy in, x in again (the weight gradient's), dx out
  // (and the bias gradient's sum, a reduction, reads another row-major copy of dy)
  t.is(conv.copies, natConv ? 0 : 6, 'stridedCopy calls in conv2d forward + backward');
  const p = fx.pool[0]!;
  const xp = cl(p.x, true);
  const dyp = toTensor(p.gradOutput).contiguous('channelsLast');
  const pool = spyKernels(backend, () => {
    F.maxPool2d(xp, p.attrs.kernelSize!, { stride: p.attrs.stride, padding: p.attrs.padding }).backward(dyp);
    F.avgPool2d(xp, 2).backward(F.avgPool2d(xp.detach(), 2).contiguous('channelsLast').detach());
  });
  t.deepEqual(pool.layouts.maxPool2d, [natPool]);
  t.deepEqual(pool.layouts.maxPool2dBackward, [natPool]);
  t.deepEqual(pool.layouts.avgPool2dBackward, [natPool]);
  // the last avgPool2d (the gradient's own, no grad) takes the same path as the first
  t.deepEqual(pool.layouts.avgPool2d, [natPool, natPool]);
  t.is(pool.copies, natPool ? 0 : 10, 'stridedCopy calls (permuted: x in and the output out per pooling, dy in and dx out per backward)');
  if (!natConv) {
    // a backend that does not declare NHWC refuses it by name rather than misreading
    const g = { n: 1, c: 1, h: 1, w: 1, k: 1, r: 1, s: 1, oh: 1, ow: 1, strideH: 1, strideW: 1, padH: 0, padW: 0,
      dilH: 1, dilW: 1, groups: 1, channelsLast: true };
    const one = () => toTensor({ shape: [1, 1, 1, 1], data: [1] });
    const y = one();
    const err = t.throws(() => backend.conv2d(y.handle('t'), one().handle('t'), one().handle('t'), null, g));
    t.regex(err!.message, /NHWC \(channels-last\) convolution/);
  }
  if (!natPool) {
    const g = { planes: 1, h: 1, w: 1, oh: 1, ow: 1, kh: 1, kw: 1, strideH: 1, strideW: 1, padH: 0, padW: 0, dilH: 1,
      dilW: 1, countIncludePad: true, channelsLast: true, channels: 1 };
    const one = () => toTensor({ shape: [1, 1, 1, 1], data: [1] });
    const err = t.throws(() => backend.avgPool2d(one().handle('t'), one().handle('t'), g));
    t.regex(err!.message, /NHWC \(channels-last\) pooling is not implemented/);
  }
});

test('channels-last pooling equals NCHW pooling on this device bit for bit (outputs and input gradients; NaN; odd channel counts)', (t) => {
  const bitsOf = (y: Tensor | null) => Array.from(new Uint32Array((y!.toArray() as Float32Array).buffer));
  const ops: [string, (x: Tensor) => Tensor][] = [
    ['max 3x3 s2 p1', (x) => F.maxPool2d(x, 3, { stride: 2, padding: 1 })],
    ['max 2x3 s(1,2) dil(2,1)', (x) => F.maxPool2d(x, [2, 3], { stride: [1, 2], padding: [1, 1], dilation: [2, 1] })],
    ['avg 3x3 s2 p1 exclude pad', (x) => F.avgPool2d(x, 3, { stride: 2, padding: 1, countIncludePad: false })],
    ['avg 2x2', (x) => F.avgPool2d(x, 2)],
    ['adaptive 3x2', (x) => F.adaptiveAvgPool2d(x, [3, 2])],
    ['adaptive 1x1', (x) => F.adaptiveAvgPool2d(x, 1)],
  ];
  for (const shape of [[2, 5, 9, 8], [3, 17, 6, 7], [1, 1, 5, 5]]) {
    const base = randn(shape).toArray() as Float32Array;
    base[3] = NaN; // max pooling: NaN wins its windows, with the same index either way
    for (const [name, op] of ops) {
      const run = (format: 'contiguous' | 'channelsLast') => {
        const x = tensor(base, { shape, device }).contiguous(format).detach();
        x.requiresGrad = true;
        const y = op(x);
        const dy = tensor(Float32Array.from({ length: y.numel }, (_, i) => Math.sin(i + 1)), { shape: y.shape, device });
        y.backward(dy.contiguous(format));
        return { y, dx: x.grad, format: y.memoryFormat };
      };
      const a = run('contiguous'), b = run('channelsLast');
      t.deepEqual(bitsOf(b.y), bitsOf(a.y), `[${shape}] ${name}: output`);
      t.deepEqual(bitsOf(b.dx), bitsOf(a.dx), `[${shape}] ${name}: input gradient`);
    }
  }
});

test('contiguous(channelsLast) and back: the permutations (tiled transposes) on sizes on and off the tiles, 4D and 5D', (t) => {
  for (const shape of [[2, 37, 5, 9], [1, 33, 33, 2], [3, 64, 8, 8], [2, 5, 3, 4, 6], [1, 70, 1, 40], [2, 3, 1, 1]]) {
    const [n, c] = shape as [number, number];
    const hw = shape.slice(2).reduce((a, b) => a * b, 1);
    const x = randn(shape, { device });
    const logical = x.toArray() as Float32Array;
    const want = new Float32Array(logical.length);
    for (let i = 0; i < n; i++) for (let ch = 0; ch < c; ch++) for (let p = 0; p < hw; p++) want[(i * hw + p) * c + ch] = logical[(i * c + ch) * hw + p]!;
    const y = x.contiguous('channelsLast');
    t.deepEqual(Array.from(y.toArray({ order: 'storage' }) as Float32Array), Array.from(want), `[${shape}] NCHW -> NHWC`);
    const back = y.contiguous();
    t.deepEqual(Array.from(back.toArray({ order: 'storage' }) as Float32Array), Array.from(logical), `[${shape}] NHWC -> NCHW`);
  }
});

if (device === 'cpu') {
  test('channels-last conv2d with oneDNN turned off between forward and backward: the backward permutes', (t) => {
    const c = fx.conv[0]!;
    const x = cl(c.x, true);
    const w = toTensor(c.w, { requiresGrad: true });
    const y = F.conv2d(x, w, null, c.attrs);
    builtIn(() => y.backward(toTensor(c.gradOutput).contiguous('channelsLast')));
    assertClose(t, x.grad, c.grads.x!, 'grad x', CONV_TOL);
    assertClose(t, w.grad, c.grads.w!, 'grad w', CONV_TOL);
    t.is(x.grad!.memoryFormat, 'channelsLast');
  });
}

for (const c of fx.pool) {
  test(`parity channels-last ${c.name}`, (t) => {
    const x = cl(c.x, true);
    const a = c.attrs;
    const y = c.op === 'maxPool2d' ? F.maxPool2d(x, a.kernelSize!, { stride: a.stride, padding: a.padding })
      : c.op === 'avgPool2d'
        ? F.avgPool2d(x, a.kernelSize!, { stride: a.stride, padding: a.padding, countIncludePad: a.countIncludePad })
        : F.adaptiveAvgPool2d(x, a.outputSize!);
    assertClose(t, y, c.output, `${c.name} output`);
    checkFormat(t, y, c.outputChannelsLast, `${c.name} output`);
    y.backward(toTensor(c.gradOutput));
    assertClose(t, x.grad, c.gradInput, `${c.name} grad input`);
    checkFormat(t, x.grad, c.gradInputChannelsLast, `${c.name} grad input`);
  });
}

for (const c of fx.elementwise) {
  test(`parity channels-last elementwise ${c.name}`, (t) => {
    const a = c.aChannelsLast ? cl(c.a) : toTensor(c.a);
    const b = c.b ? (c.bChannelsLast ? cl(c.b) : toTensor(c.b)) : null;
    const y = c.op === 'relu' ? a.relu() : c.op === 'mulScalar' ? a.mul(2.5)
      : c.op === 'add' ? a.add(b!) : c.op === 'sub' ? a.sub(b!) : a.mul(b!);
    assertClose(t, y, c.output, `${c.name} output`);
    t.is(y.isContiguous('channelsLast'), c.outputChannelsLast, `${c.name}: channels-last as PyTorch's`);
    t.is(y.isContiguous(), c.outputContiguous, `${c.name}: row-major as PyTorch's`);
  });
}

test("conv2d's output format is PyTorch's: channels-last when the input or the weight strictly is", (t) => {
  const dev = testDevice();
  const x = randn([2, 3, 5, 5], { device: dev });
  const w = randn([4, 3, 3, 3], { device: dev });
  const y = F.conv2d(x, w.contiguous('channelsLast'), null, { padding: 1 });
  t.is(y.memoryFormat, 'channelsLast', 'row-major input, channels-last weight (torch 1.13: channels-last)');
  const ref = F.conv2d(x, w, null, { padding: 1 });
  assertClose(t, y, { shape: [...ref.shape], data: [...(ref.toArray() as Float32Array)] }, 'values');
  // One input channel: the weight [4, 1, 3, 3] reads the same in both orders, so torch answers row-major.
  const y1 = F.conv2d(randn([2, 1, 5, 5], { device: dev }), randn([4, 1, 3, 3], { device: dev }).contiguous('channelsLast'));
  t.is(y1.memoryFormat, 'contiguous');
});

test('channels-last survives clone, and to(device) both ways', (t) => {
  const x = cl(fx.conv[0]!.x);
  const c = x.clone();
  t.is(c.memoryFormat, 'channelsLast');
  const moved = x.to('cpu'); // from cuda:0 a download; on the CPU the tensor itself
  t.is(moved.device.type, 'cpu');
  t.is(moved.memoryFormat, 'channelsLast');
  const back = moved.to(device);
  t.is(back.memoryFormat, 'channelsLast');
  assertClose(t, back, fx.conv[0]!.x, 'values after the round trip', { rtol: 0, atol: 0 });
  t.deepEqual(Array.from(back.toArray({ order: 'storage' }) as Float32Array),
    Array.from(x.toArray({ order: 'storage' }) as Float32Array));
});

test('a training loop on channels-last input keeps memory flat (conv, batch norm, pooling, SGD)', (t) => {
  const model = new nn.Sequential(new nn.Conv2d(3, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(),
    new nn.MaxPool2d(2), new nn.Conv2d(8, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(),
    new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(8, 4));
  model.to(device);
  const opt = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
  const x = randn([4, 3, 8, 8], { device }).contiguous('channelsLast').keep();
  const target = tensor(Int32Array.from([0, 1, 2, 3]), { dtype: 'int32', device }).keep();
  const step = () => {
    opt.zeroGrad();
    F.crossEntropy(model.forward(x), target).backward();
    opt.step();
  };
  for (let i = 0; i < 5; i++) step();
  const before = memoryStats(device).allocated;
  for (let i = 0; i < 20; i++) step();
  t.is(memoryStats(device).allocated, before);
});
