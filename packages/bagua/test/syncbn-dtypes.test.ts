/**
 * SyncBatchNorm on bfloat16 and float16 inputs equals BatchNorm on the concatenated batch
 * (running statistics included) at world sizes 1-4 over threads and gloo, both exchanges;
 * the merged running statistics are the same bits on every rank (ranks/syncbn-dtypes.ts
 * says which tolerances and why).
 */
import test from 'ava';
import { assertJob, backendReady, runJob, type Backend } from './helpers/job.js';

for (const backend of ['threads', 'gloo'] as Backend[]) {
  for (const exchange of ['allGather', 'allReduce'] as const) {
    for (const n of [1, 2, 3, 4]) {
      test(`SyncBatchNorm on half inputs equals BatchNorm on the global batch: ${backend}, ${n} rank(s), ${exchange}`, async (t) => {
        if (!(await backendReady(t, backend))) return;
        const job = await runJob(backend, n, 'syncbn-dtypes', [], { env: { BAGUA_TEST_STATS_EXCHANGE: exchange }, timeoutMs: 180_000 });
        const counts = job.lines('COUNT').map((l) => Number(l[0]));
        t.deepEqual(counts, new Array(n).fill(24));
        assertJob(t, job, n, 24);
        const stats = job.lines('STATS');
        t.true(stats[0]!.length >= 18 * 3, `rank 0 printed ${stats[0]!.length} STATS lines`);
        for (let r = 1; r < n; r++) t.deepEqual(stats[r], stats[0], `rank ${r}'s running statistics are rank 0's bits`);
        const worst = Math.max(...job.results.flat().map((c) => c.worst));
        t.log(`${backend} x${n} ${exchange}: ${job.results.flat().length} checks, worst error ${worst.toFixed(3)} of the tolerance`);
      });
    }
  }
}
