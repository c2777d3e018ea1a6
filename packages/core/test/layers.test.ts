/**
 * The layers beside batch norm (Dropout, Identity, LayerNorm, GroupNorm, Conv1d, Conv3d,
 * AvgPool1d/3d, ModuleList, ModuleDict) on the reference backend stand-in: forward
 * values against PyTorch (fixtures/layers.json, tools/gen-layer-fixtures.py), and the
 * gradients the stand-in can compute. It has no convolution backward and no pooling,
 * so those gradients (and the pooling cases) are checked in
 * packages/kernels/test/parity-layers.test.ts, on the CPU library and emulated cuda:0.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { useReferenceBackend } from './helpers/reference-backend.js';
import { F, Generator, manualSeed, nn, randn, tensor, type Tensor } from '../src/index.js';

useReferenceBackend();

interface FT { shape: number[]; data: number[] }
interface LayerCase {
  name: string; layer: string; args: unknown[]; options: Record<string, unknown>; training: boolean;
  params: Record<string, FT>; input: FT; output: FT; gradOutput: FT; grads: Record<string, FT>;
}
const fx = JSON.parse(readFileSync(new URL('../../../../fixtures/layers.json', import.meta.url), 'utf8')) as {
  expectedCounts: { cases: number; byLayer: Record<string, number> }; cases: LayerCase[];
  torch32Worst: Record<string, number>;
};

const toT = (f: FT, requiresGrad = false): Tensor => tensor(Float32Array.from(f.data), { shape: f.shape, requiresGrad });

/**
 * rtol 1e-5, atol 1e-6, widened only where PyTorch's own float32 run needs more
 * (torch32Worst > 1: inputs with a large mean, whose float32 mean is rounded).
 */
function close(t: import('ava').ExecutionContext, got: Tensor | null | undefined, want: FT, label: string,
  budget = 1): void {
  if (!got) return void t.fail(`${label}: no tensor`);
  t.deepEqual(got.shape, want.shape, `${label}: shape`);
  const a = got.toArray() as Float32Array;
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.data.length; i++) {
    const r = Math.abs(a[i] - want.data[i]) / (1e-6 + 1e-5 * Math.abs(want.data[i]));
    if (!(r <= worst)) { worst = r; at = i; }
  }
  t.true(worst <= budget, `${label}: worst ratio ${worst} (allowed ${budget}) at ${at}: got ${a[at]} want ${want.data[at]}`);
}

/** Builds a fixture case's layer (core's constructor, the case's options) and loads its parameters. */
function buildLayer(c: LayerCase): nn.Module {
  const ctor = (nn as unknown as Record<string, new (...a: unknown[]) => nn.Module>)[c.layer];
  const m = c.layer === 'Identity' ? new nn.Identity() : new ctor(...c.args, c.options);
  const params = Object.fromEntries(Object.entries(c.params).map(([k, v]) => [k, toT(v)]));
  m.loadStateDict(params); // strict: the layer has exactly the case's parameters
  return c.training ? m.train() : m.eval();
}

// The stand-in has no convolution backward: Conv1d and Conv3d are checked forward only here.
const FORWARD_ONLY = new Set(['Conv1d', 'Conv3d']);
const KERNELS_ONLY = new Set(['AvgPool1d', 'AvgPool3d']);

test('layers.json holds every layer and the expected case count', (t) => {
  t.is(fx.cases.length, 40);
  t.is(fx.expectedCounts.cases, fx.cases.length);
  for (const l of ['LayerNorm', 'GroupNorm', 'Conv1d', 'Conv3d', 'AvgPool1d', 'AvgPool3d', 'Dropout', 'Identity']) {
    t.true((fx.expectedCounts.byLayer[l] ?? 0) > 0, `no case for ${l}`);
  }
});

for (const c of fx.cases) {
  if (KERNELS_ONLY.has(c.layer)) continue; // pooling: parity-layers.test.ts (the stand-in has no pooling kernels)
  test(`${c.name}: forward${FORWARD_ONLY.has(c.layer) ? '' : ' and backward'} matches PyTorch`, (t) => {
    const m = buildLayer(c);
    const x = toT(c.input, !FORWARD_ONLY.has(c.layer));
    const y = m.forward(x);
    const budget = Math.max(1, fx.torch32Worst[c.name]);
    close(t, y, c.output, 'output', budget);
    if (FORWARD_ONLY.has(c.layer)) return;
    y.mul(toT(c.gradOutput)).sum().backward();
    close(t, x.grad, c.grads.input, 'grad input', budget);
    const params = Object.fromEntries(m.namedParameters());
    for (const k of ['weight', 'bias']) if (c.grads[k]) close(t, params[k]?.grad, c.grads[k], `grad ${k}`, budget);
  });
}

test('Dropout: seeded, zeroes about p, scales the rest by 1/(1-p), and its gradient is the mask', (t) => {
  const p = 0.3;
  const x = randn([200, 50], { requiresGrad: true });
  manualSeed(7);
  const y1 = F.dropout(x, p).toArray() as Float32Array;
  manualSeed(7);
  const y = F.dropout(x, p);
  t.deepEqual(y.toArray(), y1, 'the same seed gives the same mask');
  const xs = x.toArray() as Float32Array;
  let zeros = 0;
  let scaled = 0;
  for (let i = 0; i < xs.length; i++) {
    if (y1[i] === 0) zeros++;
    else if (Math.abs(y1[i] - xs[i] / (1 - p)) <= 1e-6 * Math.abs(xs[i]) + 1e-7) scaled++;
  }
  // 10,000 draws: the fraction's standard deviation is 0.0046; 5 of them either way
  t.true(Math.abs(zeros / xs.length - p) < 0.023, `zeroed fraction ${zeros / xs.length}`);
  t.is(zeros + scaled, xs.length, 'every element is either zeroed or scaled by 1/(1-p)');
  y.sum().backward();
  const g = x.grad!.toArray() as Float32Array;
  for (let i = 0; i < xs.length; i++) {
    const want = y1[i] === 0 ? 0 : 1 / (1 - p);
    if (Math.abs(g[i] - want) > 1e-6) return void t.fail(`grad[${i}] = ${g[i]}, want ${want}`);
  }
  // its own generator leaves the default stream alone
  const gen = new Generator(3);
  const m = new nn.Dropout(0.5, { generator: gen });
  const a = m.forward(x).toArray();
  gen.seed(3);
  t.deepEqual(m.forward(x).toArray(), a);
  t.is(m.eval().forward(x), x, 'eval: the input itself');
  t.throws(() => new nn.Dropout(1.5), { message: /between 0 and 1, but got 1.5/ });
  t.throws(() => F.dropout(x, -0.1), { message: /between 0 and 1/ });
});

test('defaults and init as PyTorch: norms start at weight 1, bias 0; convs U(-1/sqrt(fanIn), 1/sqrt(fanIn))', (t) => {
  const ln = new nn.LayerNorm([3, 4]);
  t.deepEqual([...ln.weight!.toArray()], new Array(12).fill(1));
  t.deepEqual([...ln.bias!.toArray()], new Array(12).fill(0));
  t.deepEqual(ln.weight!.shape, [3, 4]);
  t.is(ln.eps, 1e-5);
  t.is(new nn.LayerNorm(4, { elementwiseAffine: false }).parameters().length, 0);
  const gn = new nn.GroupNorm(2, 6);
  t.deepEqual(gn.weight!.shape, [6]);
  t.is(new nn.GroupNorm(2, 6, { affine: false }).parameters().length, 0);
  const c1 = new nn.Conv1d(4, 6, 3, { groups: 2 });
  t.deepEqual(c1.weight.shape, [6, 2, 3]);
  const c3 = new nn.Conv3d(4, 8, [3, 2, 2]);
  t.deepEqual(c3.weight.shape, [8, 4, 3, 2, 2]);
  t.is(new nn.Conv3d(2, 2, 3, { bias: false }).bias, null);
  for (const [w, fanIn] of [[c1.weight, 6], [c1.bias!, 6], [c3.weight, 48], [c3.bias!, 48]] as const) {
    const bound = 1 / Math.sqrt(fanIn);
    const v = w.toArray() as Float32Array;
    t.true(v.every((e) => Math.abs(e) <= bound), `within ${bound}`);
    t.true(Math.max(...v.map(Math.abs)) > bound / 4, 'not all tiny');
  }
});

test('bad arguments name the problem', (t) => {
  t.throws(() => new nn.GroupNorm(4, 6), { message: /numChannels \(6\) must be divisible by numGroups \(4\)/ });
  t.throws(() => new nn.GroupNorm(2, 6).forward(randn([2, 4, 3])), { message: /expected 6 channels, got input of shape \[2, ?4, ?3\]/ });
  t.throws(() => new nn.LayerNorm([3, 4]).forward(randn([2, 4, 3])), { message: /does not end with normalizedShape/ });
  t.throws(() => new nn.LayerNorm([]), { message: /non-empty list of positive integers/ });
  t.throws(() => F.groupNorm(randn([4]), 1), { message: /at least 2 dimensions/ });
  t.throws(() => new nn.Conv3d(3, 4, 3, { groups: 2 }), { message: /groups=2 must divide inChannels=3/ });
  t.throws(() => new nn.Conv1d(2, 4, 3).forward(randn([2, 2, 3, 3])), { message: /conv1d: expected 3D input/ });
  t.throws(() => new nn.Conv3d(2, 4, 3).forward(randn([1, 2, 2, 5, 5])), { message: /conv3d: output size 0 is too small/ });
  t.throws(() => F.conv3d(randn([1, 4, 3, 3, 3]), randn([4, 3, 1, 1, 1])), { message: /do not match with groups=1/ });
  t.throws(() => F.avgPool3d(randn([1, 1, 4, 4, 4]), 2, { padding: 2 }), { message: /at most half of kernel size/ });
});

class Tower extends nn.Module {
  declare blocks: nn.ModuleList;
  declare heads: nn.ModuleDict;
  constructor() {
    super();
    this.addModule('blocks', new nn.ModuleList([new nn.Conv1d(2, 2, 1), new nn.LayerNorm(3)]));
    this.addModule('heads', new nn.ModuleDict({ a: new nn.Conv1d(2, 1, 1), b: new nn.Identity() }));
  }
  forward(x: Tensor): Tensor {
    for (const m of this.blocks) x = m.forward(x);
    return this.heads.get('a').forward(x);
  }
}

test('ModuleList and ModuleDict register their modules: parameters, stateDict, train/eval, forward through them', (t) => {
  const m = new Tower();
  t.deepEqual(Object.keys(m.stateDict()), ['blocks.0.weight', 'blocks.0.bias', 'blocks.1.weight', 'blocks.1.bias',
    'heads.a.weight', 'heads.a.bias']);
  t.is(m.parameters().length, 6);
  m.eval();
  t.false(m.blocks.at(-1).training);
  t.false(m.heads.get('b').training);
  t.deepEqual(m.forward(randn([4, 2, 3])).shape, [4, 1, 3]);
  m.blocks.append(new nn.Dropout(0.1));
  t.is(m.blocks.length, 3);
  m.blocks.set(0, new nn.Conv1d(2, 2, 1, { bias: false }));
  t.deepEqual([...m.blocks].map((b) => b.constructor.name), ['Conv1d', 'LayerNorm', 'Dropout']);
  t.is(m.parameters().length, 5);
  t.deepEqual([...m.heads.keys()], ['a', 'b']);
  t.true(m.heads.has('b'));
  t.throws(() => m.blocks.at(3), { message: /index 3 out of range for 3 modules/ });
  t.throws(() => m.heads.get('c'), { message: /no module 'c' \(keys: a, b\)/ });
  t.throws(() => m.heads.set('x.y', new nn.Identity()), { message: /contain no '\.'/ });
  t.throws(() => m.blocks.forward(randn([1])), { message: /ModuleList has no forward/ });
  t.throws(() => m.blocks.append({} as nn.Module), { message: /append expects a Module/ });
});
