import test from 'ava';
import { loadFixture } from '@bagua/testing';
import { assertJob, backendReady, runJob, type Backend } from './helpers/job.js';

/**
 * Inputs with |mean| / std = 1e4 (fixtures/syncbn-largemean.json, from PyTorch in float64):
 * the 'allReduce' exchange must hold the variance to the float32 tolerance (runningVar at
 * momentum 1 is the batch's unbiased variance itself). The 'allGather' records carry the
 * mean rounded to float32, whose error enters the between-rank term of the variance; its
 * error is measured and logged here, not required.
 */
const cases = loadFixture<{ cases: { worldSize: number }[] }>('syncbn-largemean.json').cases;

test('the large-mean fixture covers 2 to 4 ranks', (t) => {
  t.deepEqual([...new Set(cases.map((c) => c.worldSize))].sort(), [2, 3, 4]);
});

for (const backend of ['threads', 'gloo'] as Backend[]) {
  for (const n of [2, 3, 4]) {
    const expected = cases.filter((c) => c.worldSize === n).length;
    test(`|mean| / std = 1e4: the allReduce exchange equals BatchNorm on the concatenated batch: ${backend}, ${n} ranks`, async (t) => {
      if (!(await backendReady(t, backend))) return;
      const job = await runJob(backend, n, 'syncbn-fixtures', ['syncbn-largemean.json'],
        { env: { BAGUA_TEST_STATS_EXCHANGE: 'allReduce' } });
      assertJob(t, job, n, expected);
      t.log(`allReduce x${n}: worst error ${Math.max(...job.results.flat().map((c) => c.worst)).toFixed(3)} of the tolerance`);
    });

    test(`|mean| / std = 1e4: the allGather exchange, measured: ${backend}, ${n} ranks`, async (t) => {
      if (!(await backendReady(t, backend))) return;
      const job = await runJob(backend, n, 'syncbn-fixtures', ['syncbn-largemean.json'],
        { env: { BAGUA_TEST_STATS_EXCHANGE: 'allGather' } });
      t.is(job.code, 0, job.output.slice(-2000));
      const checks = job.results.flat();
      t.is(checks.length, n * expected);
      const details = [...new Set(checks.flatMap((c) => c.details).filter((d) => d.includes('runningVar')))];
      t.log(`allGather x${n}: worst error ${Math.max(...checks.map((c) => c.worst)).toFixed(3)} of the tolerance; ` +
        `${details.length} runningVar misses${details.length ? `, e.g. ${details[0]}` : ''}`);
    });
  }
}
