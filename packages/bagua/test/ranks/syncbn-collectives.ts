/** Counts the collectives SyncBatchNorm issues (exchange: BAGUA_TEST_STATS_EXCHANGE), through a group that counts its calls. */
import { randn } from '@bagua/core';
import type { ProcessGroup } from '@bagua/comm';
import * as bagua from '../../src/index.js';
import { exchangeUnderTest, fail, newCheck, report } from './report.js';

await bagua.initProcessGroup();
const world = bagua.defaultGroup();
const calls: string[] = [];
const counting: ProcessGroup = new Proxy(world, {
  get(target, prop, receiver) {
    const v = Reflect.get(target, prop, receiver);
    if (typeof v !== 'function') return v;
    return (...args: unknown[]) => {
      if (['allReduce', 'allGather', 'broadcast', 'barrier'].includes(String(prop))) calls.push(String(prop));
      return v.apply(target, args);
    };
  },
});

function expectCalls(name: string, run: () => void, want: string[]): void {
  const check = newCheck(name);
  calls.length = 0;
  run();
  if (JSON.stringify(calls) !== JSON.stringify(want)) fail(check, `collectives ${JSON.stringify(calls)}, want ${JSON.stringify(want)}`);
  report(check);
}

const statsExchange = exchangeUnderTest();
// 'allReduce': the layer's first training step also broadcasts the shift, once
const [first, later] = statsExchange === 'allReduce' ? [['broadcast', 'allReduce'], ['allReduce']] : [['allGather'], ['allGather']];
for (const track of [true, false]) {
  const layer = new bagua.SyncBatchNorm(4, { processGroup: counting, trackRunningStats: track, statsExchange });
  const x = randn([3, 4, 5]);
  x.requiresGrad = true;
  let y = x;
  expectCalls(`training forward (track=${track})`, () => (y = layer.forward(x)), first);
  expectCalls(`training backward (track=${track})`, () => y.sum().backward(), ['allReduce']);
  expectCalls(`second training forward (track=${track})`, () => (y = layer.forward(x)), later);
  expectCalls(`second training backward (track=${track})`, () => y.sum().backward(), ['allReduce']);
  layer.eval();
  expectCalls(`eval forward and backward (track=${track})`, () => layer.forward(x).sum().backward(), []);
}
await bagua.destroyProcessGroup();
