/** The facade under the launcher: ranks, withBagua's broadcast, bucketed averaging, the module method. */
import { manualSeed, nn, optim, randn, type Tensor } from '@bagua/core';
import type { ProcessGroup } from '@bagua/comm';
import * as bagua from '../../src/index.js';
import { expectClose, fail, newCheck, report } from './report.js';

await bagua.initProcessGroup();
const rank = bagua.getRank();
const size = bagua.getWorldSize();
const world = bagua.defaultGroup();
const host = (t: Tensor) => t.toArray() as Float32Array;

{
  const check = newCheck('rank, world size and local rank');
  if (rank !== world.rank || size !== world.size) fail(check, `getRank ${rank} / getWorldSize ${size} differ from the group`);
  if (bagua.getLocalRank() !== rank) fail(check, `local rank ${bagua.getLocalRank()} on one node should equal rank ${rank}`);
  report(check);
}

let allReduces = 0;
const counting: ProcessGroup = new Proxy(world, {
  get(target, prop, receiver) {
    const v = Reflect.get(target, prop, receiver);
    if (prop === 'allReduce') return (...a: Parameters<ProcessGroup['allReduce']>) => (allReduces++, target.allReduce(...a));
    // GradientAllReduce starts its buckets' all-reduces (overlapped with backward).
    if (prop === 'allReduceAsync') return (...a: Parameters<ProcessGroup['allReduce']>) => (allReduces++, target.allReduceAsync!(...a));
    return typeof v === 'function' ? v.bind(target) : v;
  },
});

manualSeed(500 + rank); // every rank starts from different weights
const model = new nn.Sequential(new nn.Linear(3, 8), new nn.BatchNorm1d(8), new nn.ReLU(), new nn.Linear(8, 2));
model.forward(randn([4, 3])); // running stats differ per rank too
const keys = Object.keys(model.stateDict());
const head = model.parameters().slice(0, 2);
const tail = model.parameters().slice(2);
const opt1 = new optim.SGD(head, { lr: 0.1 });
const opt2 = new optim.SGD(tail, { lr: 0.1 });
const algorithm = new bagua.GradientAllReduce({ bucketBytes: 64 }); // several buckets
const wrapped = bagua.SyncBatchNorm.convertSyncBatchnorm(model).withBagua([opt1, opt2], algorithm, { processGroup: counting });

{
  const check = newCheck('withBagua broadcasts parameters and buffers from rank 0 and keeps the module');
  if (wrapped !== model) fail(check, 'withBagua returned another object');
  if (JSON.stringify(Object.keys(wrapped.stateDict())) !== JSON.stringify(keys)) fail(check, 'state-dict keys changed');
  for (const [name, t] of Object.entries(wrapped.stateDict())) {
    if (t.dtype !== 'float32') continue;
    const mine = host(t);
    const all = new Float32Array(mine.length * size);
    world.allGather(all, mine);
    for (let r = 1; r < size; r++) expectClose(check, `${name} on rank ${r}`, all.subarray(r * mine.length, (r + 1) * mine.length), all.subarray(0, mine.length), { rtol: 0, atol: 0 });
  }
  if (!wrapped.bagua || wrapped.bagua.algorithm !== algorithm) fail(check, 'the bagua state is missing');
  wrapped.eval();
  if (wrapped.training) fail(check, 'eval() did not reach the module');
  wrapped.train();
  report(check);
}

{
  const check = newCheck('gradients are averaged in buckets, once per backward even with two optimizers');
  manualSeed(600 + rank);
  const x = randn([5, 3]);
  opt1.zeroGrad();
  opt2.zeroGrad();
  allReduces = 0; // buckets may start during backward
  wrapped.forward(x).mul(rank + 1).sum().backward();
  const local = wrapped.parameters().map((p) => host(p.grad!).slice());
  const before = wrapped.parameters().map((p) => host(p).slice());
  opt1.step();
  opt2.step();
  const buckets = algorithm.buckets(wrapped).length;
  if (buckets < 2) fail(check, `expected several buckets, got ${buckets}`);
  if (allReduces !== buckets) fail(check, `${allReduces} all-reduces for ${buckets} buckets: reduced more than once`);
  wrapped.parameters().forEach((p, i) => {
    const sum = new Float32Array(local[i]);
    world.allReduce(sum, 'sum');
    expectClose(check, `param ${i} grad = average`, p.grad, sum.map((v) => v / size));
    expectClose(check, `param ${i} step`, p, before[i].map((v, j) => v - 0.1 * (sum[j] / size)));
  });
  report(check);
}
await bagua.destroyProcessGroup();
