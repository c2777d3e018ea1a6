/**
 * The synchronous ring all-reduce (native/gloo/small_path.cc SyncRingAllreduce):
 * a failure travels round the ring at once. A rank killed inside a 64 MiB
 * all-reduce of 4 ranks: the rank after it sees the connection drop, and the
 * ranks further round, blocked reading a piece from a neighbour that failed,
 * see its verdict instead of waiting out the 10 s timeout (which they did
 * before the ring peeked at what comes next). Every survivor names the dead
 * rank alone (the verdicts), well inside the timeout.
 */
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { needGloo, runGlooJob } from './helpers/gloo.js';

const DESYNC = fileURLToPath(new URL('./fixtures/gloo-desync.js', import.meta.url));

for (const n of [3, 4]) {
  test.serial(`gloo ring: a rank killed inside a 64 MiB all-reduce of ${n} ranks: every survivor fails within 3 s of a 10 s timeout, naming it`, async (t) => {
    if (!needGloo(t)) return;
    const timeoutMs = 10_000;
    const job = await runGlooJob(n, ['kill', '_', String(64 << 20)], { timeoutMs, graceMs: 30_000, script: DESYNC, killAfterMs: 90_000 });
    const errs = job.results.filter((r) => r.error === 'CollectiveError');
    t.log(errs.map((e) => `rank ${e.rank} after ${e.failMs} ms: ${e.message}`).join('\n'));
    const victim = n - 2; // the fixture's choice
    const survivors = Array.from({ length: n }, (_, r) => r).filter((r) => r !== victim);
    t.deepEqual(errs.map((e) => e.rank).sort(), survivors, `every survivor reports:\n${job.output.slice(-3000)}`);
    for (const e of errs) {
      t.deepEqual(e.missing, [victim], `rank ${e.rank} names rank ${victim} and only it`);
      t.true(e.failMs! < 3_000, `rank ${e.rank} failed after ${e.failMs} ms (the timeout is ${timeoutMs} ms)`);
    }
    t.not(job.code, 0);
  });
}
