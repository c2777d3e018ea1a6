/**
 * ResNet-20 (or ResNet-18, --arch resnet18) on Fashion-MNIST padded to 32x32, data
 * parallel: SyncBatchNorm and GradientAllReduce, a DataLoader over a
 * DistributedSampler (batches read on a worker thread), AdamW with a cosine
 * schedule (per step), test-set accuracy and a checkpoint each epoch, --resume.
 *   bagua-launch --nproc-per-node 4 --backend threads dist/src/train.js [--epochs 1] [--arch resnet18]
 * Options are per rank where they say so (--batch-size); see `options` below.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import * as bagua from 'bagua';
import { data, endStep, F, manualSeed, noGrad, optim, type Tensor } from '@bagua/core';
import { ImageSet, type Source } from './data.js';
import { resnet18, resnet20 } from './models.js';

const { values: args } = parseArgs({
  options: {
    arch: { type: 'string', default: 'resnet20' },
    data: { type: 'string', default: 'fashion-mnist' },
    epochs: { type: 'string', default: '1' },
    'batch-size': { type: 'string', default: '32' }, // per rank
    lr: { type: 'string', default: '0.002' },
    'weight-decay': { type: 'string', default: '0.0005' },
    samples: { type: 'string', default: '60000' }, // training images used (at most)
    'test-samples': { type: 'string', default: '10000' },
    seed: { type: 'string', default: '0' },
    'checkpoint-dir': { type: 'string', default: 'checkpoints' },
    resume: { type: 'boolean', default: false },
    'print-losses': { type: 'boolean', default: false }, // a `LOSS epoch step value` line per step (rank 0)
    quiet: { type: 'boolean', default: false }, // no progress bar
    // for the resume test: SIGKILL the whole job at the start of this step (`epoch:step`, rank 0)
    'kill-at': { type: 'string' },
  },
});

function int(name: keyof typeof args, min: number): number {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < min) throw new Error(`--${name} must be an integer >= ${min}, got ${String(args[name])}`);
  return v;
}
function positive(name: keyof typeof args): number {
  const v = Number(args[name]);
  if (!(v >= 0) || !Number.isFinite(v)) throw new Error(`--${name} must be a non-negative number, got ${String(args[name])}`);
  return v;
}
const arch = args.arch;
if (arch !== 'resnet20' && arch !== 'resnet18') throw new Error(`--arch must be resnet20 or resnet18, got ${arch}`);
const source = args.data as Source;
if (source !== 'fashion-mnist' && source !== 'synthetic') throw new Error(`--data must be fashion-mnist or synthetic, got ${source}`);
const epochs = int('epochs', 1);
const batchSize = int('batch-size', 1);
const seed = int('seed', 0);

await bagua.initProcessGroup();
const rank = bagua.getRank();
const world = bagua.getWorldSize();
const group = bagua.defaultGroup();
const log = (msg: string) => rank === 0 && console.log(msg);

const trainSet = new ImageSet({ source, split: 'train', limit: int('samples', 1) });
const testSet = new ImageSet({ source, split: 't10k', limit: int('test-samples', 1) });
const sampler = new data.DistributedSampler(trainSet.length, { numReplicas: world, rank, seed });
const loader = new data.DataLoader(trainSet, { batchSize, sampler });
// the test set without shuffling; positions past its end are the sampler's padding, not counted
const testSampler = new data.DistributedSampler(testSet.length, { numReplicas: world, rank, shuffle: false });
const testLoader = new data.DataLoader(testSet, { batchSize: 256, sampler: testSampler });

manualSeed(seed);
const model = arch === 'resnet18' ? resnet18({ inChannels: 1, numClasses: 10, stem: 'cifar' }) : resnet20({ inChannels: 1, numClasses: 10 });
const optimizer = new optim.AdamW(model.parameters(), { lr: positive('lr'), weightDecay: positive('weight-decay') });
const scheduler = new optim.lrScheduler.CosineAnnealingLR(optimizer, epochs * loader.length);

const checkpoint = join(args['checkpoint-dir'], `${arch}.safetensors`);
let firstEpoch = 1;
if (args.resume) {
  if (!existsSync(checkpoint)) throw new Error(`--resume: no checkpoint at ${checkpoint}`);
  const { extra } = bagua.loadCheckpoint(checkpoint, { model, optimizer, scheduler });
  firstEpoch = Number(extra['epoch']) + 1;
  log(`resumed from ${checkpoint} after epoch ${extra['epoch']} (test accuracy ${String(extra['testAccuracy'])}%)`);
}
const syncModel = bagua.contrib.SyncBatchNorm.convertSyncBatchnorm(model);
const baguaModel = syncModel.withBagua([optimizer], new bagua.algorithms.GradientAllReduce());

log(`resnet: ${arch}, ${world} ranks (${group.backend}), ${source} ${trainSet.length} training / ${testSet.length} test images 32x32, ` +
  `batch ${batchSize} per rank (${batchSize * world} global), ${loader.length} steps per epoch, AdamW + cosine, ` +
  `batches read on ${loader.prefetching ? 'a worker thread' : 'the rank\'s thread'}`);

/** Test-set accuracy (%) over every rank's shard, in eval mode (running statistics). */
function evaluate(): number {
  baguaModel.eval();
  const counts = new Float64Array(2); // correct, seen
  let position = 0; // this rank's position in its shard: global index rank + position * world
  noGrad(() => {
    for (const [x, y] of testLoader) {
      const logits = baguaModel.forward(x).toArray() as Float32Array;
      const labels = y.toArray() as Int32Array;
      for (let i = 0; i < labels.length; i++, position++) {
        if (rank + position * world >= testSet.length) continue; // padding
        const row = logits.subarray(i * 10, i * 10 + 10);
        if (row.indexOf(Math.max(...row)) === labels[i]) counts[0]++;
        counts[1]++;
      }
      endStep();
    }
  });
  group.allReduce(counts, 'sum');
  baguaModel.train();
  return (100 * counts[0]) / counts[1];
}

for (let epoch = firstEpoch; epoch <= epochs; epoch++) {
  sampler.setEpoch(epoch);
  const bar = rank === 0 && !args.quiet
    ? new SingleBar({ format: `epoch ${epoch} [{bar}] {value}/{total} loss {loss} {ips} images/s`, noTTYOutput: true, notTTYSchedule: 10_000, stream: process.stdout })
    : null;
  bar?.start(loader.length, 0, { loss: '-', ips: '-' });
  const totals = new Float64Array(2); // loss sum, images
  const start = performance.now();
  let step = 0;
  for (const [x, y] of loader) {
    if (rank === 0 && args['kill-at'] === `${epoch}:${step + 1}`) process.kill(process.pid, 'SIGKILL');
    const logits = baguaModel.forward(x as Tensor);
    const loss = F.crossEntropy(logits, y as Tensor);
    optimizer.zeroGrad();
    loss.backward();
    optimizer.step();
    scheduler.step();
    const value = loss.item();
    step++;
    totals[0] += value * x.shape[0];
    totals[1] += x.shape[0];
    if (args['print-losses']) log(`LOSS ${epoch} ${step} ${value}`);
    bar?.update(step, { loss: value.toFixed(4), ips: ((totals[1] * world) / ((performance.now() - start) / 1000)).toFixed(0) });
  }
  bar?.stop();
  const seconds = (performance.now() - start) / 1000;
  group.allReduce(totals, 'sum');
  const accuracy = evaluate();
  if (rank === 0) mkdirSync(args['checkpoint-dir'], { recursive: true });
  bagua.saveCheckpoint(checkpoint, { model: baguaModel, optimizer, scheduler, extra: { epoch, arch, testAccuracy: accuracy } });
  log(`epoch ${epoch}: train loss ${(totals[0] / totals[1]).toFixed(4)}, test accuracy ${accuracy.toFixed(2)}%, ` +
    `${(totals[1] / seconds).toFixed(1)} images/s (${seconds.toFixed(1)} s)`);
  log(`CHECKPOINT ${epoch} ${checkpoint}`);
}
await loader.close();
await testLoader.close();
await bagua.destroyProcessGroup();
