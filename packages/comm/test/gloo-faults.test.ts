/**
 * Faults on the gloo backend: a rank that never joins a rendezvous, a
 * member that never joins a sub-group, a rank killed mid-collective (small
 * and large payloads), and ranks calling different collectives. The others
 * must fail with a CollectiveError within the timeout, naming the op, the
 * group and (where known) the missing ranks; the launcher exits non-zero.
 */
import test, { type ExecutionContext } from 'ava';
import { fileURLToPath } from 'node:url';
import { needGloo, runGlooJob, type JobResult } from './helpers/gloo.js';

const DESYNC = fileURLToPath(new URL('./fixtures/gloo-desync.js', import.meta.url));

const TIMEOUT = 1500;

/**
 * Runs a scenario on 3 ranks (null when gloo is absent: the test is skipped); the job
 * must fail. Returns it with the CollectiveErrors the ranks reported (and logs them).
 */
async function runFault(t: ExecutionContext, args: string[], timeoutMs: number): Promise<{ job: JobResult; errs: JobResult['results'] } | null> {
  if (!needGloo(t)) return null;
  const job = await runGlooJob(3, args, { timeoutMs });
  const errs = job.results.filter((r) => r.error === 'CollectiveError');
  t.log(errs.map((e) => `${e.ms} ms: ${e.message}`).join('\n'));
  t.not(job.code, 0);
  return { job, errs };
}

test('gloo fault: a rank that never joins the rendezvous', async (t) => {
  const run = await runFault(t, ['never-join'], TIMEOUT);
  if (!run) return;
  const { job, errs } = run;
  t.deepEqual(errs.map((e) => e.rank), [0, 1]);
  for (const e of errs) {
    t.is(e.op, 'init');
    t.deepEqual(e.missing, [2]);
    t.regex(e.message!, /rendezvous timed out after 1500 ms/);
  }
  t.true(job.ms < 20_000, `job took ${job.ms} ms`);
});

test('gloo fault: a member that never joins a sub-group', async (t) => {
  const run = await runFault(t, ['subgroup-absent'], TIMEOUT);
  if (!run) return;
  const { errs } = run;
  t.is(errs.length, 1);
  t.is(errs[0]!.rank, 0);
  t.is(errs[0]!.group, 'group(0,1)#1');
  t.deepEqual(errs[0]!.missing, [1]);
});

for (const size of ['small', 'large'] as const) {
  test(`gloo fault: a rank killed during an all-reduce (${size} payload)`, async (t) => {
    const run = await runFault(t, ['killed', size], 10_000);
    if (!run) return;
    const { job, errs } = run;
    t.true(errs.length >= 1, 'a surviving rank reports the failure');
    for (const e of errs) {
      t.is(e.op, 'allReduce');
      t.is(e.group, 'world');
      t.true(e.rank === 0 || e.rank === 1);
    }
    // The rank next to the dead one sees its connection drop, long before the 10 s timeout.
    t.true(errs.some((e) => e.missing!.includes(2)), 'some survivor names rank 2');
    t.true(job.ms < 9_000, `job took ${job.ms} ms`);
  });
}

test('gloo fault: ranks calling different collectives of the same size', async (t) => {
  const run = await runFault(t, ['mismatch', 'same'], 10_000);
  if (!run) return;
  const { job, errs } = run;
  t.is(errs.length, 3, 'every rank fails');
  for (const e of errs) t.regex(e.message!, /ranks called different collectives: (allReduce #\d+ \(float32 x 64, sum\) here, rank \d called allGather #\d+ \(float32 x 64\)|allGather #\d+ \(float32 x 64\) here, rank 0 called allReduce #\d+ \(float32 x 64, sum\))/);
  t.true(job.ms < 9_000, 'detected without waiting for the timeout');
});

test('gloo fault: ranks calling different collectives of different sizes fail at once', async (t) => {
  const run = await runFault(t, ['mismatch', 'diff'], 10_000);
  if (!run) return;
  const { job, errs } = run;
  t.is(errs.length, 3, 'every rank fails');
  for (const e of errs) t.regex(e.message!, /ranks called different collectives: .*allReduce #\d+ \(float32 x 64, sum\).*allGather #\d+ \(float32 x 3\)|allGather #\d+ \(float32 x 3\).*allReduce #\d+ \(float32 x 64, sum\)/);
  t.true(job.ms < 9_000, `job took ${job.ms} ms`);
});

test('gloo fault: a rank killed inside a 64 MiB all-reduce of 4 ranks is the one every survivor names', async (t) => {
  if (!needGloo(t)) return;
  const timeoutMs = 10_000;
  // A long grace: the survivors must get to report, not be stopped by the launcher.
  const job = await runGlooJob(4, ['kill', '_', String(64 << 20)], { timeoutMs, graceMs: 30_000, script: DESYNC, killAfterMs: 90_000 });
  const errs = job.results.filter((r) => r.error === 'CollectiveError');
  t.log(errs.map((e) => `rank ${e.rank} after ${e.failMs} ms: ${e.message}`).join('\n'));
  t.deepEqual(errs.map((e) => e.rank), [0, 1, 3], `every survivor reports:\n${job.output.slice(-3000)}`);
  for (const e of errs) {
    t.is(e.op, 'allReduce');
    t.deepEqual(e.missing, [2], `rank ${e.rank} names rank 2 and only rank 2`);
    t.true(e.failMs! < timeoutMs + 5_000, `rank ${e.rank} failed after ${e.failMs} ms`);
  }
  t.not(job.code, 0);
});

test('gloo fault: a rank that never comes to an all-reduce is the only one named, by every rank that came', async (t) => {
  if (!needGloo(t)) return;
  const timeoutMs = 2_000;
  const job = await runGlooJob(3, ['absent', 'small'], { timeoutMs, graceMs: 10_000, script: DESYNC });
  const errs = job.results.filter((r) => r.error === 'CollectiveError');
  t.log(errs.map((e) => `rank ${e.rank} after ${e.failMs} ms: ${e.message}`).join('\n'));
  t.deepEqual(errs.map((e) => e.rank), [0, 1]);
  for (const e of errs) {
    t.deepEqual(e.missing, [2]);
    t.regex(e.message!, /rank 2 did not arrive at allReduce #\d+ \(float32 x 4096, sum\) within 2000 ms/);
    t.true(e.failMs! >= timeoutMs - 100 && e.failMs! < timeoutMs + 2_000, `rank ${e.rank} failed after ${e.failMs} ms`);
  }
});
