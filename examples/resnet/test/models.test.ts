/**
 * The example's ResNets: ResNet-20 loaded with weights exported from the same
 * architecture built in PyTorch (tools/gen-layer-fixtures.py resnet -> fixtures/resnet20.*)
 * gives PyTorch's logits, in eval (running statistics) and in training mode (batch
 * statistics); ResNet-18 has torchvision's names and parameter count.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import 'bagua'; // registers the kernels
import { F, nn, optim, randn, tensor, type Tensor } from '@bagua/core';
import { resnet18, resnet20 } from '../src/models.js';

interface FT { shape: number[]; data: number[] }
interface ResnetFixture {
  arch: { inChannels: number; numClasses: number; shortcut: 'A'; parameters: number };
  tensors: { key: string; shape: number[]; offset: number; numel: number }[];
  input: FT; evalLogits: FT; trainLogits: FT;
}

const fixtures = new URL('../../../../fixtures/', import.meta.url);
const fx = JSON.parse(readFileSync(new URL('resnet20.json', fixtures), 'utf8')) as ResnetFixture;
const blob = readFileSync(new URL('resnet20.bin', fixtures));
const weights = new Float32Array(blob.buffer, blob.byteOffset, blob.byteLength / 4);

const count = (m: nn.Module) => m.parameters().reduce((s, p) => s + p.numel, 0);

function loadPytorchState(m: nn.Module): void {
  m.loadStateDict(Object.fromEntries(fx.tensors.map((t) =>
    [t.key, tensor(weights.slice(t.offset, t.offset + t.numel), { shape: t.shape })])));
}

/** float32 through 20 layers against a float64 reference: PyTorch's own float32 run is within 0.23 of this. */
function close(t: import('ava').ExecutionContext, got: Tensor, want: FT, label: string): void {
  t.deepEqual(got.shape, want.shape, `${label}: shape`);
  const a = got.toArray() as Float32Array;
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - want.data[i]) / (1e-6 + 1e-5 * Math.abs(want.data[i])));
  t.true(worst <= 1, `${label}: worst |got - want| / (1e-6 + 1e-5 |want|) = ${worst}`);
}

test('resnet20 has He et al.\'s 0.27M parameters and PyTorch\'s state-dict keys, in order', (t) => {
  const m = resnet20({ inChannels: 1 });
  t.is(count(m), fx.arch.parameters);
  t.is(count(resnet20()), 269722, '3 input channels');
  t.deepEqual(Object.keys(m.stateDict()), fx.tensors.map((e) => e.key));
  t.true(count(resnet20({ shortcut: 'B' })) > count(resnet20()), 'option B adds projection convolutions');
  t.throws(() => resnet20({ shortcut: 'C' as 'A' }), { message: /shortcut must be 'A' or 'B'/ });
});

test('resnet20 with PyTorch\'s weights gives PyTorch\'s logits (eval and training mode)', (t) => {
  const m = resnet20({ inChannels: 1, numClasses: 10 });
  loadPytorchState(m);
  const x = tensor(Float32Array.from(fx.input.data), { shape: fx.input.shape });
  close(t, m.eval().forward(x), fx.evalLogits, 'eval logits');
  close(t, m.train().forward(x), fx.trainLogits, 'training-mode logits');
});

test('resnet20 trains: gradients reach every parameter through both shortcut kinds, and the loss falls', (t) => {
  for (const shortcut of ['A', 'B'] as const) {
    const m = resnet20({ inChannels: 1, shortcut });
    const opt = new optim.SGD(m.parameters(), { lr: 0.05, momentum: 0.9 });
    const x = randn([8, 1, 16, 16]);
    const y = tensor(Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7]));
    const losses: number[] = [];
    for (let i = 0; i < 8; i++) {
      opt.zeroGrad();
      const loss = F.crossEntropy(m.forward(x), y);
      loss.backward();
      if (i === 0) for (const [name, p] of m.namedParameters()) t.truthy(p.grad, `${shortcut}: ${name} has a gradient`);
      opt.step();
      losses.push(loss.item());
    }
    t.true(losses[7] < losses[0] * 0.5, `${shortcut}: losses ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  }
});

test('resnet18 is torchvision\'s: 11,689,512 parameters, its names, both stems', (t) => {
  const m = resnet18();
  t.is(count(m), 11689512);
  const keys = Object.keys(m.stateDict());
  for (const k of ['conv1.weight', 'bn1.runningMean', 'layer1.1.conv2.weight', 'layer2.0.downsample.0.weight',
    'layer4.1.bn2.numBatchesTracked', 'layer3.0.downsample.1.runningVar', 'fc.bias']) t.true(keys.includes(k), k);
  t.false(keys.some((k) => k.startsWith('layer1.0.downsample')), 'no projection where the shape stays');
  t.deepEqual(m.conv1.weight.shape, [64, 3, 7, 7]);
  m.eval();
  t.deepEqual(m.forward(randn([1, 3, 64, 64])).shape, [1, 1000]);
  const cifar = resnet18({ stem: 'cifar', inChannels: 1, numClasses: 10 }).eval();
  t.deepEqual(cifar.conv1.weight.shape, [64, 1, 3, 3]);
  t.is(count(cifar), 11689512 - 3 * 64 * 49 + 64 * 9 - 513 * 1000 + 513 * 10);
  t.deepEqual(cifar.forward(randn([2, 1, 32, 32])).shape, [2, 10]);
});
