/**
 * Trains a small CNN with SyncBatchNorm and GradientAllReduce on every rank, then measures
 * its accuracy on held-out images.
 *   bagua-launch --nproc-per-node 4 --backend threads dist/src/train.js [--data synthetic|fashion-mnist]
 *     [--amp bfloat16|float16 [--grad-scaler]] [--channels-last] [--cosine] [--seed N] [--json]
 * --amp runs forward and loss under autocast (conv and linear in that dtype, batch norm with
 * float32 statistics, the loss in float32); float16 always steps through a GradScaler (its
 * gradients underflow without one), bfloat16 only with --grad-scaler (its range is float32's).
 * --channels-last stores the input, the activations and the conv weights NHWC. --json: rank 0 prints one
 * `RESULT {...}` line (per-step losses of rank 0, test accuracy, step time) for the tests.
 */
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import * as bagua from 'bagua';
import { autocast, F, GradScaler, isHalfDType, manualSeed, nn, noGrad, optim, randn, scope, tensor, type DType, type HalfDType, type Tensor } from '@bagua/core';
import { fashionMnist, synthetic, type Dataset } from './data.js';

const { values: args } = parseArgs({
  options: {
    data: { type: 'string', default: 'synthetic' },
    epochs: { type: 'string', default: '5' },
    'batch-size': { type: 'string', default: '16' }, // per rank: small, as SyncBatchNorm's users have
    samples: { type: 'string', default: '2048' },
    lr: { type: 'string', default: '0.1' },
    'test-samples': { type: 'string', default: '1024' },
    amp: { type: 'string' }, // bfloat16 | float16: autocast around forward and loss
    'grad-scaler': { type: 'boolean', default: false }, // bfloat16 too (float16 always has one)
    'channels-last': { type: 'boolean', default: false },
    cosine: { type: 'boolean', default: false }, // lr from --lr to 0 over the run, per step (settles the final weights)
    seed: { type: 'string', default: '1234' },
    json: { type: 'boolean', default: false },
  },
});
if (args.amp !== undefined && !isHalfDType(args.amp as DType)) throw new Error(`--amp must be bfloat16 or float16, got '${args.amp}'`);
const amp = args.amp as HalfDType | undefined;
if (args.data !== 'synthetic' && args.data !== 'fashion-mnist') throw new Error(`--data must be synthetic or fashion-mnist, got '${args.data}'`);

await bagua.initProcessGroup();
const rank = bagua.getRank();
const world = bagua.getWorldSize();
const group = bagua.defaultGroup()!;
const log = (msg: string) => rank === 0 && console.log(msg);

const data: Dataset = args.data === 'fashion-mnist'
  ? fashionMnist('train', Number(args.samples))
  : synthetic(Number(args.samples));
// Held out: Fashion-MNIST's test split, or synthetic images from another seed.
const testData: Dataset = args.data === 'fashion-mnist'
  ? fashionMnist('t10k', Number(args['test-samples']))
  : synthetic(Number(args['test-samples']), data.size, 8);
const batch = Number(args['batch-size']);
const stepsPerEpoch = Math.floor(data.count / (batch * world));
const channelsLast = args['channels-last'];
const useScaler = amp === 'float16' || (amp !== undefined && args['grad-scaler']);
log(`train-cnn: ${world} ranks (${group.backend}), ${args.data} ${data.count} images ${data.size}x${data.size}, ` +
  `batch ${batch} per rank (${batch * world} global), ${stepsPerEpoch} steps per epoch, ` +
  `${amp ? `autocast ${amp}${useScaler ? ' + GradScaler' : ''}` : 'float32'}${channelsLast ? ', channels-last' : ''}`);

manualSeed(Number(args.seed));
const model = new nn.Sequential(
  new nn.Conv2d(1, 8, 3, { padding: 1 }),
  new nn.BatchNorm2d(8), new nn.ReLU(), new nn.MaxPool2d(2),
  new nn.Conv2d(8, 16, 3, { padding: 1 }), new nn.BatchNorm2d(16), new nn.ReLU(),
  new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(16, data.classes),
);
// PyTorch's model.to(memory_format=torch.channels_last): the 4D weights stored NHWC (same values);
// the input is channels-last too; the first conv (one input channel: both orders coincide) answers
// row-major as PyTorch's does, and every activation from the second conv on is channels-last.
if (channelsLast) model.to({ memoryFormat: 'channelsLast' });
const optimizer = new optim.SGD(model.parameters(), { lr: Number(args.lr), momentum: 0.9 });
const syncModel = bagua.contrib.SyncBatchNorm.convertSyncBatchnorm(model);
const baguaModel = syncModel.withBagua([optimizer], new bagua.algorithms.GradientAllReduce());
const scaler = useScaler ? new GradScaler() : null;
const schedule = args.cosine ? new optim.lrScheduler.CosineAnnealingLR(optimizer, stepsPerEpoch * Number(args.epochs)) : null;

/** Rows [first, first + n) of `set` as a batch (channels-last when asked). */
function rows(set: Dataset, first: number, n: number): { x: Tensor; y: Tensor } {
  const pixels = set.size * set.size;
  const x = tensor(set.images.subarray(first * pixels, (first + n) * pixels), { shape: [n, 1, set.size, set.size] });
  return { x: channelsLast ? x.contiguous('channelsLast') : x, y: tensor(set.labels.subarray(first, first + n)) };
}

/** This rank's slice of global batch `step`: rows [rank * batch, (rank + 1) * batch). */
function localBatch(step: number): { x: Tensor; y: Tensor } {
  return rows(data, (step * world + rank) * batch, batch);
}

/** Forward (and loss), under autocast when --amp is given. */
function run<T>(fn: () => T): T {
  return amp ? autocast('cpu', amp, fn) : fn();
}

/** How many rows of logits [n, classes] pick the label (logits in any float dtype). */
function countCorrect(logits: Tensor, labels: Int32Array): number {
  const predicted = logits.to('float32').toArray('float32');
  const classes = logits.shape[1]!;
  let correct = 0;
  for (let i = 0; i < labels.length; i++) {
    const row = predicted.subarray(i * classes, (i + 1) * classes);
    if (row.indexOf(Math.max(...row)) === labels[i]) correct++;
  }
  return correct;
}

const stepLosses: number[] = []; // rank 0's loss at every step, for --json
let stepSeconds = 0;
let steps = 0;
let skipped = 0;

for (let epoch = 1; epoch <= Number(args.epochs); epoch++) {
  const bar = rank === 0 ? new SingleBar({ format: `epoch ${epoch} [{bar}] {value}/{total} loss {loss}`, noTTYOutput: true, notTTYSchedule: 5000, stream: process.stdout }) : null;
  bar?.start(stepsPerEpoch, 0, { loss: '-' });
  const totals = new Float64Array(3); // loss sum, correct, seen
  baguaModel.train();
  for (let step = 0; step < stepsPerEpoch; step++) {
    const { x, y } = localBatch(step);
    const t0 = performance.now();
    const { logits, loss } = run(() => {
      const logits = baguaModel.forward(x);
      return { logits, loss: F.crossEntropy(logits, y) };
    });
    optimizer.zeroGrad();
    if (scaler) {
      scaler.scale(loss).backward();
      if (!scaler.step(optimizer)) skipped++; // an inf/NaN gradient on any rank: nobody steps
      scaler.update();
    } else {
      loss.backward();
      optimizer.step();
    }
    schedule?.step();
    const lossValue = loss.item();
    stepSeconds += (performance.now() - t0) / 1000;
    steps++;
    stepLosses.push(lossValue);
    totals[1] += countCorrect(logits, y.toArray('int32'));
    totals[0] += lossValue * batch;
    totals[2] += batch;
    bar?.update(step + 1, { loss: lossValue.toFixed(4) });
  }
  bar?.stop();
  group.allReduce(totals, 'sum');
  log(`epoch ${epoch}: loss ${(totals[0] / totals[2]).toFixed(4)}, accuracy ${(100 * totals[1] / totals[2]).toFixed(1)}%`);
}

// Held-out accuracy: each rank scores its share of the test images with the running statistics.
baguaModel.eval();
const testCounts = new Float64Array(2); // correct, seen
const share = Math.ceil(testData.count / world);
for (let first = rank * share; first < Math.min(testData.count, (rank + 1) * share); first += batch) {
  const n = Math.min(batch, (rank + 1) * share - first, testData.count - first);
  // a scope per batch: no optimizer ends the steps here, so it releases each batch's tensors
  testCounts[0] += noGrad(() => scope(() => {
    const { x, y } = rows(testData, first, n);
    return countCorrect(run(() => baguaModel.forward(x)), y.toArray('int32'));
  }));
  testCounts[1] += n;
}
group.allReduce(testCounts, 'sum');
const testAccuracy = 100 * testCounts[0] / testCounts[1];
const stepMs = 1000 * stepSeconds / steps;
log(`test: accuracy ${testAccuracy.toFixed(2)}% on ${testCounts[1]} held-out images; ` +
  `step ${stepMs.toFixed(2)} ms (forward, backward, all-reduce, step; mean of ${steps})` +
  (scaler ? `; GradScaler skipped ${skipped} steps, scale now ${scaler.getScale()}` : ''));
if (args.json && rank === 0) {
  // the last conv's: the first one's [8, 1, 3, 3] reads the same in either order (one input channel)
  const weightFormat = ([...model.modules()].filter((m) => m instanceof nn.Conv2d).pop() as nn.Conv2d).weight.memoryFormat;
  // the activations' format, before the pooling to [N, 16, 1, 1] (which reads the same in both)
  const activationFormat = noGrad(() => scope(() => {
    let h = rows(testData, 0, 2).x;
    for (const m of syncModel.children()) {
      if (m instanceof nn.AdaptiveAvgPool2d) break;
      h = run(() => m.forward(h));
    }
    return h.memoryFormat;
  }));
  console.log(`RESULT ${JSON.stringify({ amp: amp ?? 'float32', channelsLast, weightFormat, activationFormat, testAccuracy, stepMs, skipped, losses: stepLosses })}`);
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
