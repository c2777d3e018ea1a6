import test from 'ava';
import { nn, tensor } from '@bagua/core';
import * as bagua from '../src/index.js';
import { assertJob, backendReady, runJob, type Backend } from './helpers/job.js';

test('the facade exposes the seed API', (t) => {
  t.is(bagua.contrib.SyncBatchNorm, bagua.SyncBatchNorm);
  t.is(bagua.algorithms.GradientAllReduce, bagua.GradientAllReduce);
  t.is(typeof new nn.Linear(1, 1).withBagua, 'function');
  t.is(bagua.isInitialized(), false);
  t.throws(() => new nn.Linear(1, 1).withBagua([], new bagua.GradientAllReduce()), { message: /initProcessGroup\(\) first/ });
  t.throws(() => new bagua.GradientAllReduce({ bucketBytes: 0 }), { message: /bucketBytes must be a positive number/ });
});

test('without a process group SyncBatchNorm is plain BatchNorm (world size 1)', (t) => {
  const sync = new bagua.SyncBatchNorm(2, { momentum: null });
  const plain = new nn.BatchNorm1d(2, { momentum: null });
  const x = tensor([[1, 2], [3, 5], [4, 0]]);
  t.deepEqual(sync.forward(x).toArray(), plain.forward(x).toArray());
  t.deepEqual(sync.runningVar!.toArray(), plain.runningVar!.toArray());
  t.is(sync.numBatchesTracked, 1);
});

for (const backend of ['threads', 'gloo'] as Backend[]) {
  test(`withBagua and the rank helpers across ranks: ${backend}`, async (t) => {
    if (!(await backendReady(t, backend))) return;
    assertJob(t, await runJob(backend, 3, 'facade'), 3, 3);
  });
}
