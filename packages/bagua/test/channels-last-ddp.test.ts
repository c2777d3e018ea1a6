import test from 'ava';
import { assertJob, backendReady, runJob, type Backend } from './helpers/job.js';

for (const backend of ['threads', 'gloo'] as Backend[]) {
  test(`GradientAllReduce with channels-last parameters equals training on the concatenated batch (${backend})`, async (t) => {
    if (!(await backendReady(t, backend))) return;
    assertJob(t, await runJob(backend, 2, 'channels-last-ddp'), 2);
  });
}
