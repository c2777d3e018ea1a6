// bagua-launch running a TypeScript script (.ts source, through tsx) as thread and process ranks.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { isTypeScript, resolveTsx } from '../src/launch/typescript.js';
import { launchCli } from './helpers/launch.js';
import { needGloo } from './helpers/gloo.js';

// The source file (test/fixtures/launch-ts-rank.ts), not the compiled copy in dist/.
const TS_SCRIPT = fileURLToPath(new URL('../../test/fixtures/launch-ts-rank.ts', import.meta.url));

test('TypeScript scripts are recognised by extension', (t) => {
  for (const p of ['a.ts', '/x/b.mts', 'c.cts', 'D.TS']) t.true(isTypeScript(p), p);
  for (const p of ['a.js', 'b.mjs', 'c.d.ts', 'tsconfig.json', 'ts']) t.false(isTypeScript(p), p);
  t.true(isTypeScript(new URL('file:///x/y.ts')));
});

test('tsx resolves from @bagua/comm itself', (t) => {
  const url = resolveTsx('tsx');
  t.regex(url, /^file:.*\/tsx\/dist\/loader\.mjs$/);
  t.true(existsSync(fileURLToPath(url)));
});

test('threads: a .ts script runs as 3 thread ranks (tsx registered in each thread)', async (t) => {
  t.true(existsSync(TS_SCRIPT), TS_SCRIPT);
  const r = await launchCli(['--nproc-per-node', '3', TS_SCRIPT]);
  t.is(r.code, 0, r.stdout + r.stderr);
  // 1 + 2 + 3 on every rank, and the script sees itself as the entry
  for (let rank = 0; rank < 3; rank++) t.regex(r.stdout, new RegExp(`^\\[rank ${rank}\\] TS ${rank}/3 SUM 6 entry=launch-ts-rank\\.ts$`, 'm'));
});

test('threads: an error thrown in a .ts rank is reported with its TypeScript message and fails the job', async (t) => {
  const r = await launchCli(['--nproc-per-node', '2', TS_SCRIPT, 'throw', 'here']);
  t.is(r.code, 1, r.stdout + r.stderr);
  t.regex(r.stderr, /TypeError: thrown from TypeScript \(here\)/);
  t.regex(r.stderr, /launch-ts-rank\.ts/); // the stack names the .ts source
});

test('processes (gloo): a .ts script runs as 2 child processes with --import tsx', async (t) => {
  if (!needGloo(t)) return;
  const r = await launchCli(['--nproc-per-node', '2', '--backend', 'gloo', TS_SCRIPT]);
  t.is(r.code, 0, r.stdout + r.stderr);
  for (let rank = 0; rank < 2; rank++) t.regex(r.stdout, new RegExp(`^\\[rank ${rank}\\] TS ${rank}/2 SUM 3 entry=launch-ts-rank\\.ts$`, 'm'));
});
