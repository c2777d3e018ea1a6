/**
 * The gloo backend across processes under bagua-launch: every collective,
 * dtype and reduce op, sizes 0, 1, 2C+1, above the small-payload threshold
 * and 16 MiB, views, staged device buffers, sub-groups (nested, back to
 * back), world sizes 1-4, and two launchers as two simulated nodes. Each
 * launched job batches many checks (fixtures/gloo-worker.ts).
 */
import test from 'ava';
import { GLOO_WORKER, freePort, needGloo, parseResults, runGlooJob } from './helpers/gloo.js';
import { startLauncher } from './helpers/launch.js';

// 3 ranks run with the small-payload path off: every collective on gloo's asynchronous algorithms.
for (const n of [1, 2, 3, 4]) {
  const asyncOnly = n === 3;
  test.serial(`gloo: all collectives, ${n} rank${n > 1 ? 's' : ''}${asyncOnly ? ' (asynchronous path only)' : ''}`, async (t) => {
    if (!needGloo(t)) return;
    t.timeout(90_000);
    const job = await runGlooJob(n, ['collectives'], { env: asyncOnly ? { BAGUA_GLOO_SMALL_BYTES: '0' } : {} });
    t.log(`${n} ranks: ${job.ms} ms, ${job.results.map((r) => r.checks).join('/')} checks`);
    if (job.code !== 0) t.log(job.output.slice(-4000));
    t.is(job.code, 0);
    t.is(job.results.length, n);
    for (const r of job.results) {
      t.true(r.ok, `rank ${r.rank}: ${r.message ?? ''}`);
      t.true((r.checks ?? 0) > 100);
    }
  });
}

test.serial('gloo: two launchers as two nodes (--nnodes 2) make one world of 4', async (t) => {
  if (!needGloo(t)) return;
  t.timeout(90_000);
  const port = await freePort();
  const common = ['--nnodes', '2', '--master-addr', '127.0.0.1', '--master-port', String(port), '--nproc-per-node', '2', '--backend', 'gloo', '--timeout-ms', '30000'];
  const env = { BAGUA_STORE_TOKEN: 'two-nodes-secret' }; // multi-node jobs need one token on every node
  const node0 = startLauncher([...common, '--node-rank', '0', GLOO_WORKER, 'collectives', 'light'], env, 80_000);
  const node1 = startLauncher([...common, '--node-rank', '1', GLOO_WORKER, 'collectives', 'light'], env, 80_000);
  const [a, b] = await Promise.all([node0.done, node1.done]);
  const results = parseResults(a.stdout + a.stderr + b.stdout + b.stderr);
  if (a.code !== 0 || b.code !== 0) t.log((a.stdout + a.stderr).slice(-3000), (b.stdout + b.stderr).slice(-3000));
  t.is(a.code, 0);
  t.is(b.code, 0);
  t.deepEqual(
    results.map((r) => [r.rank, r.ok, r.size]),
    [0, 1, 2, 3].map((r) => [r, true, 4]),
  );
});
