// Fault handling of the threads backend: every failure ends in a CollectiveError
// on the surviving ranks within the timeout, and a non-zero job exit code.
import test from 'ava';
import { runThreads, type RunResult } from '../src/index.js';
import { errOf } from './helpers/threads.js';

const fixture = new URL('./fixtures/faults.js', import.meta.url);
const TIMEOUT = 1000;

async function run(n: number, scenario: string, opts: Parameters<typeof runThreads>[3] = {}): Promise<RunResult> {
  return runThreads(n, fixture, [scenario], { output: 'capture', timeoutMs: TIMEOUT, graceMs: 3000, ...opts });
}

test.serial('a rank that never joins: the others time out naming it; it fails at once when it comes late', async (t) => {
  const res = await run(2, 'never-joins');
  const e0 = errOf(res, 0);
  t.truthy(e0, res.stdout.join('') + res.stderr.join(''));
  t.is(e0!.name, 'CollectiveError');
  t.is(e0!.op, 'allReduce');
  t.is(e0!.group, 'world');
  t.deepEqual(e0!.missing, [1]);
  t.regex(e0!.message, /allReduce on group 'world' failed at rank 0: timed out after 1000 ms \(ranks not arrived: 1\)/);
  t.true(e0!.ms >= TIMEOUT - 50, `took ${e0!.ms} ms`); // never before the timeout
  const e1 = errOf(res, 1);
  t.truthy(e1, res.stdout[1]);
  t.regex(e1!.message, /rank 0 timed out/);
  t.is(res.exitCode, 3);
  t.is(res.failedRank, 0);
});

test.serial('a rank that exits with an error while the others wait: they fail promptly, the job exits with its code', async (t) => {
  const res = await run(3, 'exits', { timeoutMs: 20_000 });
  for (const r of [0, 2]) {
    const e = errOf(res, r);
    t.truthy(e, res.stdout[r]);
    t.regex(e!.message, /rank 1 failed \(exit code 7\)/);
    t.true(e!.ms < 10_000, `rank ${r} took ${e!.ms} ms`); // promptly: not at its 20 s timeout
  }
  t.is(res.exitCode, 7);
  t.is(res.failedRank, 1);
});

test.serial('a rank that ends cleanly without joining: the waiting ranks fail promptly', async (t) => {
  const res = await run(2, 'exits-clean', { timeoutMs: 20_000 });
  const e = errOf(res, 0);
  t.truthy(e, res.stdout[0]);
  t.regex(e!.message, /rank 1 exited \(code 0\)/);
  t.deepEqual(e!.missing, [1]);
  t.true(e!.ms < 10_000);
  t.is(res.exitCode, 3);
});

test.serial('a rank that throws: its error is printed and the others fail promptly', async (t) => {
  const res = await run(2, 'throws', { timeoutMs: 20_000 });
  t.regex(res.stderr[1]!, /boom from rank 1/);
  const e = errOf(res, 0);
  t.truthy(e, res.stdout[0]);
  t.regex(e!.message, /rank 1 failed \(exit code 1\)/);
  t.true(e!.ms < 10_000);
  t.is(res.exitCode, 1);
  t.is(res.failedRank, 1);
});

test.serial('a rank killed in the middle of a collective: the others fail promptly', async (t) => {
  const start = Date.now();
  const res = await run(2, 'killed', {
    timeoutMs: 20_000,
    onWorker: (rank, w) => {
      if (rank === 1) w.once('message', () => setTimeout(() => void w.terminate(), 150));
    },
  });
  const e = errOf(res, 0);
  t.truthy(e, res.stdout[0] + res.stderr[0]);
  t.regex(e!.message, /rank 1 failed \(exit code 1\)/);
  t.true(Date.now() - start < 15_000);
  t.not(res.exitCode, 0);
  t.is(res.failedRank, 1);
});

test.serial('collectives that disagree (op, size, dtype, reduction, root, barrier, bad arguments) fail on every rank', async (t) => {
  const res = await run(3, 'mismatch');
  t.is(res.exitCode, 0, res.stderr.join(''));
  const lines = (r: number) => res.stdout[r]!.split('\n').filter((l) => l.startsWith('MISMATCH'));
  for (let r = 0; r < 3; r++) {
    const l = lines(r);
    t.is(l.length, 7, res.stdout[r]);
    t.regex(l[0]!, /MISMATCH op .*collective mismatch: rank 0 called allReduce\(float32 x 10, sum\) but rank 1 called allGather\(float32 x 10\)/);
    t.regex(l[1]!, /MISMATCH size .*allReduce\(float32 x 10, sum\) but rank 1 called allReduce\(float32 x 11, sum\)/);
    t.regex(l[2]!, /MISMATCH dtype .*rank 1 called allReduce\(float64 x 10, sum\)/);
    t.regex(l[3]!, /MISMATCH reduction .*rank 1 called allReduce\(float32 x 10, max\)/);
    t.regex(l[4]!, /MISMATCH root .*broadcast\(float32 x 10, root 0\) but rank 1 called broadcast\(float32 x 10, root 1\)/);
    t.regex(l[5]!, /MISMATCH barrier .*rank 1 called barrier/);
    t.regex(l[6]!, r === 1 ? /MISMATCH invalid .*invalid arguments: output has 3 elements/ : /MISMATCH invalid .*rank 1 rejected its own arguments/);
    // Every rank names the same pair of calls.
    const detail = (line: string) => line.slice(line.indexOf('collective mismatch'));
    t.is(detail(l[0]!), detail(lines(0)[0]!));
  }
});

test.serial('a sub-group timeout names the group and the missing global rank', async (t) => {
  const res = await run(3, 'subgroup-timeout');
  const e = errOf(res, 0);
  t.truthy(e, res.stdout[0] + res.stderr[0]);
  t.regex(e!.group, /^group\(0,2\)#\d+$/);
  t.deepEqual(e!.missing, [2]);
  t.true(e!.ms < 10_000);
});

test.serial('after a timeout the group fails fast on every rank', async (t) => {
  const res = await run(2, 'after-timeout');
  const m = /^SECOND (\d+) (.*)$/m.exec(res.stdout[0]!);
  t.truthy(m, res.stdout[0]);
  t.true(Number(m![1]) < 1000); // no second wait for the timeout
  t.regex(m![2]!, /group aborted: rank 0 timed out/);
  const e1 = errOf(res, 1);
  t.truthy(e1, res.stdout[1]);
  t.regex(e1!.message, /group aborted/);
});
