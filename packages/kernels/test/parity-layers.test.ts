/**
 * The layers beside batch norm against PyTorch (fixtures/layers.json, written by
 * tools/gen-layer-fixtures.py): each case's layer, built with core's constructor and
 * options and loaded with the case's parameters, must give PyTorch's output and the
 * gradients of the input, weight and bias w.r.t. sum(output * g). Runs on the CPU
 * library and, under tools/cuda-emu, on emulated cuda:0 (BAGUA_TEST_DEVICE).
 */
import test from 'ava';
import '@bagua/kernels';
import { F, manualSeed, memoryStats, nn, optim, randn, type Tensor } from '@bagua/core';
import { assertClose, DEFAULT_TOL, loadFixture, testDevice, toTensor, type FixtureTensor } from '@bagua/testing';

interface LayerCase {
  name: string;
  layer: string;
  args: unknown[];
  options: Record<string, unknown>;
  training: boolean;
  params: Record<string, FixtureTensor>;
  input: FixtureTensor;
  output: FixtureTensor;
  gradOutput: FixtureTensor;
  grads: Record<string, FixtureTensor>;
  /** convolutions and poolings: each gradient's sum of |terms| (see the generator) */
  gradScales?: Record<string, FixtureTensor>;
}

interface LayersFixture {
  expectedCounts: { cases: number; byLayer: Record<string, number> };
  cases: LayerCase[];
  torch32Worst: Record<string, number>;
}

const fx = loadFixture<LayersFixture>('layers.json');
const device = testDevice();
const LAYERS = ['LayerNorm', 'GroupNorm', 'Conv1d', 'Conv3d', 'AvgPool1d', 'AvgPool3d', 'Dropout', 'Identity'];

test('parity layers.json: fixture holds every expected case', (t) => {
  t.is(fx.cases.length, 40);
  t.is(fx.expectedCounts.cases, fx.cases.length);
  for (const l of LAYERS) t.true((fx.expectedCounts.byLayer[l] ?? 0) > 0, `no case for ${l}`);
  t.is(new Set(fx.cases.map((c) => c.name)).size, fx.cases.length, 'case names are unique');
});

function buildLayer(c: LayerCase): nn.Module {
  const ctor = (nn as unknown as Record<string, new (...a: unknown[]) => nn.Module>)[c.layer];
  const m = c.layer === 'Identity' ? new nn.Identity() : new ctor(...c.args, c.options);
  m.to(device);
  // strict: the layer has exactly the case's parameters (no weight without affine, no bias with bias: false)
  m.loadStateDict(Object.fromEntries(Object.entries(c.params).map(([k, v]) => [k, toTensor(v)])));
  return c.training ? m.train() : m.eval();
}

for (const c of fx.cases) {
  test(`parity ${c.name} on ${device}`, (t) => {
    // The default tolerance, widened only where PyTorch's own float32 run needs more (large-mean inputs).
    const scale = Math.max(1, fx.torch32Worst[c.name]);
    const tol = { rtol: DEFAULT_TOL.rtol * scale, atol: DEFAULT_TOL.atol * scale };
    const m = buildLayer(c);
    const x = toTensor(c.input, { requiresGrad: true });
    const y = m.forward(x);
    assertClose(t, y, c.output, `${c.name} output`, tol);
    y.mul(toTensor(c.gradOutput)).sum().backward();
    // Gradients of convolutions are sums that may cancel: each element may also be off by
    // 2^-20 of its sum of |terms| (as the batch-norm parity suite allows), for another order.
    const gradTol = (k: string) => c.gradScales ? { ...tol, scale: c.gradScales[k].data, scaleRtol: 2 ** -20 } : tol;
    // An identity layer returns its input: the gradient of sum(x * g) is g itself.
    assertClose(t, x.grad, c.grads.input, `${c.name} grad input`, gradTol('input'));
    const params = Object.fromEntries(m.namedParameters());
    for (const k of ['weight', 'bias']) {
      if (c.grads[k]) assertClose(t, params[k]?.grad, c.grads[k], `${c.name} grad ${k}`, gradTol(k));
      else t.false(k in params, `${c.name}: no ${k}`);
    }
  });
}

test(`Dropout on ${device}: a seeded mask, zeroed fraction near p, gradient equal to the mask`, (t) => {
  const p = 0.25;
  const x = randn([100, 100], { device, requiresGrad: true });
  const m = new nn.Dropout(p);
  manualSeed(11);
  const y = m.forward(x);
  manualSeed(11);
  t.deepEqual(m.forward(x).toArray(), y.toArray(), 'the same seed gives the same mask');
  y.sum().backward();
  const ys = y.toArray() as Float32Array;
  const g = x.grad!.toArray() as Float32Array;
  let zeros = 0;
  for (let i = 0; i < ys.length; i++) {
    const kept = ys[i] !== 0;
    if (!kept) zeros++;
    if (g[i] !== (kept ? 1 / (1 - p) : 0) && Math.abs(g[i] - (kept ? 1 / (1 - p) : 0)) > 1e-6) {
      return void t.fail(`grad[${i}] = ${g[i]} for output ${ys[i]}`);
    }
  }
  // 10,000 draws: standard deviation of the fraction 0.0043; 5 of them either way
  t.true(Math.abs(zeros / ys.length - p) < 0.022, `zeroed fraction ${zeros / ys.length}`);
});

test(`a training loop through every new layer stays flat in memory on ${device}`, (t) => {
  class Net extends nn.Module {
    declare stem: nn.Conv3d;
    declare blocks: nn.ModuleList;
    declare head: nn.ModuleDict;
    constructor() {
      super();
      this.addModule('stem', new nn.Conv3d(2, 4, 3, { padding: 1 }));
      this.addModule('blocks', new nn.ModuleList([new nn.GroupNorm(2, 4), new nn.AvgPool3d(2), new nn.Dropout(0.1)]));
      this.addModule('head', new nn.ModuleDict({
        conv: new nn.Conv1d(4, 3, 3, { padding: 1 }), norm: new nn.LayerNorm(8), pool: new nn.AvgPool1d(2),
        id: new nn.Identity(),
      }));
    }
    forward(x: Tensor): Tensor {
      let h = this.stem.forward(x);
      for (const b of this.blocks) h = b.forward(h);
      const [n, c] = h.shape;
      h = h.reshape([n, c, -1]); // [N, 4, 2*2*2]
      for (const k of ['conv', 'norm', 'pool', 'id']) h = this.head.get(k).forward(h);
      return h;
    }
  }
  const model = new Net().to(device);
  const opt = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
  const x = randn([2, 2, 4, 4, 4], { device });
  const step = () => {
    opt.zeroGrad();
    model.forward(x).sum().backward();
    opt.step();
  };
  for (let i = 0; i < 5; i++) step();
  const before = memoryStats(device);
  for (let i = 0; i < 30; i++) step();
  const after = memoryStats(device);
  t.is(after.allocated, before.allocated, 'allocated bytes');
  // The CPU's reserve is this thread's; a device's is the process's, which ava's other files share
  // (test/cuda-memory.test.ts checks the device reserve in a process of its own).
  if (device === 'cpu') t.is(after.reserved, before.reserved, 'no new blocks from the OS');
});

test(`float16 / bfloat16 inputs go through the float32 layers, rounded once, on ${device}`, (t) => {
  // [layer, input shape, whether it has float32 parameters (then the result is float32: PyTorch's promotion)]
  const cases: [string, () => nn.Module, number[], boolean][] = [
    ['LayerNorm', () => new nn.LayerNorm(8), [4, 8], true],
    ['GroupNorm', () => new nn.GroupNorm(2, 4), [2, 4, 3, 3], true],
    ['Conv1d', () => new nn.Conv1d(4, 3, 3), [2, 4, 6], true],
    ['Conv3d', () => new nn.Conv3d(2, 3, 3, { padding: 1 }), [1, 2, 3, 4, 4], true],
    ['AvgPool1d', () => new nn.AvgPool1d(2), [2, 3, 6], false],
    ['AvgPool3d', () => new nn.AvgPool3d(2), [1, 2, 4, 4, 4], false],
  ];
  for (const dtype of ['float16', 'bfloat16'] as const) {
    for (const [name, make, shape, params] of cases) {
      const m = make().to(device);
      const x = randn(shape, { device }).to(dtype);
      const y32 = m.forward(x.to('float32'));
      const want = (params ? y32 : y32.to(dtype).to('float32')).toArray();
      const y = m.forward(x);
      t.is(y.dtype, params ? 'float32' : dtype, `${name} ${dtype}: the promoted dtype`);
      t.deepEqual(y.to('float32').toArray(), want, `${name} ${dtype}: the float32 result${params ? '' : ' rounded once'}`);
    }
    const x = randn([3, 4], { device }).to(dtype);
    t.is(new nn.Dropout(0.5).eval().forward(x), x, `Dropout ${dtype}: eval returns the input`);
    const y = new nn.Dropout(0.5).forward(x);
    t.is(y.dtype, dtype);
  }
  // all-half: the F forms with half parameters give a half result
  const x = randn([4, 8], { device }).to('bfloat16');
  const w = randn([8], { device }).to('bfloat16');
  const b = randn([8], { device }).to('bfloat16');
  const y = F.layerNorm(x, 8, w, b);
  t.is(y.dtype, 'bfloat16');
  const want = F.layerNorm(x.to('float32'), 8, w.to('float32'), b.to('float32')).to('bfloat16').toArray();
  t.deepEqual(y.toArray(), want);
});
