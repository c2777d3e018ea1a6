/** SyncBatchNorm on channels-last input equals BatchNorm on the concatenated batch (fixtures/channels-last.json). */
import test from 'ava';
import { loadFixture } from '@bagua/testing';
import { assertJob, backendReady, runJob, type Backend } from './helpers/job.js';

const cases = loadFixture<{ sync: { worldSize: number }[] }>('channels-last.json').sync;

test('the channels-last SyncBatchNorm fixture covers world sizes 1 to 4', (t) => {
  t.deepEqual(cases.map((c) => c.worldSize), [1, 2, 3, 4]);
});

for (const backend of ['threads', 'gloo'] as Backend[]) {
  for (const exchange of ['allGather', 'allReduce'] as const) {
    for (const n of [1, 2, 3, 4]) {
      test(`SyncBatchNorm on channels-last equals BatchNorm on the concatenated batch: ${backend}, ${n} rank(s), ${exchange}`,
        async (t) => {
          if (!(await backendReady(t, backend))) return;
          const job = await runJob(backend, n, 'syncbn-layout', [], { env: { BAGUA_TEST_STATS_EXCHANGE: exchange } });
          t.deepEqual(job.lines('COUNT').map((l) => Number(l[0])), new Array(n).fill(1));
          assertJob(t, job, n, 1);
        });
    }
  }
}
