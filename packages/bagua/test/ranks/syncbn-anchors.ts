/**
 * The anchors' own SyncBatchNorm tests, ported in spirit: PyTorch's DDP
 * SyncBatchNorm tests (a net trained on per-rank slices ends with the
 * parameters of the same net trained on the global batch in one process),
 * its running-value and empty-input tests, and Bagua's 32x8x16x16 test.
 */
import { F, manualSeed, nn, noGrad, optim, randn, tensor, type Tensor } from '@bagua/core';
import * as bagua from '../../src/index.js';
import { exchangeUnderTest, expectClose, fail, newCheck, report, type Check } from './report.js';

await bagua.initProcessGroup();
const group = bagua.defaultGroup();
const { rank, size } = group;
const statsExchange = exchangeUnderTest();
const host = (t: Tensor) => t.toArray() as Float32Array;

/** Every rank's values, concatenated in rank order (sizes may differ per rank). */
function gatherRows(local: Float32Array, counts: number[]): Float32Array {
  const most = Math.max(...counts);
  const padded = new Float32Array(most);
  padded.set(local);
  const all = new Float32Array(most * size);
  group.allGather(all, padded);
  return Float32Array.from(counts.flatMap((n, r) => [...all.subarray(r * most, r * most + n)]));
}

/** PyTorch's BatchNormNet: Linear(2, 40) -> view(-1, 4, 10) -> BatchNorm1d(4) -> view(-1, 40) -> Linear(40, 4) -> softmax. */
class BatchNormNet extends nn.Module {
  constructor(affine: boolean, readonly twoD: boolean) {
    super();
    this.addModule('fc1', new nn.Linear(2, 40, { bias: false }));
    this.addModule('bn', twoD ? new nn.BatchNorm1d(40, { affine }) : new nn.BatchNorm1d(4, { affine }));
    this.addModule('fc2', new nn.Linear(40, 4, { bias: false }));
  }
  forward(x: Tensor): Tensor {
    const m = Object.fromEntries(this.namedChildren());
    let h = m.fc1.forward(x);
    h = this.twoD ? m.bn.forward(h) : m.bn.forward(h.reshape([-1, 4, 10])).reshape([-1, 40]);
    return F.softmax(m.fc2.forward(h), 1);
  }
}

function ddpCase(name: string, opts: { affine?: boolean; twoD?: boolean; sizes: number[] }): Check {
  const check = newCheck(name);
  const global = opts.sizes.reduce((a, b) => a + b, 0);
  manualSeed(11); // the same global data and the same initial weights on every rank
  const x = randn([global, 2]);
  const target = randn([global, 4]);
  manualSeed(12);
  const single = new BatchNormNet(opts.affine ?? true, opts.twoD ?? false);
  manualSeed(12);
  const distributed = new BatchNormNet(opts.affine ?? true, opts.twoD ?? false);
  const singleOpt = new optim.SGD(single.parameters(), { lr: 1 });
  const distOpt = new optim.SGD(distributed.parameters(), { lr: 1 });
  const model = bagua.SyncBatchNorm.convertSyncBatchnorm(distributed, undefined, { statsExchange })
    .withBagua([distOpt], new bagua.GradientAllReduce());
  const first = opts.sizes.slice(0, rank).reduce((a, b) => a + b, 0);
  const mine = opts.sizes[rank];
  const localX = tensor(host(x).slice(first * 2, (first + mine) * 2), { shape: [mine, 2] });
  const localT = tensor(host(target).slice(first * 4, (first + mine) * 4), { shape: [mine, 4] });
  // Over 5 SGD steps the two runs sum in different orders (1 vs R partial sums): 1e-4 relative allows for it.
  const tol = { rtol: 1e-4, atol: 1e-6 };
  for (let it = 0; it < 5; it++) {
    singleOpt.zeroGrad();
    F.mseLoss(single.forward(x), target).backward();
    singleOpt.step();
    distOpt.zeroGrad();
    // sum over the local rows, scaled so that the ranks' average is the global mean
    F.mseLoss(model.forward(localX), localT, { reduction: 'sum' }).mul(size / (global * 4)).backward();
    distOpt.step();
    const want = new Map(single.namedParameters());
    for (const [pname, p] of model.namedParameters()) expectClose(check, `iteration ${it} ${pname}`, p, host(want.get(pname)!), tol);
    const bn = [...single.modules()].find((m) => m instanceof nn._BatchNorm) as nn._BatchNorm;
    const sbn = [...model.modules()].find((m) => m instanceof bagua.SyncBatchNorm) as bagua.SyncBatchNorm;
    expectClose(check, `iteration ${it} runningMean`, sbn.runningMean, host(bn.runningMean!), tol);
    expectClose(check, `iteration ${it} runningVar`, sbn.runningVar, host(bn.runningVar!), tol);
  }
  return check;
}

const even = new Array(size).fill(2);
report(ddpCase('ddp: BatchNormNet, affine', { sizes: even }));
report(ddpCase('ddp: BatchNormNet, no affine', { affine: false, sizes: even }));
report(ddpCase('ddp: 2D input', { twoD: true, sizes: even }));
report(ddpCase('ddp: one sample per rank', { twoD: true, sizes: new Array(size).fill(size === 1 ? 2 : 1) }));
report(ddpCase('ddp: different input sizes per rank', { sizes: Array.from({ length: size }, (_, r) => r + 2) }));

{ // PyTorch's "different input sizes, running value": 100 iterations at momentum 0.99
  const check = newCheck('running value: global mean and unbiased variance after 100 iterations');
  const counts = Array.from({ length: size }, (_, r) => 2 * r + 3);
  manualSeed(100 + rank);
  const x = randn([counts[rank], 2]).mul(2).add(rank);
  const layer = new bagua.SyncBatchNorm(2, { momentum: 0.99, statsExchange });
  for (let i = 0; i < 100; i++) noGrad(() => layer.forward(x));
  const all = gatherRows(host(x), counts.map((n) => n * 2));
  const n = all.length / 2;
  const mean = [0, 1].map((c) => all.filter((_, i) => i % 2 === c).reduce((a, v) => a + v, 0) / n);
  const unbiased = [0, 1].map((c) => all.filter((_, i) => i % 2 === c).reduce((a, v) => a + (v - mean[c]) ** 2, 0) / (n - 1));
  expectClose(check, 'runningMean', layer.runningMean, mean);
  expectClose(check, 'runningVar', layer.runningVar, unbiased);
  if (layer.numBatchesTracked !== 100) fail(check, `numBatchesTracked ${layer.numBatchesTracked}`);
  report(check);
}

if (size > 1) { // PyTorch's empty-input tests: a rank with no rows changes nothing and yields no NaN
  const check = newCheck('empty input on rank 0: finite everywhere, equal to the others alone');
  const counts = Array.from({ length: size }, (_, r) => (r === 0 ? 0 : 3));
  manualSeed(200 + rank);
  const x = randn([counts[rank], 3, 2, 2]).mul(1.5).add(0.5);
  x.requiresGrad = true;
  const layer = new bagua.SyncBatchNorm(3, { statsExchange });
  const y = layer.forward(x);
  y.mul(y).sum().backward();
  new bagua.GradientAllReduce().beforeStep(layer, group);
  for (const [what, t] of [['output', y], ['input grad', x.grad], ['weight grad', layer.weight!.grad], ['bias grad', layer.bias!.grad],
    ['runningMean', layer.runningMean], ['runningVar', layer.runningVar]] as const) {
    if (!t) fail(check, `${what} missing`);
    else if (!host(t).every(Number.isFinite)) fail(check, `${what} has NaN or Infinity`);
  }
  const all = gatherRows(host(x), counts.map((n) => n * 12));
  const plain = new nn.BatchNorm2d(3);
  noGrad(() => plain.forward(tensor(all, { shape: [all.length / 12, 3, 2, 2] })));
  expectClose(check, 'runningMean', layer.runningMean, host(plain.runningMean!));
  expectClose(check, 'runningVar', layer.runningVar, host(plain.runningVar!));
  report(check);
}

{ // Bagua's own test: 32x8x16x16 per rank against BatchNorm on the gathered batch
  const check = newCheck("bagua's test: 32x8x16x16 per rank");
  manualSeed(300 + rank);
  const x = randn([32, 8, 16, 16]).mul(3).add(rank);
  const g = randn([32, 8, 16, 16]);
  x.requiresGrad = true;
  const layer = new bagua.SyncBatchNorm(8, { statsExchange });
  const y = layer.forward(x);
  y.mul(g).sum().backward();
  new bagua.GradientAllReduce().beforeStep(layer, group);
  const per = x.numel;
  const xs = gatherRows(host(x), new Array(size).fill(per));
  const gs = gatherRows(host(g), new Array(size).fill(per));
  const ref = new nn.BatchNorm2d(8);
  const gx = tensor(xs, { shape: [32 * size, 8, 16, 16], requiresGrad: true });
  const ry = ref.forward(gx);
  ry.mul(tensor(gs, { shape: gx.shape })).sum().backward();
  const mineOf = (a: Float32Array) => a.subarray(rank * per, (rank + 1) * per);
  // 65536 values per channel are summed in another order than the reference: 1e-4 relative.
  const tol = { rtol: 1e-4, atol: 1e-5 };
  expectClose(check, 'output', y, mineOf(host(ry)), tol);
  expectClose(check, 'input grad', x.grad, mineOf(host(gx.grad!)), tol);
  expectClose(check, 'weight grad (averaged)', layer.weight!.grad, host(ref.weight!.grad!).map((v) => v / size), tol);
  expectClose(check, 'bias grad (averaged)', layer.bias!.grad, host(ref.bias!.grad!).map((v) => v / size), tol);
  expectClose(check, 'runningMean', layer.runningMean, host(ref.runningMean!), tol);
  expectClose(check, 'runningVar', layer.runningVar, host(ref.runningVar!), tol);
  report(check);
}
await bagua.destroyProcessGroup();
