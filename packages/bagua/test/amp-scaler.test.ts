import test from 'ava';
import { backendReady, runJob, type Backend } from './helpers/job.js';

for (const backend of ['threads', 'gloo'] as Backend[]) {
  test(`GradScaler under withBagua: an inf on one rank skips the step on every rank (${backend})`, async (t) => {
    if (!(await backendReady(t, backend))) return;
    const job = await runJob(backend, 2, 'amp-scaler');
    if (job.code !== 0) t.log(job.output.slice(-4000));
    t.is(job.code, 0);
    const [stepped, scale, weights] = ['STEPPED', 'SCALE', 'WEIGHTS'].map((k) => job.lines(k).map((r) => r[0]));
    for (const r of [0, 1]) {
      t.deepEqual(JSON.parse(stepped[r]!), [true, false, true, true], `rank ${r}: only step 1 skipped`);
      t.is(Number(scale[r]), 512, `rank ${r}: the scale backed off once`);
    }
    t.truthy(weights[0]);
    t.is(weights[0], weights[1], 'the same weights, bit for bit, on both ranks');
  });
}
