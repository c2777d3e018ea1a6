// Bad flags and environment are refused by bagua-launch at start (exit 2, naming the flag or variable and the value).
import test from 'ava';
import { LaunchError, parseLaunchArgs, validateLaunchOptions, type LaunchOptions } from '../src/index.js';
import { launchCli, SCRIPT } from './helpers/launch.js';

test('CLI: negative --timeout-ms, negative --grace-ms and BAGUA_TIMEOUT_MS=abc exit 2 before any rank starts', async (t) => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [['--timeout-ms', '-5'], {}, /--timeout-ms must be an integer from 1 to 2147483647, got -5/],
    [['--grace-ms', '-1'], {}, /--grace-ms must be an integer from 0 to 2147483647, got -1/],
    [[], { BAGUA_TIMEOUT_MS: 'abc' }, /environment variable BAGUA_TIMEOUT_MS must be an integer from 1 to 2147483647, got 'abc'/],
  ];
  for (const [flags, env, message] of cases) {
    const r = await launchCli(['--nproc-per-node', '2', '--backend', 'gloo', ...flags, SCRIPT, 'env'], env);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, message);
    t.notRegex(r.stdout + r.stderr, /\[rank \d\]/); // refused once, by the launcher
  }
});

function refused(t: import('ava').ExecutionContext, argv: string[], message: RegExp, env: Record<string, string> = {}): void {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const e = t.throws(() => {
      const o = parseLaunchArgs(argv);
      if (o !== 'help') validateLaunchOptions(o as LaunchOptions);
    });
    t.true(e instanceof LaunchError, String(e));
    t.regex(e!.message, message);
  } finally {
    for (const k of Object.keys(env)) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

test('flags: zero ranks, a port out of range, values that are not integers', (t) => {
  refused(t, ['--nproc-per-node', '0', 's.js'], /--nproc-per-node must be an integer >= 1, got 0/);
  refused(t, ['--nproc-per-node', '2', '--master-port', '70000', 's.js'], /--master-port must be an integer from 0 to 65535, got 70000/);
  refused(t, ['--nproc-per-node', 'abc', 's.js'], /--nproc-per-node needs an integer, got 'abc'/);
  refused(t, ['--nproc-per-node', '2', '--timeout-ms', '1.5', 's.js'], /--timeout-ms needs an integer, got '1.5'/);
  refused(t, ['--nproc-per-node', '2', '--grace-ms=', 's.js'], /--grace-ms needs an integer, got ''/);
  refused(t, ['--nproc-per-node', '2', '--nnodes', '0', 's.js'], /--nnodes must be an integer >= 1, got 0/);
  refused(t, ['--nproc-per-node', '2', '--token', '', 's.js'], /--token needs a value/);
});

test('environment the ranks would read is checked by the launcher', (t) => {
  const argv = ['--nproc-per-node', '2', '--backend', 'gloo', 's.js'];
  refused(t, argv, /BAGUA_TIMEOUT_MS must be an integer from 1 to 2147483647, got '0'/, { BAGUA_TIMEOUT_MS: '0' });
  refused(t, argv, /BAGUA_GLOO_SMALL_BYTES must be an integer from 0 to 1073741824, got '-1'/, { BAGUA_GLOO_SMALL_BYTES: '-1' });
  refused(t, argv, /BAGUA_THREADS_CHUNK_BYTES must be an integer from 1 to 2147483647, got '1k'/, { BAGUA_THREADS_CHUNK_BYTES: '1k' });
  refused(t, argv, /BAGUA_JOB_ID must be 1-64 characters from \[A-Za-z0-9_.-\], got 'a\/b'/, { BAGUA_JOB_ID: 'a/b' });
  // --timeout-ms replaces the variable, so a stale bad value does not matter then.
  t.notThrows(() => validateLaunchOptions({ ...(parseLaunchArgs([...argv.slice(0, -1), '--timeout-ms', '5', 's.js']) as LaunchOptions) }));
});

test('multi-node: a store token is required on every node, or --no-token', (t) => {
  const multi = ['--nproc-per-node', '2', '--backend', 'gloo', '--nnodes', '2', '--master-port', '29999'];
  const saved = process.env['BAGUA_STORE_TOKEN'];
  delete process.env['BAGUA_STORE_TOKEN'];
  try {
    refused(t, [...multi, 's.js'], /multi-node job needs the same store token on every node: set BAGUA_STORE_TOKEN .* or pass --no-token/);
    t.notThrows(() => validateLaunchOptions(parseLaunchArgs([...multi, '--no-token', 's.js']) as LaunchOptions));
  } finally {
    if (saved !== undefined) process.env['BAGUA_STORE_TOKEN'] = saved;
  }
  refused(t, [...multi, 's.js'], /multi-node job needs/, { BAGUA_STORE_TOKEN: '' });
  t.notThrows(() => validateLaunchOptions(parseLaunchArgs([...multi, '--token', 'abc', 's.js']) as LaunchOptions));
  refused(t, [...multi, '--token', 'abc', '--no-token', 's.js'], /--no-token conflicts with the store token given/);
});
