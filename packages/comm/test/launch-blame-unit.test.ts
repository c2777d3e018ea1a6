// The blame rule and the failure report, without processes.
import test from 'ava';
import { assignBlame, CollectiveError, describeBlame, type FailureReport, type RankEnd } from '../src/index.js';
import { buildReport } from '../src/report.js';

const report = (rank: number, exitCode: number, time: number, induced: boolean, peersAtFault: number[] = []): FailureReport => ({
  rank,
  exitCode,
  time,
  induced,
  peersAtFault,
  ...(induced ? { op: 'allReduce', group: 'world', message: 'Connection closed by peer' } : {}),
});

test('report: a CollectiveError naming other ranks or a lost connection is induced; anything else is own', (t) => {
  const lost = new CollectiveError('allReduce', 'world', 1, 'allreduce: Connection closed by peer [127.0.0.1]:5', [2]);
  const r = buildReport(1, 1, lost);
  t.like(r, { rank: 1, exitCode: 1, op: 'allReduce', group: 'world', induced: true, peersAtFault: [2] });
  t.true(buildReport(0, 1, new CollectiveError('barrier', 'world', 0, 'group aborted: rank 3 failed (exit code 7)')).induced);
  t.deepEqual(buildReport(0, 1, new CollectiveError('barrier', 'world', 0, 'group aborted: rank 3 failed (exit code 7)')).peersAtFault, [3]);
  const mismatch = new CollectiveError('allGather', 'world', 0, 'collective mismatch: rank 0 called allReduce');
  t.false(buildReport(0, 1, mismatch).induced);
  t.false(buildReport(0, 1, new TypeError('bad')).induced);
  // An uncaught plain error wins over a CollectiveError caught earlier.
  t.false(buildReport(1, 1, new Error('own bug'), lost).induced);
  // process.exit(1) after catching the CollectiveError: the recorded one is the cause.
  t.true(buildReport(1, 1, undefined, lost).induced);
  t.false(buildReport(2, 7, undefined, null).induced);
});

test('blame: the own failure wins over earlier induced ones; no report counts as own; stopped ranks never win', (t) => {
  const ends: RankEnd[] = [
    { rank: 0, exitCode: 1, time: 100, report: report(0, 1, 90, true, [2]) },
    { rank: 1, exitCode: 1, time: 101, report: report(1, 1, 91, true, [2]) },
    { rank: 2, exitCode: 7, time: 130, report: report(2, 7, 95, false) },
    { rank: 3, exitCode: 143, time: 140, report: null, stoppedAt: 120 },
  ];
  const b = assignBlame(ends)!;
  t.like(b, { rank: 2, exitCode: 7, own: true, stopped: [3], spanMs: 140 - 90 });
  t.regex(describeBlame(b), /^rank 2 failed first \(exit code 7\); ranks 0,1 stopped after it \(allReduce on group 'world': connection to rank 2 lost\); rank 3 stopped by the launcher; all ranks ended 50 ms/);
  const killed = assignBlame([
    { rank: 0, exitCode: 1, time: 100, report: report(0, 1, 90, true, [1]) },
    { rank: 1, exitCode: 137, time: 105, report: null },
  ])!;
  t.like(killed, { rank: 1, exitCode: 137, own: true });
  t.regex(describeBlame(killed), /rank 1 failed first \(exit code 137, SIGKILL\) without a report/);
  // A rank that reported before the launcher signalled it failed on its own (the signal may even change its code).
  t.like(assignBlame([{ rank: 0, exitCode: 143, time: 100, report: report(0, 6, 50, false), stoppedAt: 60 }])!, { rank: 0, exitCode: 6, own: true, byLauncher: false });
  t.is(assignBlame([{ rank: 0, exitCode: 0, time: 1, report: null }]), null);
});

test('blame: when every failure is induced, the first is named with the ranks it blames', (t) => {
  const b = assignBlame([
    { rank: 0, exitCode: 1, time: 100, report: { ...report(0, 1, 80, true, [1]), message: 'timed out after 800 ms' } },
    { rank: 2, exitCode: 1, time: 100, report: { ...report(2, 1, 85, true, [1]), message: 'timed out after 800 ms' } },
    { rank: 1, exitCode: 143, time: 110, report: null, stoppedAt: 105 },
  ])!;
  t.like(b, { rank: 0, exitCode: 1, own: false, suspects: [1], stopped: [1] });
  t.regex(describeBlame(b), /^no rank failed on its own; rank 0 failed first \(exit code 1\): timed out after 800 ms; it blames rank 1; rank 2 stopped after it \(allReduce on group 'world': timed out waiting for rank 1\); rank 1 stopped by the launcher/);
});

test('blame: ties go to the lower rank; the step is shown when known', (t) => {
  const b = assignBlame([
    { rank: 3, exitCode: 2, time: 10, report: { ...report(3, 2, 5, false), step: 41 } },
    { rank: 1, exitCode: 2, time: 10, report: { ...report(1, 2, 5, false), step: 41 } },
  ])!;
  t.is(b.rank, 1);
  t.regex(describeBlame(b), /^rank 1 failed first \(exit code 2\) at step 41; rank 3 also failed on its own/);
});
