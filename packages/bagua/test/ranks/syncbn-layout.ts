/**
 * The "sync" cases of fixtures/channels-last.json for this world size: each rank
 * takes its channels-last batch, runs SyncBatchNorm (one training step) and compares
 * with PyTorch's BatchNorm2d on the concatenated batch: output and input gradient
 * (values and channels-last storage), weight/bias gradients (the rank's partial sums
 * all-reduced), running statistics; on BAGUA_TEST_DEVICE, with the statistics
 * exchange of BAGUA_TEST_STATS_EXCHANGE.
 */
import { nn, tensor, type Tensor } from '@bagua/core';
import { loadFixture, testDevice, type FixtureTensor } from '@bagua/testing';
import * as bagua from '../../src/index.js';
import { exchangeUnderTest, expectClose, fail, newCheck, report } from './report.js';

type T = FixtureTensor;
interface SyncCase {
  name: string; worldSize: number; numFeatures: number; eps: number; momentum: number;
  weight: T; bias: T; runningMean: T; runningVar: T; rankInputs: T[]; rankGradOutputs: T[];
  rankOutputs: T[]; rankGradInputs: T[]; gradWeight: T; gradBias: T; runningMeanAfter: T; runningVarAfter: T;
}

await bagua.initProcessGroup();
const group = bagua.defaultGroup();
const { rank, size } = group;
const device = testDevice();
const statsExchange = exchangeUnderTest();
const cases = loadFixture<{ sync: SyncCase[] }>('channels-last.json').sync.filter((c) => c.worldSize === size);
console.log(`COUNT ${cases.length}`);

const onDevice = (ft: T) => tensor(Float32Array.from(ft.data), { shape: ft.shape, device });
const channelsLast = (ft: T): Tensor => onDevice(ft).contiguous('channelsLast').detach();

for (const c of cases) {
  const check = newCheck(c.name);
  try {
    const plain = new nn.BatchNorm2d(c.numFeatures, { eps: c.eps, momentum: c.momentum });
    plain.loadStateDict({ ...plain.stateDict(), weight: onDevice(c.weight), bias: onDevice(c.bias),
      runningMean: onDevice(c.runningMean), runningVar: onDevice(c.runningVar) });
    const sync = bagua.SyncBatchNorm.convertSyncBatchnorm(plain, undefined, { statsExchange });
    if (!(sync instanceof bagua.SyncBatchNorm)) throw new Error('convertSyncBatchnorm did not return a SyncBatchNorm');
    sync.to(device);
    const x = channelsLast(c.rankInputs[rank]!);
    x.requiresGrad = true;
    const y = sync.forward(x);
    if (y.memoryFormat !== 'channelsLast') fail(check, `output is ${y.memoryFormat}, not channelsLast`);
    y.backward(channelsLast(c.rankGradOutputs[rank]!));
    if (x.grad?.memoryFormat !== 'channelsLast') fail(check, `grad input is ${x.grad?.memoryFormat}, not channelsLast`);
    new bagua.GradientAllReduce().beforeStep(sync, group);
    expectClose(check, 'output', y, c.rankOutputs[rank]!.data);
    expectClose(check, 'gradInput', x.grad, c.rankGradInputs[rank]!.data);
    // GradientAllReduce averages the ranks' partial sums: the global gradient / world size.
    expectClose(check, 'gradWeight', sync.weight?.grad, c.gradWeight.data.map((v) => v / size));
    expectClose(check, 'gradBias', sync.bias?.grad, c.gradBias.data.map((v) => v / size));
    expectClose(check, 'runningMean', sync.runningMean, c.runningMeanAfter.data);
    expectClose(check, 'runningVar', sync.runningVar, c.runningVarAfter.data);
  } catch (e) {
    fail(check, `threw: ${(e as Error).stack}`);
  }
  report(check);
}
await bagua.destroyProcessGroup();
