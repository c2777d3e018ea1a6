// The pipelined large all-reduce of the threads backend: bitwise equal on
// every rank and to a rank-order reference, for every dtype and op, at sizes
// that divide by neither the rank count nor the chunk, on the SIMD kernels
// and on the JS loops; flat memory; faults in the middle of large calls.
import test from 'ava';
import { runThreads, type RunResult } from '../src/index.js';

const fixture = new URL('./fixtures/threads-large.js', import.meta.url);

async function run(n: number, mode: string, chunk: number, simd: boolean, timeoutMs = 30_000): Promise<RunResult> {
  return runThreads(n, fixture, [mode], {
    output: 'capture',
    timeoutMs,
    chunkBytes: chunk,
    env: { CHUNK_BYTES: String(chunk), BAGUA_THREADS_SIMD: simd ? '1' : '0' },
  });
}

async function ok(t: import('ava').ExecutionContext, n: number, mode: string, chunk: number, simd: boolean): Promise<RunResult> {
  const res = await run(n, mode, chunk, simd);
  if (res.exitCode !== 0) t.log(res.stderr.join('\n'), res.stdout.join('\n'));
  t.is(res.exitCode, 0);
  for (let r = 0; r < n; r++) t.regex(res.stdout[r]!, new RegExp(`OK ${r}/${n} simd=${n > 1 && simd}`));
  return res;
}

for (const simd of [true, false]) {
  const path = simd ? 'SIMD' : 'JS';
  for (const n of [2, 3, 4]) {
    for (const chunk of [4096, 64 << 10]) {
      test.serial(`threads x${n} ${path}: every dtype and op, odd sizes, ${chunk / 1024} KiB chunks`, (t) => ok(t, n, 'sizes', chunk, simd));
    }
    test.serial(`threads x${n} ${path}: ranks out of step, then broadcast and small calls on the same areas`, (t) =>
      ok(t, n, 'skew', 4096, simd),
    );
  }
  test.serial(`threads x3 ${path}: sub-groups use the same kernels`, (t) => ok(t, 3, 'subgroup', 64 << 10, simd));
}

for (const n of [2, 4]) {
  test.serial(`threads x${n}: 16 MiB and 40 MiB all-reduces, odd sizes`, (t) => ok(t, n, 'big', 512 << 10, true));
}

test.serial('threads x2: memory stays flat over 300 large all-reduces', async (t) => {
  const res = await ok(t, 2, 'flat-memory', 512 << 10, true);
  t.log(res.stdout[0]!.match(/GROWN .*/)?.[0]);
});

test.serial('threads x3: large calls that disagree fail on every rank at once, naming both; the group stays usable', async (t) => {
  const res = await ok(t, 3, 'mismatch-large', 64 << 10, true);
  for (let r = 0; r < 3; r++) {
    t.regex(res.stdout[r]!, /MISMATCH .*collective mismatch: rank 0 called allReduce\(float32 x 49153, sum\) but rank 1 called allReduce\(float32 x 49169, sum\)/);
  }
});

test.serial('threads x3: a rank that dies between large all-reduces fails the others promptly', async (t) => {
  const start = Date.now();
  const res = await run(3, 'dies', 512 << 10, true, 20_000);
  for (const r of [0, 2]) t.regex(res.stdout[r]!, /ERR .*rank 1 failed \(exit code 1\)/, res.stdout[r]);
  t.true(Date.now() - start < 10_000);
  t.is(res.failedRank, 1);
});
