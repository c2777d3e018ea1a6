/**
 * One process, no communication: only @bagua/core and @bagua/kernels.
 * A few SGD steps of Linear -> BatchNorm1d -> ReLU -> Linear on random data;
 * exits non-zero unless the loss goes down.
 *
 *   node single.js [--steps 30]
 */
import { parseArgs } from 'node:util';
import '@bagua/kernels'; // registers the native CPU backend with @bagua/core
import { F, manualSeed, nn, optim } from '@bagua/core';
import { RandomRegression } from './data.js';

const { values: args } = parseArgs({ options: { steps: { type: 'string', default: '30' } } });
const steps = Number(args.steps);

manualSeed(0);
const [dIn, h, dOut, batchSize] = [16, 32, 4, 32];
const model = new nn.Sequential(new nn.Linear(dIn, h), new nn.BatchNorm1d(h), new nn.ReLU(), new nn.Linear(h, dOut));
const optimizer = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
const data = new RandomRegression(dIn, dOut, 7);

model.train();
const losses: number[] = [];
for (let step = 0; step < steps; step++) {
  const { x, y } = data.batch(batchSize);
  const loss = F.mseLoss(model.forward(x), y);
  optimizer.zeroGrad();
  loss.backward();
  optimizer.step();
  losses.push(loss.item());
}

// Compare the means of the first and last five steps: single batches are noisy.
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const k = Math.min(5, Math.floor(steps / 2));
const first = mean(losses.slice(0, k));
const last = mean(losses.slice(-k));
console.log(`single: ${steps} steps, batch ${batchSize}, loss ${first.toFixed(4)} -> ${last.toFixed(4)} ` +
  `(mean of the first and last ${k})`);
if (!(last < 0.5 * first)) {
  console.error(`single: FAIL: the loss did not go down enough (${first.toFixed(4)} -> ${last.toFixed(4)})`);
  process.exitCode = 1;
}
