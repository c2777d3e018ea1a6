import test from 'ava';
import { assertJob, backendReady, runJob, type Backend } from './helpers/job.js';

for (const backend of ['threads', 'gloo'] as Backend[]) {
  for (const exchange of ['allGather', 'allReduce'] as const) {
    for (const n of [2, 4]) {
      test(`ports of PyTorch's and Bagua's SyncBatchNorm tests: ${backend}, ${n} ranks, ${exchange}`, async (t) => {
        if (!(await backendReady(t, backend))) return;
        const job = await runJob(backend, n, 'syncbn-anchors', [], { env: { BAGUA_TEST_STATS_EXCHANGE: exchange } });
        assertJob(t, job, n, 8);
        t.deepEqual(job.results[0].map((c) => c.name).slice(0, 5), [
          'ddp: BatchNormNet, affine', 'ddp: BatchNormNet, no affine', 'ddp: 2D input', 'ddp: one sample per rank',
          'ddp: different input sizes per rank']);
      });
    }
  }
}
