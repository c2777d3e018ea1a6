/**
 * GradientAllReduce with channels-last parameters (Module.to({ memoryFormat })): the averaged
 * gradients are written back in the parameters' storage order. Every rank also trains a
 * reference copy on the concatenated batch; after a few steps the weights must agree.
 */
import { F, manualSeed, nn, optim, randn, type Tensor } from '@bagua/core';
import * as bagua from '../../src/index.js';
import { expectClose, fail, newCheck, report } from './report.js';

await bagua.initProcessGroup();
const rank = bagua.getRank();
const size = bagua.getWorldSize();

const build = () => {
  manualSeed(3);
  return new nn.Sequential(new nn.Conv2d(3, 4, 3, { padding: 1 }), new nn.ReLU(), new nn.Flatten(), new nn.Linear(4 * 5 * 5, 2))
    .to({ memoryFormat: 'channelsLast' });
};
const model = build();
const reference = build();
const opt = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
const refOpt = new optim.SGD(reference.parameters(), { lr: 0.1, momentum: 0.9 });
const wrapped = model.withBagua([opt], new bagua.GradientAllReduce({ bucketCapMb: 1e-3 }));

const check = newCheck('channels-last parameters under GradientAllReduce');
for (let step = 0; step < 3; step++) {
  const batches: Tensor[][] = [];
  for (let r = 0; r < size; r++) {
    manualSeed(1000 + 10 * step + r);
    batches.push([randn([2, 3, 5, 5]).contiguous('channelsLast'), randn([2, 2])]);
  }
  const [x, y] = batches[rank]!;
  opt.zeroGrad();
  F.mseLoss(wrapped.forward(x!), y!).backward();
  opt.step();
  // The reference: the mean loss over the concatenated batch is the mean of the ranks' means.
  refOpt.zeroGrad();
  let total: Tensor | null = null;
  for (const [bx, by] of batches) {
    const l = F.mseLoss(reference.forward(bx!), by!);
    total = total ? total.add(l) : l;
  }
  total!.div(size).backward();
  refOpt.step();
}
const w = model.parameters()[0]!;
if (w.memoryFormat !== 'channelsLast') fail(check, `the conv weight is ${w.memoryFormat} after training`);
const params = model.parameters();
reference.parameters().forEach((p, i) => expectClose(check, `parameter ${i}`, params[i]!, p.toArray() as Float32Array));
report(check);
await bagua.destroyProcessGroup();
