import test from 'ava';
import '@bagua/kernels';
import { randn } from '@bagua/core';
import { SyncBatchNorm } from '../src/index.js';
import { assertJob, backendReady, runJob, type Backend } from './helpers/job.js';

test('input of rank below 2 or above 5 is refused, naming the shape', (t) => {
  t.throws(() => new SyncBatchNorm(3).forward(randn([3])), { message: /SyncBatchNorm: expected 2D to 5D input, got 1D input of shape \[3\]/ });
  t.throws(() => new SyncBatchNorm(3).forward(randn([1, 3, 1, 1, 1, 2])), { message: /got 6D input/ });
});

test('a channel count other than numFeatures is refused', (t) => {
  t.throws(() => new SyncBatchNorm(3).forward(randn([2, 4, 5])), { message: /expected 3 channels, got input of shape \[2,4,5\]/ });
});

test('non-finite hyper-parameters are refused', (t) => {
  t.throws(() => new SyncBatchNorm(3, { eps: NaN }), { message: /eps must be a finite positive number/ });
  t.throws(() => new SyncBatchNorm(3, { momentum: Infinity }), { message: /momentum must be a finite number or null/ });
});

/** What each rank must report: an error matching the pattern, or (null) no error. */
type Expect = (RegExp | null)[];
const failedAt = (op: string, n: number) => Array.from({ length: n }, (_, r) => new RegExp(`${op} on group 'world' failed at rank ${r}`));
const sequence = (n: number) => new Array<RegExp>(n).fill(/ranks disagree on the layer sequence/);

/** [mode, ranks, what each rank reports under allGather, under allReduce] */
const errorCases: [string, number, Expect, Expect][] = [
  // gloo: the rank that sees the wrong size names it; its peer sees the connection drop. Both fail, neither hangs.
  // allReduce: a new layer's first step broadcasts the shift, which is where different sizes meet first.
  ['channels', 2, failedAt('allGather', 2), failedAt('broadcast', 2)],
  ['channels-later', 2, failedAt('allGather', 2), failedAt('allReduce', 2)],
  ['sequence', 2, sequence(2), sequence(2)],
  // after an agreed step (allReduce: the shift broadcast), rank 0 alone in another layer: every rank sees it
  ['sequence-later', 2, sequence(2), sequence(2)],
  ['sequence-later', 3, sequence(3), sequence(3)],
  ['count1', 2, new Array(2).fill(/expected more than 1 value per channel when training, got 1 over the group/),
    new Array(2).fill(/expected more than 1 value per channel when training, got 1 over the group/)],
  ['extra-layer', 2, [null, null], [null, null]],
  ['non-member', 2, [null, /this rank is not a member of the layer's process group/],
    [null, /this rank is not a member of the layer's process group/]],
];

for (const backend of ['threads', 'gloo'] as Backend[]) {
  for (const exchange of ['allGather', 'allReduce'] as const) {
    const env = { BAGUA_TEST_STATS_EXCHANGE: exchange };
    for (const [mode, n, gatherPatterns, reducePatterns] of errorCases) {
      const patterns = exchange === 'allGather' ? gatherPatterns : reducePatterns;
      test(`ranks that disagree (${mode}, ${n} ranks): a clear error on every rank that should fail, none elsewhere: ${backend}, ${exchange}`, async (t) => {
        if (!(await backendReady(t, backend))) return;
        const start = Date.now();
        const job = await runJob(backend, n, 'syncbn-errors', [mode], { timeoutMs: 60_000, env });
        const errors = job.lines('ERROR');
        const clean = job.lines('NOERROR');
        t.log(errors.map((e, r) => `rank ${r}: ${e[0] ?? 'no error'}`).join('\n'));
        t.is(job.code, 0, job.output.slice(-2000));
        patterns.forEach((pattern, r) => {
          if (pattern === null) {
            t.is(clean[r].length, 1, `rank ${r} ran without error: ${errors[r][0] ?? ''}`);
          } else {
            t.is(errors[r].length, 1, `rank ${r} caught an error`);
            t.regex(errors[r][0] ?? '', pattern);
          }
        });
        if (mode.startsWith('channels')) t.true(errors.some((e) => /mismatch|\d+ vs \d+|different collectives/.test(e[0] ?? '')), 'a rank names the size mismatch');
        t.true(Date.now() - start < 30_000, 'within the timeout, no hang');
      });
    }

    test(`exactly one collective per training forward and one per backward, none in eval: ${backend}, ${exchange}`, async (t) => {
      if (!(await backendReady(t, backend))) return;
      assertJob(t, await runJob(backend, 2, 'syncbn-collectives', [], { env }), 2, 10);
    });
  }
}
