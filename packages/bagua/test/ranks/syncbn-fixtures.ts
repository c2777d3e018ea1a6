/**
 * Every case of fixtures/syncbn.json for this world size: each rank takes its
 * rows of the global batch, runs SyncBatchNorm (converted from the plain
 * layer) for three steps with GradientAllReduce, and compares with PyTorch's
 * BatchNorm on the concatenated batch, on BAGUA_TEST_DEVICE (cpu unless set), with
 * the statistics exchange of BAGUA_TEST_STATS_EXCHANGE (allGather unless set).
 * argv[2]: the fixture file (default syncbn.json).
 */
import { nn, tensor, type Tensor } from '@bagua/core';
import { loadFixture, testDevice, type FixtureTensor } from '@bagua/testing';
import * as bagua from '../../src/index.js';
import { exchangeUnderTest, expectClose, fail, newCheck, report } from './report.js';

interface Step {
  input: FixtureTensor; gradOutput: FixtureTensor; output: FixtureTensor; gradInput: FixtureTensor;
  gradWeight: FixtureTensor | null; gradBias: FixtureTensor | null;
  runningMean: FixtureTensor | null; runningVar: FixtureTensor | null; numBatchesTracked: number | null;
  /** syncbn-largemean.json: the absolute error float32 cannot avoid there (the generator says why) */
  tolerance?: { output: number; gradInput: number; gradWeight?: number };
}
interface Case {
  name: string; worldSize: number; sizes: number[]; module: 'BatchNorm1d' | 'BatchNorm2d' | 'BatchNorm3d';
  numFeatures: number; options: nn.BatchNormOptions; initial: { weight: FixtureTensor | null; bias: FixtureTensor | null };
  steps: Step[];
}

await bagua.initProcessGroup();
const group = bagua.defaultGroup();
const { rank, size } = group;
const device = testDevice();
const statsExchange = exchangeUnderTest();
const cases = loadFixture<{ cases: Case[] }>(process.argv[2] ?? 'syncbn.json').cases.filter((c) => c.worldSize === size);
console.log(`COUNT ${cases.length}`);

/** This rank's rows of a global [N, ...] fixture tensor. */
function rows(ft: FixtureTensor, sizes: number[], requiresGrad = false): Tensor {
  const perRow = ft.shape.slice(1).reduce((a, b) => a * b, 1);
  const first = sizes.slice(0, rank).reduce((a, b) => a + b, 0);
  const data = Float32Array.from(ft.data.slice(first * perRow, (first + sizes[rank]) * perRow));
  return tensor(data, { shape: [sizes[rank], ...ft.shape.slice(1)], requiresGrad, device });
}

const slice = (ft: FixtureTensor, sizes: number[]) => rows(ft, sizes).toArray() as Float32Array;
const scaled = (ft: FixtureTensor | null, by: number) => ft && ft.data.map((v) => v * by);

for (const c of cases) {
  const check = newCheck(c.name);
  try {
    const plain = new nn[c.module](c.numFeatures, c.options);
    if (c.initial.weight) plain.loadStateDict({ weight: tensor(c.initial.weight.data) }, false);
    if (c.initial.bias) plain.loadStateDict({ bias: tensor(c.initial.bias.data) }, false);
    const sync = bagua.SyncBatchNorm.convertSyncBatchnorm(plain, undefined, { statsExchange });
    if (!(sync instanceof bagua.SyncBatchNorm)) throw new Error('convertSyncBatchnorm did not return a SyncBatchNorm');
    sync.to(device);
    const allReduce = new bagua.GradientAllReduce();
    c.steps.forEach((s, i) => {
      const x = rows(s.input, c.sizes, true);
      sync.zeroGrad();
      const y = sync.forward(x);
      y.mul(rows(s.gradOutput, c.sizes)).sum().backward();
      allReduce.beforeStep(sync, group);
      const tol = (atol?: number) => (atol === undefined ? undefined : { rtol: 1e-5, atol });
      expectClose(check, `step ${i} output`, y, slice(s.output, c.sizes), tol(s.tolerance?.output));
      expectClose(check, `step ${i} gradInput`, x.grad ?? (x.numel === 0 ? new Float32Array() : null), slice(s.gradInput, c.sizes),
        tol(s.tolerance?.gradInput));
      // GradientAllReduce averages the ranks' partial sums: the global gradient / world size.
      const gw = s.tolerance?.gradWeight;
      expectClose(check, `step ${i} gradWeight`, sync.weight?.grad, scaled(s.gradWeight, 1 / size), tol(gw && gw / size));
      expectClose(check, `step ${i} gradBias`, sync.bias?.grad, scaled(s.gradBias, 1 / size));
      expectClose(check, `step ${i} runningMean`, sync.runningMean, s.runningMean?.data);
      expectClose(check, `step ${i} runningVar`, sync.runningVar, s.runningVar?.data);
      const tracked = c.options.trackRunningStats === false ? null : sync.numBatchesTracked;
      if (tracked !== s.numBatchesTracked) fail(check, `step ${i} numBatchesTracked ${tracked} != ${s.numBatchesTracked}`);
    });
  } catch (e) {
    fail(check, `threw: ${(e as Error).stack}`);
  }
  report(check);
}
await bagua.destroyProcessGroup();
