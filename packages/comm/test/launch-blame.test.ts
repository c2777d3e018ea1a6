// bagua-launch blames the rank that failed on its own (from the ranks' failure reports), and its ranks die with it.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { skipOrFail } from '@bagua/testing';
import { glooAvailability } from '../src/gloo/library.js';
import { launchCli, startLauncher } from './helpers/launch.js';

const FAULTS = fileURLToPath(new URL('./fixtures/launch-faults.js', import.meta.url));
const gloo = (args: string[]) => ['--nproc-per-node', '4', '--backend', 'gloo', '--grace-ms', '1000', FAULTS, ...args];

function glooMissing(): string | null {
  const a = glooAvailability();
  return a.available ? null : a.reason;
}

/** Gone, or a zombie nobody has reaped yet (it no longer runs). */
function gone(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').startsWith('Z');
  } catch {
    return true;
  }
}

test('gloo: a rank that exits 7 is blamed, not the peers that lost it first (3 runs)', async (t) => {
  const missing = glooMissing();
  if (missing) return skipOrFail(t, 'gloo', missing);
  for (let run = 0; run < 3; run++) {
    const r = await launchCli(gloo(['exit', '2', '7', '20']));
    t.is(r.code, 7, r.stderr);
    t.regex(r.stderr, /^bagua-launch: rank 2 failed first \(exit code 7\) at step 20; ranks 0,1,3 stopped after it \(allReduce on group 'world': connection to rank/m);
    t.regex(r.stderr, /all ranks ended \d+ ms after the first failure/);
  }
});

test('gloo: the others catch the CollectiveError and exit 1 themselves: still rank 2', async (t) => {
  const missing = glooMissing();
  if (missing) return skipOrFail(t, 'gloo', missing);
  const r = await launchCli(gloo(['catch', '2', '7', '10']));
  t.is(r.code, 7, r.stderr);
  t.regex(r.stderr, /^bagua-launch: rank 2 failed first \(exit code 7\)/m);
});

test('gloo: a rank that throws is blamed with its message', async (t) => {
  const missing = glooMissing();
  if (missing) return skipOrFail(t, 'gloo', missing);
  const r = await launchCli(gloo(['throw', '1', '0', '10']));
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /^bagua-launch: rank 1 failed first \(exit code 1\) at step 10: boom from rank 1; ranks 0,2,3 stopped after it/m);
});

test('gloo: a rank SIGKILLed mid-collective is blamed, exit code 137', async (t) => {
  const missing = glooMissing();
  if (missing) return skipOrFail(t, 'gloo', missing);
  const l = startLauncher(gloo(['train']));
  const out = await l.seen(/READY \d+/, 4);
  const pid = Number(/\[rank 3\] READY (\d+)/.exec(out)![1]);
  process.kill(pid, 'SIGKILL');
  const r = await l.done;
  t.is(r.code, 137, r.stderr);
  t.regex(r.stderr, /^bagua-launch: rank 3 failed first \(exit code 137, SIGKILL\) without a report/m);
});

test('gloo: ranks die within 2 s of a SIGKILLed launcher', async (t) => {
  const missing = glooMissing();
  if (missing) return skipOrFail(t, 'gloo', missing);
  const l = startLauncher(gloo(['train']));
  const out = await l.seen(/READY \d+/, 4);
  const pids = [...out.matchAll(/READY (\d+)/g)].map((m) => Number(m[1]));
  t.is(pids.length, 4);
  const t0 = Date.now();
  l.child.kill('SIGKILL');
  while (!pids.every(gone) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
  const ms = Date.now() - t0;
  for (const p of pids) if (!gone(p)) process.kill(p, 'SIGKILL');
  t.true(ms < 2000, `ranks still ran ${ms} ms after the launcher died`);
  t.log(`ranks gone ${ms} ms after the launcher`);
});

test('gloo: ranks get a per-job token and key prefix', async (t) => {
  const missing = glooMissing();
  if (missing) return skipOrFail(t, 'gloo', missing);
  const r = await launchCli(['--nproc-per-node', '2', '--backend', 'gloo', FAULTS, 'keys'], { BAGUA_STORE_TOKEN: undefined, BAGUA_JOB_ID: undefined });
  t.is(r.code, 0, r.stderr);
  const keys = [...r.stdout.matchAll(/KEYS (.*)/g)].map((m) => JSON.parse(m[1]!));
  t.is(keys.length, 2);
  t.regex(keys[0].job, /^[0-9a-f]{16}$/);
  t.is(keys[0].job, keys[1].job);
  for (const k of keys) t.deepEqual({ token: k.token, underJob: k.underJob, bare: k.bare }, { token: 32, underJob: true, bare: false });
  const named = await launchCli(['--nproc-per-node', '2', '--backend', 'gloo', FAULTS, 'keys'], { BAGUA_JOB_ID: 'run-7' });
  t.is(named.code, 0, named.stderr);
  t.regex(named.stdout, /KEYS \{"job":"run-7",.*"underJob":true/);
});

test('threads: a rank that exits is blamed over the ranks its exit aborted', async (t) => {
  const r = await launchCli(['--nproc-per-node', '4', '--backend', 'threads', FAULTS, 'exit', '2', '7', '20']);
  t.is(r.code, 7, r.stderr);
  t.regex(r.stderr, /^bagua-launch: rank 2 failed first \(exit code 7\) at step 20; ranks 0,1,3 stopped after it \(allReduce on group 'world': aborted after rank 2 failed\)/m);
});

test('threads: a rank that throws is blamed with its message', async (t) => {
  const r = await launchCli(['--nproc-per-node', '3', '--backend', 'threads', FAULTS, 'throw', '1', '0', '5']);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /^bagua-launch: rank 1 failed first \(exit code 1\) at step 5: boom from rank 1; ranks 0,2 stopped after it/m);
});
