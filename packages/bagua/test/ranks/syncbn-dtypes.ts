/**
 * SyncBatchNorm on bfloat16 / float16 inputs (PyTorch's mixed rule: float32 weight, bias and
 * running statistics) against plain BatchNorm on the concatenated batch in the same dtype,
 * which fixtures/batchnorm-dtypes.json ties to PyTorch (kernels' parity-dtypes suite). Every
 * rank builds the same global batch (seeded, rounded to the dtype), takes its rows (uneven,
 * an empty rank at 3 and 4 ranks), trains 3 steps with GradientAllReduce and compares.
 * Tolerances: y and dx are rounded once to the half type on both sides from float32 values
 * whose statistics differ only by the merge order (~2^-24): at most one ulp apart, rtol 2u
 * (u = 2^-8 bfloat16, 2^-11 float16), atol 2u 2^-5 max|v| near 0; the float32 gradients of
 * weight and bias and the running statistics: 1e-5 relative, 1e-6 max|v| absolute.
 * Each rank also prints its running statistics' bits (STATS lines): the records on the wire
 * are float32 and every rank merges the same gathered rows, so they must agree bit for bit.
 * BAGUA_TEST_STATS_EXCHANGE picks the exchange (allGather unless set).
 */
import { createHash } from 'node:crypto';
import { endStep, nn, tensor, toFloats, type HalfDType, type Tensor } from '@bagua/core';
import { randn, testDevice } from '@bagua/testing';
import * as bagua from '../../src/index.js';
import { exchangeUnderTest, expectClose, fail, newCheck, report } from './report.js';

await bagua.initProcessGroup();
const group = bagua.defaultGroup();
const { rank, size } = group;
const device = testDevice();
const statsExchange = exchangeUnderTest();

const SIZES: Record<number, number[]> = { 1: [5], 2: [3, 2], 3: [2, 0, 3], 4: [1, 2, 0, 3] };
const sizes = SIZES[size]!;
const globalN = sizes.reduce((a, b) => a + b, 0);
const first = sizes.slice(0, rank).reduce((a, b) => a + b, 0);
const UNIT: Record<HalfDType, number> = { bfloat16: 2 ** -8, float16: 2 ** -11 };
const MODULES = { BatchNorm1d: [6], BatchNorm2d: [3, 5, 5], BatchNorm3d: [2, 3, 3, 4] } as const;
const OPTIONS: nn.BatchNormOptions[] = [
  { affine: true, trackRunningStats: true, momentum: 0.1 },
  { affine: true, trackRunningStats: true, momentum: null },
  { affine: false, trackRunningStats: true, momentum: 0.1 },
  { affine: true, trackRunningStats: false, momentum: 0.1 },
];
const cases = (['bfloat16', 'float16'] as const).flatMap((dtype) =>
  (Object.keys(MODULES) as (keyof typeof MODULES)[]).flatMap((module) => OPTIONS.map((options) => ({ dtype, module, options }))));
console.log(`COUNT ${cases.length}`);

const floats = (t: Tensor): Float32Array => toFloats(t.dtype, t.toArray());
const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
/** This rank's rows of a global [N, ...] array. */
const mine = (a: Float32Array, perRow: number) => a.slice(first * perRow, (first + sizes[rank]!) * perRow);

cases.forEach((c, ci) => {
  const name = `${c.dtype}/${c.module}/affine=${c.options.affine}/track=${c.options.trackRunningStats}/momentum=${c.options.momentum}`;
  const check = newCheck(name);
  try {
    const inner = MODULES[c.module];
    const ch = inner[0];
    const perRow = inner.reduce((a, b) => a * b, 1);
    const make = () => {
      const m = new nn[c.module](ch, c.options);
      if (c.options.affine) {
        m.loadStateDict({ weight: tensor(randn(ch, 7, 1, 0.3)), bias: tensor(randn(ch, 8, 0, 0.5)) }, false);
      }
      return m.to(device) as nn._BatchNorm;
    };
    const plain = make();
    const sync = bagua.SyncBatchNorm.convertSyncBatchnorm(make(), undefined, { statsExchange });
    if (!(sync instanceof bagua.SyncBatchNorm)) throw new Error('convertSyncBatchnorm did not return a SyncBatchNorm');
    const allReduce = new bagua.GradientAllReduce();
    const u = UNIT[c.dtype];
    for (let step = 0; step < 3; step++) {
      const seed = 1000 * ci + 10 * step;
      // the global batch, rounded to the dtype once: every rank holds the same values
      const gx = tensor(randn(globalN * perRow, seed, 0.75, 1.5), { shape: [globalN, ...inner], dtype: c.dtype });
      const gdy = tensor(randn(globalN * perRow, seed + 1), { shape: [globalN, ...inner], dtype: c.dtype });
      const xAll = floats(gx), dyAll = floats(gdy);
      // reference: plain BatchNorm on the whole batch
      plain.zeroGrad();
      const rx = tensor(xAll, { shape: gx.shape, dtype: c.dtype, device, requiresGrad: true });
      const ry = plain.forward(rx);
      ry.backward(tensor(dyAll, { shape: gx.shape, dtype: c.dtype, device }));
      // SyncBatchNorm on this rank's rows
      const shape = [sizes[rank]!, ...inner];
      const x = tensor(mine(xAll, perRow), { shape, dtype: c.dtype, device, requiresGrad: true });
      sync.zeroGrad();
      const y = sync.forward(x);
      if (y.dtype !== c.dtype) fail(check, `step ${step}: output dtype ${y.dtype}`);
      y.backward(tensor(mine(dyAll, perRow), { shape, dtype: c.dtype, device }));
      allReduce.beforeStep(sync, group);
      const half = (v: Float32Array) => ({ rtol: 2 * u, atol: 2 * u * 2 ** -5 * maxAbs(v) + 1e-30 });
      const f32 = (v: ArrayLike<number>) => ({ rtol: 1e-5, atol: 1e-6 * maxAbs(v) + 1e-30 });
      const wantY = mine(floats(ry), perRow), wantDx = mine(floats(rx.grad!), perRow);
      expectClose(check, `step ${step} output`, floats(y), wantY, half(wantY));
      if (x.numel > 0 && x.grad?.dtype !== c.dtype) fail(check, `step ${step}: grad input dtype ${x.grad?.dtype}`);
      expectClose(check, `step ${step} gradInput`, x.numel > 0 ? floats(x.grad!) : new Float32Array(), wantDx, half(wantDx));
      if (c.options.affine) {
        // GradientAllReduce averages the ranks' partial sums: the global gradient / world size
        const gw = floats(plain.weight!.grad!).map((v) => v / size), gb = floats(plain.bias!.grad!).map((v) => v / size);
        expectClose(check, `step ${step} gradWeight`, floats(sync.weight!.grad!), gw, f32(gw));
        expectClose(check, `step ${step} gradBias`, floats(sync.bias!.grad!), gb, f32(gb));
      }
      if (c.options.trackRunningStats) {
        const rm = floats(plain.runningMean!), rv = floats(plain.runningVar!);
        expectClose(check, `step ${step} runningMean`, floats(sync.runningMean!), rm, f32(rm));
        expectClose(check, `step ${step} runningVar`, floats(sync.runningVar!), rv, f32(rv));
        const bits = createHash('sha256');
        bits.update(new Uint8Array((sync.runningMean!.toArray() as Float32Array).buffer));
        bits.update(new Uint8Array((sync.runningVar!.toArray() as Float32Array).buffer));
        console.log(`STATS ${ci}/${step} ${bits.digest('hex').slice(0, 16)}`);
      }
      endStep();
    }
  } catch (e) {
    fail(check, `threw: ${(e as Error).stack}`);
  }
  report(check);
});
await bagua.destroyProcessGroup();
