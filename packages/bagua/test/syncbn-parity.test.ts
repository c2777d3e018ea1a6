import test from 'ava';
import { loadFixture } from '@bagua/testing';
import { assertJob, backendReady, runJob, type Backend } from './helpers/job.js';

const cases = loadFixture<{ cases: { worldSize: number }[] }>('syncbn.json').cases;

test('the SyncBatchNorm fixture covers world sizes 1 to 4', (t) => {
  t.is(cases.length, 32);
  t.deepEqual([...new Set(cases.map((c) => c.worldSize))].sort(), [1, 2, 3, 4]);
});

for (const backend of ['threads', 'gloo'] as Backend[]) {
  for (const exchange of ['allGather', 'allReduce'] as const) {
    for (const n of [1, 2, 3, 4]) {
      test(`SyncBatchNorm equals BatchNorm on the concatenated batch: ${backend}, ${n} rank(s), ${exchange}`, async (t) => {
        if (!(await backendReady(t, backend))) return;
        const job = await runJob(backend, n, 'syncbn-fixtures', [], { env: { BAGUA_TEST_STATS_EXCHANGE: exchange } });
        const expected = cases.filter((c) => c.worldSize === n).length;
        t.true(expected > 0);
        t.deepEqual(job.lines('COUNT').map((l) => Number(l[0])), new Array(n).fill(expected));
        assertJob(t, job, n, expected);
        const worst = Math.max(...job.results.flat().map((c) => c.worst));
        t.log(`${backend} x${n} ${exchange}: ${job.results.flat().length} checks, worst error ${worst.toFixed(3)} of the tolerance`);
      });
    }
  }
}
