/**
 * The gloo all-reduce table (native/gloo/small_path.cc choosePath): every
 * size class, at 2-4 ranks, gives the right sums and the same bits on every
 * rank (fixtures/gloo-paths.ts), also with the synchronous mesh off, where
 * gloo's ring takes every size, even counts below the rank count.
 */
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { needGloo, runGlooJob } from './helpers/gloo.js';

const SCRIPT = fileURLToPath(new URL('./fixtures/gloo-paths.js', import.meta.url));

const CASES: [number, Record<string, string>][] = [
  [2, {}],
  [3, {}],
  [4, {}],
  [2, { BAGUA_GLOO_SMALL_BYTES: '0' }],
  [3, { BAGUA_GLOO_SMALL_BYTES: '0' }],
];

for (const [n, env] of CASES) {
  const label = `gloo: every all-reduce size class, ${n} ranks${env.BAGUA_GLOO_SMALL_BYTES ? ', mesh off' : ''}: right sums, same bits on every rank`;
  test.serial(label, async (t) => {
    if (!needGloo(t)) return;
    t.timeout(120_000);
    const job = await runGlooJob(n, [], { script: SCRIPT, env, killAfterMs: 110_000 });
    if (job.code !== 0) t.log(job.output.slice(-4000));
    t.is(job.code, 0);
    t.is(job.results.length, n);
    const rows = job.results as (typeof job.results[number] & { hashes?: Record<string, string> })[];
    for (const r of rows) t.true(r.ok, `rank ${r.rank}: ${r.message ?? ''}`);
    const first = rows[0]?.hashes ?? {};
    t.is(Object.keys(first).length, 14);
    for (const r of rows.slice(1)) t.deepEqual(r.hashes, first, `rank ${r.rank}'s results differ from rank 0's`);
  });
}
