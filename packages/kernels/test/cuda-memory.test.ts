import test from 'ava';
import { empty, memoryStats, nn, optim, randn, tensor, Device } from '@bagua/core';
import { cudaOrSkip } from './cuda-helpers.js';

test.serial('on cuda:0 the plain training loop reaches a steady state: reserved device memory does not grow', (t) => {
  if (!cudaOrSkip(t)) return;
  const dev = 'cuda:0';
  const net = new nn.Sequential(new nn.Conv2d(3, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(),
    new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(8, 10)).to(dev);
  const opt = new optim.SGD(net.parameters(), { lr: 0.01, momentum: 0.9 });
  const lossFn = new nn.CrossEntropyLoss();
  const target = tensor(Int32Array.from({ length: 4 }, (_, i) => i % 10), { shape: [4], dtype: 'int32', device: dev });
  const seen: ReturnType<typeof memoryStats>[] = [];
  for (let i = 1; i <= 30; i++) {
    const loss = lossFn.forward(net.forward(randn([4, 3, 8, 8], { device: dev })), target);
    opt.zeroGrad();
    loss.backward();
    opt.step();
    if (i % 10 === 0) seen.push(memoryStats(dev));
  }
  const [, b, c] = seen;
  t.true(b.reserved > 0);
  t.true(b.numSystemAllocs > 0, 'blocks were obtained from the driver during warm-up');
  t.is(c.reserved, b.reserved, 'reserved bytes are the same after step 20 and step 30');
  t.is(c.numSystemAllocs, b.numSystemAllocs, 'no cudaMalloc after warm-up');
  t.is(c.allocated, b.allocated, 'live bytes are flat');
});

test.serial('on cuda:0 a request larger than the card fails before any allocation', (t) => {
  if (!cudaOrSkip(t)) return;
  const before = memoryStats('cuda:0').numSystemAllocs;
  t.throws(() => empty([1024, 1024, 1024, 1024], 'float32', Device.parse('cuda:0')),
    { message: /alloc: 1099511627776 float32 elements \(4096\.0 GiB\) do not fit cuda:0, which has [\d.]+ GiB/ });
  t.is(memoryStats('cuda:0').numSystemAllocs, before);
});
