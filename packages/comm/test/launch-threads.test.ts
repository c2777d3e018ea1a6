// bagua-launch with the threads backend: environment, output prefixes, failures, signals, usage errors.
import test from 'ava';
import { launchCli, SCRIPT, startLauncher } from './helpers/launch.js';

test('runs N thread ranks with the torchrun environment, argv and prefixed output', async (t) => {
  const r = await launchCli(['--nproc-per-node', '3', SCRIPT, 'env', 'a', '--flag']);
  t.is(r.code, 0, r.stderr);
  for (let rank = 0; rank < 3; rank++) {
    const m = new RegExp(`^\\[rank ${rank}\\] ENV (.*)$`, 'm').exec(r.stdout);
    t.truthy(m, r.stdout);
    const { env, argv } = JSON.parse(m![1]!);
    t.deepEqual(argv, ['a', '--flag']);
    t.is(env.RANK, String(rank));
    t.is(env.LOCAL_RANK, String(rank));
    t.is(env.WORLD_SIZE, '3');
    t.is(env.LOCAL_WORLD_SIZE, '3');
    t.is(env.MASTER_ADDR, '127.0.0.1');
    t.true(Number(env.MASTER_PORT) > 0);
    t.is(env.BAGUA_BACKEND, 'threads');
  }
});

test('initProcessGroup() under the launcher: collectives work, every line is prefixed', async (t) => {
  const r = await launchCli(['--nproc-per-node=2', SCRIPT, 'allreduce']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^\[rank 0\] SUM 1,2,4$/m);
  t.regex(r.stdout, /^\[rank 1\] SUM 1,2,4$/m);
  t.regex(r.stdout, /^\[rank 1\] second line$/m);
  t.regex(r.stderr, /^\[rank 0\] to stderr from 0$/m);
  for (const line of r.stdout.trim().split('\n')) t.regex(line, /^\[rank \d\] /);
});

test('a rank that fails: the others get a CollectiveError, the launcher exits with its code', async (t) => {
  const r = await launchCli(['--nproc-per-node', '3', SCRIPT, 'fail', '1', '5']);
  t.is(r.code, 5, r.stdout + r.stderr);
  t.regex(r.stderr, /\[rank 0\] CollectiveError: barrier on group 'world' failed at rank 0: group aborted: rank 1 failed \(exit code 5\)/);
  t.regex(r.stderr, /\[rank 2\] CollectiveError/);
  t.regex(r.stderr, /bagua-launch: rank 1 failed first \(exit code 5\); ranks 0,2 stopped after it \(barrier on group 'world': aborted after rank 1 failed\)/);
  t.true(r.ms < 30_000); // not at the 300 s default timeout
});

test('a rank that calls a different collective: every rank fails, the launcher exits non-zero', async (t) => {
  const r = await launchCli(['--nproc-per-node', '2', SCRIPT, 'mismatch']);
  t.is(r.code, 1);
  t.regex(r.stderr, /\[rank 0\] CollectiveError: allReduce .*collective mismatch: rank 0 called allReduce\(float32 x 4, sum\) but rank 1 called allGather\(float32 x 4\)/);
  t.regex(r.stderr, /\[rank 1\] CollectiveError: allGather .*collective mismatch/);
});

test('a rank that joins too late: the others time out (--timeout-ms), the launcher exits non-zero', async (t) => {
  const r = await launchCli(['--nproc-per-node', '3', '--timeout-ms', '800', '--grace-ms', '300', SCRIPT, 'late']);
  t.is(r.code, 1);
  t.regex(r.stderr, /timed out after 800 ms \(ranks not arrived: 1\)/);
  t.true(r.ms < 30_000, `took ${r.ms} ms`); // the late rank is stopped long before its 60 s sleep ends
});

test('SIGTERM is forwarded: the ranks stop and the launcher exits 143', async (t) => {
  const l = startLauncher(['--nproc-per-node', '2', SCRIPT, 'hang']);
  await l.seen(/READY/, 2);
  l.child.kill('SIGTERM');
  const r = await l.done;
  t.is(r.code, 143, r.stderr);
  t.true(r.ms < 30_000);
});

test('usage errors exit 2 with a clear message', async (t) => {
  const a = await launchCli([SCRIPT, 'env']);
  t.is(a.code, 2);
  t.regex(a.stderr, /--nproc-per-node is required/);
  const b = await launchCli(['--nproc-per-node', '2', '--nnodes', '2', '--master-port', '29999', SCRIPT, 'env']);
  t.is(b.code, 2);
  t.regex(b.stderr, /threads backend .* cannot span nodes; use --backend gloo/);
  const c = await launchCli(['--nproc-per-node', '2', '--backend', 'mpi', SCRIPT]);
  t.is(c.code, 2);
  t.regex(c.stderr, /--backend must be one of threads, gloo, nccl/);
  const d = await launchCli(['--help']);
  t.is(d.code, 0);
  t.regex(d.stdout, /usage: bagua-launch/);
});
