/**
 * GradScaler under withBagua: gradients are averaged before the scaler checks them, so a
 * non-finite gradient on one rank makes every rank skip the same step, and the weights stay equal.
 */
import { F, GradScaler, manualSeed, nn, optim, randn } from '@bagua/core';
import * as bagua from '../../src/index.js';

await bagua.initProcessGroup();
const rank = bagua.getRank();

manualSeed(7);
const model = new nn.Sequential(new nn.Linear(4, 8), new nn.ReLU(), new nn.Linear(8, 2));
const opt = new optim.SGD(model.parameters(), { lr: 0.05 });
const wrapped = model.withBagua([opt], new bagua.GradientAllReduce({ bucketCapMb: 1e-4 })); // several buckets
const scaler = new GradScaler({ initScale: 1024 });

manualSeed(100 + rank); // every rank its own batches
const stepped: boolean[] = [];
for (let step = 0; step < 4; step++) {
  const x = randn([6, 4]);
  const y = randn([6, 2]);
  // At step 1 rank 1's batch holds an inf: only its local gradients are non-finite.
  const input = step === 1 && rank === 1 ? x.mul(Infinity) : x;
  const loss = F.mseLoss(wrapped.forward(input), y);
  opt.zeroGrad();
  scaler.scale(loss).backward();
  stepped.push(scaler.step(opt));
  scaler.update();
}
console.log(`STEPPED ${JSON.stringify(stepped)}`);
console.log(`SCALE ${scaler.getScale()}`);
const bits = model.parameters().flatMap((p) => [...new Uint32Array((p.toArray() as Float32Array).slice().buffer)]);
console.log(`WEIGHTS ${bits.join(',')}`);
await bagua.destroyProcessGroup();
