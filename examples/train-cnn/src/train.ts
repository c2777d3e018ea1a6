/**
 * Trains a small CNN with SyncBatchNorm and GradientAllReduce on every rank.
 *   bagua-launch --nproc-per-node 4 --backend threads dist/src/train.js [--data synthetic|fashion-mnist]
 */
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import * as bagua from 'bagua';
import { F, manualSeed, nn, noGrad, optim, randn, tensor, type Tensor } from '@bagua/core';
import { fashionMnist, synthetic, type Dataset } from './data.js';

const { values: args } = parseArgs({
  options: {
    data: { type: 'string', default: 'synthetic' },
    epochs: { type: 'string', default: '5' },
    'batch-size': { type: 'string', default: '16' }, // per rank: small, as SyncBatchNorm's users have
    samples: { type: 'string', default: '2048' },
    lr: { type: 'string', default: '0.1' },
  },
});

await bagua.initProcessGroup();
const rank = bagua.getRank();
const world = bagua.getWorldSize();
const group = bagua.defaultGroup()!;
const log = (msg: string) => rank === 0 && console.log(msg);

const data: Dataset = args.data === 'fashion-mnist'
  ? fashionMnist('train', Number(args.samples))
  : synthetic(Number(args.samples));
const batch = Number(args['batch-size']);
const stepsPerEpoch = Math.floor(data.count / (batch * world));
log(`train-cnn: ${world} ranks (${group.backend}), ${args.data} ${data.count} images ${data.size}x${data.size}, ` +
  `batch ${batch} per rank (${batch * world} global), ${stepsPerEpoch} steps per epoch`);

manualSeed(1234);
const model = new nn.Sequential(
  new nn.Conv2d(1, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(), new nn.MaxPool2d(2),
  new nn.Conv2d(8, 16, 3, { padding: 1 }), new nn.BatchNorm2d(16), new nn.ReLU(),
  new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(16, data.classes),
);
const optimizer = new optim.SGD(model.parameters(), { lr: Number(args.lr), momentum: 0.9 });
const syncModel = bagua.contrib.SyncBatchNorm.convertSyncBatchnorm(model);
const baguaModel = syncModel.withBagua([optimizer], new bagua.algorithms.GradientAllReduce());

/** This rank's slice of global batch `step`: rows [rank * batch, (rank + 1) * batch). */
function localBatch(step: number): { x: Tensor; y: Tensor } {
  const first = (step * world + rank) * batch;
  const pixels = data.size * data.size;
  return {
    x: tensor(data.images.subarray(first * pixels, (first + batch) * pixels), { shape: [batch, 1, data.size, data.size] }),
    y: tensor(data.labels.subarray(first, first + batch)),
  };
}

for (let epoch = 1; epoch <= Number(args.epochs); epoch++) {
  const bar = rank === 0 ? new SingleBar({ format: `epoch ${epoch} [{bar}] {value}/{total} loss {loss}`, noTTYOutput: true, notTTYSchedule: 5000, stream: process.stdout }) : null;
  bar?.start(stepsPerEpoch, 0, { loss: '-' });
  const totals = new Float64Array(3); // loss sum, correct, seen
  baguaModel.train();
  for (let step = 0; step < stepsPerEpoch; step++) {
    const { x, y } = localBatch(step);
    const logits = baguaModel.forward(x);
    const loss = F.crossEntropy(logits, y);
    optimizer.zeroGrad();
    loss.backward();
    optimizer.step();
    const lossValue = loss.item();
    const predicted = logits.toArray() as Float32Array;
    const labels = y.toArray() as Int32Array;
    for (let i = 0; i < batch; i++) {
      const row = predicted.subarray(i * data.classes, (i + 1) * data.classes);
      if (row.indexOf(Math.max(...row)) === labels[i]) totals[1]++;
    }
    totals[0] += lossValue * batch;
    totals[2] += batch;
    bar?.update(step + 1, { loss: lossValue.toFixed(4) });
  }
  bar?.stop();
  group.allReduce(totals, 'sum');
  log(`epoch ${epoch}: loss ${(totals[0] / totals[2]).toFixed(4)}, accuracy ${(100 * totals[1] / totals[2]).toFixed(1)}%`);
}

// The promise of SyncBatchNorm: one step on each rank's slice equals BatchNorm on the global batch.
const channels = 8;
const local = randn([batch, channels, 5, 5]).mul(1 + rank).add(rank);
const everyone = new Float32Array(local.numel * world);
group.allGather(everyone, local.toArray() as Float32Array);
const sync = new bagua.SyncBatchNorm(channels);
const plain = new nn.BatchNorm2d(channels);
const ySync = sync.forward(local).toArray() as Float32Array;
const yPlain = noGrad(() => plain.forward(tensor(everyone, { shape: [batch * world, channels, 5, 5] })).toArray() as Float32Array);
const mine = yPlain.subarray(rank * local.numel, (rank + 1) * local.numel);
const diff = new Float64Array([
  Math.max(...ySync.map((v, i) => Math.abs(v - mine[i]))),
  Math.max(...(sync.runningVar!.toArray() as Float32Array).map((v, i) => Math.abs(v - (plain.runningVar!.toArray() as Float32Array)[i]))),
]);
group.allReduce(diff, 'max');
log(`check: SyncBatchNorm vs BatchNorm on the global batch of ${batch * world}: ` +
  `max |output diff| ${diff[0].toExponential(2)}, max |running var diff| ${diff[1].toExponential(2)}`);
if (!(diff[0] < 1e-4 && diff[1] < 1e-5)) throw new Error('SyncBatchNorm does not match BatchNorm on the global batch');
await bagua.destroyProcessGroup();
