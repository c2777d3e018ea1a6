/**
 * allReduceAsync on the gloo backend: started all-reduces run on the shim's
 * communication thread in start order, synchronous collectives issued after
 * them wait for them, results equal the synchronous path's; a dead, stopped
 * or mismatched peer fails wait() with a CollectiveError naming it, never a hang.
 */
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { needGloo, runGlooJob } from './helpers/gloo.js';

const SCRIPT = fileURLToPath(new URL('./fixtures/gloo-async.js', import.meta.url));

for (const n of [2, 3]) {
  test.serial(`gloo async: started all-reduces keep order with synchronous collectives, ${n} ranks`, async (t) => {
    if (!needGloo(t)) return;
    const job = await runGlooJob(n, ['order'], { script: SCRIPT });
    if (job.code !== 0) t.log(job.output.slice(-3000));
    t.is(job.code, 0);
    t.deepEqual(job.results.map((r) => [r.rank, r.ok]), Array.from({ length: n }, (_, r) => [r, true]));
  });
}

test.serial('gloo async: destroy settles a started all-reduce', async (t) => {
  if (!needGloo(t)) return;
  const job = await runGlooJob(2, ['destroy'], { script: SCRIPT });
  if (job.code !== 0) t.log(job.output.slice(-3000));
  t.is(job.code, 0);
  t.is(job.results.filter((r) => r.ok).length, 2);
});

const faults: [string, RegExp][] = [
  ['killed', /rank 2|connection/],
  ['stopped', /rank 2 did not arrive|timed out|timeout/i],
  ['mismatch', /ranks called different collectives: allReduce #\d+ \(float32 x 6[45], sum\)/],
];
for (const [scenario, message] of faults) {
  test.serial(`gloo async: ${scenario} peer fails wait() with a CollectiveError`, async (t) => {
    if (!needGloo(t)) return;
    const timeoutMs = 3000;
    const job = await runGlooJob(3, [scenario], { script: SCRIPT, timeoutMs, killAfterMs: 40_000 });
    const errs = job.results.filter((r) => r.error === 'CollectiveError');
    t.log(errs.map((e) => `rank ${e.rank} ${e.ms} ms: ${e.message}`).join('\n'));
    t.not(job.code, 0);
    const survivors = scenario === 'mismatch' ? 3 : 2;
    t.is(errs.length, survivors, job.output.slice(-2000));
    for (const e of errs) {
      t.is(e.op, 'allReduce');
      t.regex(e.message!, message);
      if (scenario !== 'mismatch') t.true(e.missing!.includes(2), `rank ${e.rank} names rank 2`);
      t.true(e.ms! < 4 * timeoutMs, `failed after ${e.ms} ms`);
    }
  });
}
