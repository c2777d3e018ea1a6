/**
 * allReduceAsync on the threads backend: started all-reduces run on each
 * rank's communication thread while the rank computes, in start order, with
 * the synchronous path's bits; synchronous collectives issued after them wait
 * for them; a dead, stalled or mismatched peer fails wait() with a
 * CollectiveError naming it within the timeout, never a hang; the
 * communication threads keep nothing alive and memory stays flat.
 */
import test from 'ava';
import { runThreads, type RunResult } from '../src/index.js';
import { errOf } from './helpers/threads.js';

const fixture = new URL('./fixtures/threads-async.js', import.meta.url);

function run(n: number, scenario: string, timeoutMs = 30_000): Promise<RunResult> {
  return runThreads(n, fixture, [scenario], { output: 'capture', timeoutMs, graceMs: 5000 });
}

async function ok(t: import('ava').ExecutionContext, n: number, scenario: string): Promise<RunResult> {
  const res = await run(n, scenario);
  if (res.exitCode !== 0) t.log(res.stdout.join('\n'), res.stderr.join('\n'));
  t.is(res.exitCode, 0);
  for (let r = 0; r < n; r++) t.regex(res.stdout[r]!, new RegExp(`^OK ${r} \\d+$`, 'm'));
  return res;
}

for (const n of [2, 3, 4]) {
  test.serial(`threads x${n} async: every path and dtype, the synchronous path's bits, start order kept`, (t) => ok(t, n, 'order'));
}

test.serial('threads x2 async: a started all-reduce finishes while the rank computes', async (t) => {
  const res = await ok(t, 2, 'overlap');
  t.log(res.stdout.map((s) => /OVERLAP .*/.exec(s)?.[0]).join('; '));
});

test.serial('threads x3 async: a rank that dies while the others wait fails them promptly, naming it', async (t) => {
  const res = await run(3, 'dies', 20_000);
  for (const r of [0, 2]) {
    const e = errOf(res, r);
    t.truthy(e, res.stdout[r]! + res.stderr[r]!);
    t.is(e!.name, 'CollectiveError');
    t.is(e!.op, 'allReduce');
    t.regex(e!.message, /allReduce on group 'world' failed at rank \d: group aborted: rank 1 failed \(exit code 1\)/);
    t.deepEqual(e!.missing, [1]);
    t.true(e!.ms < 10_000, `rank ${r} failed after ${e!.ms} ms`); // not at its 20 s timeout
  }
  t.is(res.failedRank, 1);
});

test.serial('threads x2 async: a rank that never starts its part: wait() times out naming it', async (t) => {
  const timeout = 1500;
  const res = await run(2, 'stalls', timeout);
  const e = errOf(res, 0);
  t.truthy(e, res.stdout.join('') + res.stderr.join(''));
  t.regex(e!.message, new RegExp(`allReduce on group 'world' failed at rank 0: timed out after ${timeout} ms \\(ranks not arrived: 1\\)`));
  t.deepEqual(e!.missing, [1]);
  t.true(e!.ms < timeout * 2 + 2000, `failed after ${e!.ms} ms`);
});

test.serial('threads x3 async: started calls that disagree fail on every rank, naming both', async (t) => {
  const res = await run(3, 'mismatch');
  for (let r = 0; r < 3; r++) {
    const e = errOf(res, r);
    t.truthy(e, res.stdout[r]);
    t.regex(e!.message, /collective mismatch: rank 0 called allReduce\(float32 x 64, sum\) but rank 1 called allReduce\(float32 x 65, sum\)/);
  }
});

test.serial('threads x2 async: an unknown reduce op throws at the call on every rank; the group stays usable', (t) => ok(t, 2, 'badop'));

test.serial('threads x2 async: destroy settles a started all-reduce; wait() after gives its result', (t) => ok(t, 2, 'destroy'));

test.serial('threads x2 async: a rank that never destroys its group still ends (the communication thread is unreferenced)', async (t) => {
  const start = Date.now();
  await ok(t, 2, 'no-destroy');
  t.true(Date.now() - start < 20_000);
});

test.serial('threads x2 async: memory stays flat over 600 steps of started all-reduces', async (t) => {
  const res = await ok(t, 2, 'flat');
  t.log(res.stdout[0]!.match(/GROWN .*/)?.[0]);
});
