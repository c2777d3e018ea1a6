/**
 * ms per training step with GradientAllReduce's overlap on and off (issue 12).
 * A rank script for bagua-launch:
 *   BAGUA_NUM_THREADS=1 bagua-launch --nproc-per-node 2 --backend gloo dist/bench/overlap-step.js \
 *     [--net train-cnn|cifar|mlp] [--batch 16] [--cap-mb 25] [--steps 200] [--warmup 20] [--bn bn|syncbn]
 * Both settings run in one job, alternating in blocks so drift hits both alike;
 * rank 0 prints `OVERLAP <json>` (median ms per step, the slowest rank's).
 */
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { F, manualSeed, nn, optim, randn, tensor } from '@bagua/core';
import * as bagua from '../src/index.js';
import { median } from '@bagua/testing';

const { values: args } = parseArgs({
  options: {
    net: { type: 'string', default: 'train-cnn' },
    batch: { type: 'string', default: '16' },
    'cap-mb': { type: 'string', default: '25' },
    steps: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '20' },
    bn: { type: 'string', default: 'syncbn' },
  },
});
const B = Number(args.batch);
const STEPS = Number(args.steps);

await bagua.initProcessGroup();
const rank = bagua.getRank();
const world = bagua.defaultGroup();

function makeNet(): { model: nn.Module; shape: number[] } {
  manualSeed(1234);
  if (args.net === 'mlp') {
    // 4 x Linear(1024, 1024): 16 MiB of gradients, where communication is a large part of the step
    const layers: nn.Module[] = [new nn.Linear(48, 1024)];
    for (let i = 0; i < 4; i++) layers.push(new nn.ReLU(), new nn.Linear(1024, 1024));
    layers.push(new nn.ReLU(), new nn.Linear(1024, 10));
    return { model: new nn.Sequential(...layers), shape: [B, 48] };
  }
  if (args.net === 'cifar') {
    const block = (i: number, o: number) => [new nn.Conv2d(i, o, 3, { padding: 1 }), new nn.BatchNorm2d(o), new nn.ReLU()];
    return {
      model: new nn.Sequential(...block(3, 32), ...block(32, 32), new nn.MaxPool2d(2), ...block(32, 64), ...block(64, 64),
        new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(64, 10)),
      shape: [B, 3, 32, 32],
    };
  }
  // examples/train-cnn's net, on its 16x16 synthetic images
  return {
    model: new nn.Sequential(
      new nn.Conv2d(1, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(), new nn.MaxPool2d(2),
      new nn.Conv2d(8, 16, 3, { padding: 1 }), new nn.BatchNorm2d(16), new nn.ReLU(),
      new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(16, 10)),
    shape: [B, 1, 16, 16],
  };
}

function setup(overlap: boolean) {
  const { model, shape } = makeNet();
  const m = args.bn === 'syncbn' ? bagua.SyncBatchNorm.convertSyncBatchnorm(model) : model;
  const opt = new optim.SGD(m.parameters(), { lr: 0.01, momentum: 0.9 });
  const alg = new bagua.GradientAllReduce({ overlap, bucketCapMb: Number(args['cap-mb']) });
  const w = m.withBagua([opt], alg);
  manualSeed(7 + rank);
  const x = randn(shape);
  const y = tensor(Int32Array.from({ length: B }, (_, i) => (i + rank) % 10));
  const step = () => {
    opt.zeroGrad();
    F.crossEntropy(w.forward(x), y).backward();
    opt.step();
  };
  return { step, buckets: alg.buckets(w).length };
}

const runs = { on: setup(true), off: setup(false) };
const times: Record<'on' | 'off', number[]> = { on: [], off: [] };
for (let i = 0; i < Number(args.warmup); i++) (runs.on.step(), runs.off.step());
const block = 20;
const t = new Float64Array(1);
for (let done = 0; done < STEPS; done += block) {
  for (const k of ['on', 'off'] as const) {
    for (let i = 0; i < block; i++) {
      world.barrier();
      const t0 = performance.now();
      runs[k].step();
      t[0] = performance.now() - t0;
      world.allReduce(t, 'max'); // the slowest rank's step
      times[k].push(t[0]!);
    }
  }
}
const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
if (rank === 0) {
  console.log(`OVERLAP ${JSON.stringify({
    net: args.net, bn: args.bn, batch: B, world: world.size, backend: world.backend, capMb: Number(args['cap-mb']),
    buckets: runs.on.buckets, steps: STEPS,
    onMedianMs: +median(times.on).toFixed(3), offMedianMs: +median(times.off).toFixed(3),
    onMeanMs: +mean(times.on).toFixed(3), offMeanMs: +mean(times.off).toFixed(3),
  })}`);
}
await bagua.destroyProcessGroup();
