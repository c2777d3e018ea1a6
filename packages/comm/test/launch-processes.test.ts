// bagua-launch with a process backend (children), and two launchers forming one multi-node job.
import test from 'ava';
import { hasBackendFactory } from '../src/index.js';
import { launchCli, SCRIPT, startLauncher } from './helpers/launch.js';
import { skipOrFail } from '@bagua/testing';

test('process ranks: environment, and rendezvous through the launcher\'s store', async (t) => {
  const r = await launchCli(['--nproc-per-node', '2', '--backend', 'gloo', SCRIPT, 'env']);
  t.is(r.code, 0, r.stderr);
  const envs = [...r.stdout.matchAll(/^\[rank (\d)\] ENV (.*)$/gm)].map((m) => [Number(m[1]), JSON.parse(m[2]!).env] as const);
  t.is(envs.length, 2);
  for (const [rank, env] of envs) {
    t.is(env.RANK, String(rank));
    t.is(env.BAGUA_BACKEND, 'gloo');
    t.is(env.WORLD_SIZE, '2');
  }
  const s = await launchCli(['--nproc-per-node', '3', '--backend', 'gloo', SCRIPT, 'store']);
  t.is(s.code, 0, s.stderr);
  for (let rank = 0; rank < 3; rank++) t.regex(s.stdout, new RegExp(`^\\[rank ${rank}\\] STORE OK ${rank}/3`, 'm'));
});

test('store token: the launcher requires it and hands it to the ranks', async (t) => {
  const r = await launchCli(['--nproc-per-node', '2', '--backend', 'gloo', SCRIPT, 'store'], { BAGUA_STORE_TOKEN: 'tok-123' });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /STORE OK 1\/2/);
});

test('a process rank that fails: the others are stopped, the launcher exits with its code', async (t) => {
  const r = await launchCli(['--nproc-per-node', '3', '--backend', 'gloo', '--grace-ms', '200', SCRIPT, 'fail', '2', '4']);
  t.is(r.code, 4, r.stdout + r.stderr);
  t.regex(r.stderr, /bagua-launch: rank 2 failed first \(exit code 4\); ranks 0,1 stopped by the launcher/);
  t.true(r.ms < 30_000, `took ${r.ms} ms`); // the others sleep 60 s
});

test('SIGINT is forwarded to process ranks: the launcher exits 130', async (t) => {
  const l = startLauncher(['--nproc-per-node', '2', '--backend', 'gloo', SCRIPT, 'hang']);
  await l.seen(/READY/, 2);
  l.child.kill('SIGINT');
  const r = await l.done;
  t.is(r.code, 130, r.stderr);
  t.true(r.ms < 30_000);
});

/** Starts node 0 (port 0: it prints the port it picked), then node 1 on that port; both with one store token. */
async function startTwoNodes(script: string[], backend = 'gloo', extra: string[] = [], file = SCRIPT) {
  const common = ['--nnodes', '2', '--nproc-per-node', '2', '--backend', backend, '--master-addr', '127.0.0.1', ...extra];
  const env = { BAGUA_STORE_TOKEN: 'two-nodes-secret' };
  const n0 = startLauncher([...common, '--node-rank', '0', '--master-port', '0', file, ...script], env);
  const out = await n0.seen(/store listening on 127\.0\.0\.1:\d+/);
  const port = /store listening on 127\.0\.0\.1:(\d+)/.exec(out)![1]!;
  const n1 = startLauncher([...common, '--node-rank', '1', '--master-port', port, file, ...script], env);
  return [n0, n1] as const;
}

async function twoNodes(script: string[], backend = 'gloo', extra: string[] = [], file = SCRIPT) {
  const [n0, n1] = await startTwoNodes(script, backend, extra, file);
  return Promise.all([n0.done, n1.done]);
}

test('two launchers with --nnodes 2 form one job through node 0\'s store', async (t) => {
  const [a, b] = await twoNodes(['store']);
  t.is(a.code, 0, a.stderr);
  t.is(b.code, 0, b.stderr);
  t.regex(a.stdout, /\[rank 0\] STORE OK 0\/4/);
  t.regex(a.stdout, /\[rank 1\] STORE OK 1\/4/);
  t.regex(b.stdout, /\[rank 2\] STORE OK 2\/4/);
  t.regex(b.stdout, /\[rank 3\] STORE OK 3\/4/);
});

test('multi-node: a failure on node 1 stops node 0 too; both exit with the failing code', async (t) => {
  const [a, b] = await twoNodes(['fail', '3', '6'], 'gloo', ['--grace-ms', '200']);
  t.is(b.code, 6, b.stderr);
  t.is(a.code, 6, a.stderr);
  t.regex(a.stderr, /rank 3 on node 1 failed with exit code 6/);
  t.true(a.ms < 30_000 && b.ms < 30_000); // the others sleep 60 s
});

test('multi-node: stopping node 0 with SIGTERM stops node 1 too', async (t) => {
  const [n0, n1] = await startTwoNodes(['hang']);
  await Promise.all([n0.seen(/READY/, 2), n1.seen(/READY/, 2)]);
  n0.child.kill('SIGTERM');
  const [a, b] = await Promise.all([n0.done, n1.done]);
  t.is(a.code, 143, a.stderr);
  t.is(b.code, 143, b.stderr);
  t.regex(b.stderr, /node 0 was stopped: stopping this node's ranks/);
});

/** Why the gloo backend cannot run here, or null when it can (its module, native library and factory). */
async function glooMissing(): Promise<string | null> {
  // Computed specifiers: these modules belong to the gloo backend and may not exist yet.
  const lib = new URL('../src/gloo/library.js', import.meta.url).href;
  const index = new URL('../src/gloo/index.js', import.meta.url).href;
  try {
    const m = (await import(lib)) as { glooAvailability?: () => { available: boolean; reason?: string } };
    const a = m.glooAvailability?.();
    if (a && !a.available) return a.reason ?? 'libbagua_gloo is not available';
    await import(index);
  } catch (e) {
    return `the gloo backend module did not load: ${(e as Error).message.split('\n')[0]}`;
  }
  return hasBackendFactory('gloo') ? null : 'the gloo module registered no factory';
}

test('multi-node gloo collectives', async (t) => {
  const missing = await glooMissing();
  if (missing) {
    skipOrFail(t, 'gloo', missing);
    return;
  }
  const [a, b] = await twoNodes(['gloo']);
  t.is(a.code, 0, a.stdout + a.stderr);
  t.is(b.code, 0, b.stdout + b.stderr);
  for (const r of [0, 1]) t.regex(a.stdout, new RegExp(`\\[rank ${r}\\] GLOO SUM 10 backend=gloo`));
  for (const r of [2, 3]) t.regex(b.stdout, new RegExp(`\\[rank ${r}\\] GLOO SUM 10 backend=gloo`));
});

test('multi-node gloo: a rank on node 1 exits 6 mid-training: both nodes blame it, not node 0\'s ranks that lost it', async (t) => {
  const missing = await glooMissing();
  if (missing) {
    skipOrFail(t, 'gloo', missing);
    return;
  }
  const faults = SCRIPT.replace(/launch-script\.js$/, 'launch-faults.js');
  const [a, b] = await twoNodes(['exit', '3', '6', '20'], 'gloo', [], faults);
  t.is(b.code, 6, b.stderr);
  t.is(a.code, 6, a.stderr);
  t.regex(b.stderr, /bagua-launch: rank 3 failed first \(exit code 6\)/);
  t.regex(a.stderr, /bagua-launch: job: rank 3 on node 1 failed first \(exit code 6\)/);
});
