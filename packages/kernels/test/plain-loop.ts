/**
 * The loop a user writes (forward, loss, zeroGrad, backward, step; no awaits, no
 * dispose calls) on the device given as argv[2], for argv[3] steps, printing
 * memoryStats as one JSON line every 10 steps. Run as its own process by the
 * memory tests: a CUDA allocator's reserve is per process, and other test files
 * share ava's.
 */
import { memoryStats, nn, optim, randn, tensor } from '@bagua/core';
import '../src/index.js';

const device = process.argv[2] ?? 'cpu';
const steps = Number(process.argv[3] ?? 30);
const net = new nn.Sequential(new nn.Conv2d(3, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(),
  new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(8, 10)).to(device);
const opt = new optim.SGD(net.parameters(), { lr: 0.01, momentum: 0.9 });
const lossFn = new nn.CrossEntropyLoss();
const target = tensor(Int32Array.from({ length: 4 }, (_, i) => i % 10), { shape: [4], dtype: 'int32', device });
for (let i = 1; i <= steps; i++) {
  const loss = lossFn.forward(net.forward(randn([4, 3, 8, 8], { device })), target);
  opt.zeroGrad();
  loss.backward();
  opt.step();
  if (i % 10 === 0) console.log(JSON.stringify({ step: i, ...memoryStats(device) }));
}
