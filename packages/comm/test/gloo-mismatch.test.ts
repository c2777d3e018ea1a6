/**
 * Ranks that call different collectives on a gloo group, after a warm-up
 * step (so every algorithm is cached and every connection warm): every rank
 * must fail at once (well inside the 10 s timeout), with a message naming
 * its own call and the other rank's, on each payload path: in the header
 * message (16 KiB), the synchronous mesh (256 KiB), gloo's algorithms
 * (4 MiB), and with the synchronous payload path disabled
 * (BAGUA_GLOO_SMALL_BYTES=0).
 */
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { needGloo, runGlooJob } from './helpers/gloo.js';

const DESYNC = fileURLToPath(new URL('./fixtures/gloo-desync.js', import.meta.url));
const TIMEOUT = 10_000;
const FAIL_WITHIN_MS = 2_000;

const N = { small: 4096, mid: 1 << 16, large: 1 << 20 } as const;
type Size = keyof typeof N;

/** The two calls each case's message must name (rank 0's, then the other rank's). */
function calls(which: string, n: number): [RegExp, RegExp] {
  const ar = (dt: string, k: number) => new RegExp(`allReduce #\\d+ \\(${dt} x ${k}, sum\\)`);
  const bc = (root: number) => new RegExp(`broadcast #\\d+ \\(float32 x ${n}, root ${root}\\)`);
  switch (which) {
    case 'repeat':
      return [ar('float32', n), bc(0)];
    case 'count':
      return [ar('float32', n), ar('float32', 2 * n)];
    case 'root':
      return [bc(0), bc(1)];
    default:
      return [ar('float32', n), ar('int32', n)];
  }
}

const PATHS: [Size, string | undefined][] = [
  ['small', undefined],
  ['mid', undefined],
  ['large', undefined],
  ['small', '0'],
  ['large', '0'],
];

for (const which of ['repeat', 'count', 'root', 'dtype']) {
  for (const [size, smallBytes] of PATHS) {
    const label = `${which}, ${size} payload${smallBytes === '0' ? ', BAGUA_GLOO_SMALL_BYTES=0' : ''}`;
    test.serial(`gloo mismatch after a warm-up step fails at once on both ranks: ${label}`, async (t) => {
      if (!needGloo(t)) return;
      const env = smallBytes === undefined ? {} : { BAGUA_GLOO_SMALL_BYTES: smallBytes };
      const job = await runGlooJob(2, [which, size], { timeoutMs: TIMEOUT, env, script: DESYNC });
      const errs = job.results.filter((r) => r.error === 'CollectiveError');
      t.log(errs.map((e) => `rank ${e.rank} after ${e.failMs} ms: ${e.message}`).join('\n'));
      t.deepEqual(errs.map((e) => e.rank), [0, 1], `both ranks fail:\n${job.output.slice(-2000)}`);
      const [mine, theirs] = calls(which, N[size]);
      for (const e of errs) {
        t.true(e.failMs! < FAIL_WITHIN_MS, `rank ${e.rank} failed after ${e.failMs} ms`);
        t.regex(e.message!, /ranks called different collectives: /);
        const [here, there] = e.rank === 0 ? [mine, theirs] : [theirs, mine];
        t.regex(e.message!, new RegExp(`${here.source} here, rank ${1 - e.rank} called ${there.source}`));
        t.deepEqual(e.missing, [], 'nobody is missing');
      }
      t.not(job.code, 0);
    });
  }
}
