/**
 * The example of Bagua's SyncBatchNorm documentation, in TypeScript:
 * a network with a BatchNorm layer, SGD, convertSyncBatchnorm, withBagua.
 *
 *   bagua-launch --nproc-per-node 2 --backend threads seed.js [--steps 10]
 *
 * Every rank trains on its own random batch; SyncBatchNorm computes the
 * batch statistics over the global batch and GradientAllReduce averages the
 * gradients, so the replicas stay identical.
 */
import { parseArgs } from 'node:util';
import * as bagua from 'bagua';
import { F, manualSeed, nn, optim } from '@bagua/core';
import { RandomRegression } from './data.js';

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: '10' },
    'batch-size': { type: 'string', default: '8' }, // per rank
  },
});
const steps = Number(args.steps);
const batchSize = Number(args['batch-size']);

await bagua.initProcessGroup();
const rank = bagua.getRank();
const world = bagua.getWorldSize();

const [dIn, h, dOut] = [16, 32, 4];
manualSeed(0); // the same initial weights everywhere (withBagua also broadcasts rank 0's)

// Network with nn.BatchNorm layer
const model = new nn.Sequential(
  new nn.Linear(dIn, h),
  new nn.BatchNorm1d(h),
  new nn.ReLU(),
  new nn.Linear(h, dOut),
);
const optimizer = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
const syncBnModel = bagua.contrib.SyncBatchNorm.convertSyncBatchnorm(model);
const baguaModel = syncBnModel.withBagua([optimizer], new bagua.algorithms.GradientAllReduce());

if (rank === 0) {
  console.log(`seed: ${world} rank(s) (${bagua.defaultGroup().backend}), batch ${batchSize} per rank, ` +
    `Linear(${dIn}, ${h}) -> SyncBatchNorm(${h}) -> ReLU -> Linear(${h}, ${dOut}), SGD lr 0.01 momentum 0.9`);
}

const data = new RandomRegression(dIn, dOut, 1000 + rank);
baguaModel.train();
const losses = new Float64Array(steps);
for (let step = 0; step < steps; step++) {
  const { x, y } = data.batch(batchSize);
  const loss = F.mseLoss(baguaModel.forward(x), y);
  optimizer.zeroGrad();
  loss.backward();
  optimizer.step();
  losses[step] = loss.item();
}

// The mean over ranks of each step's loss, printed by rank 0.
bagua.defaultGroup().allReduce(losses, 'sum');
if (rank === 0) {
  losses.forEach((l, step) => console.log(`step ${step + 1}: loss ${(l / world).toFixed(4)}`));
  console.log(`seed: loss ${(losses[0] / world).toFixed(4)} -> ${(losses[steps - 1] / world).toFixed(4)} over ${steps} steps`);
}
await bagua.destroyProcessGroup();
