/**
 * GradientAllReduce overlapping its bucket all-reduces with backward, on
 * threads (each rank's communication thread) and gloo (the shim's
 * communication thread): the same results as the blocking path, bitwise
 * (the same buckets are reduced by the same collectives, only earlier),
 * unused parameters, noSync, two backwards before a step, bucket rebuild,
 * flat memory, and faults.
 */
import test from 'ava';
import { assertJob, backendReady, runJob, type Backend } from './helpers/job.js';

for (const backend of ['threads', 'gloo'] as Backend[]) {
  for (const n of backend === 'gloo' ? [2, 3] : [2, 4]) {
    test.serial(`overlapped GradientAllReduce: ${backend}, ${n} ranks`, async (t) => {
      if (!(await backendReady(t, backend))) return;
      t.timeout(170_000);
      const job = await runJob(backend, n, 'grad-allreduce', ['main'], { timeoutMs: 160_000 });
      t.log(job.lines('MEMORY')[0]?.join(' '));
      assertJob(t, job, n, 8);
    });
  }
}

const FAULTS: [Backend, string][] = [['gloo', 'killed'], ['gloo', 'mismatch'], ['threads', 'dies'], ['threads', 'mismatch']];
for (const [backend, scenario] of FAULTS) {
  test.serial(`a ${scenario} peer during an overlapped bucket: CollectiveError at the step, not a hang (${backend})`, async (t) => {
    if (!(await backendReady(t, backend))) return;
    const job = await runJob(backend, 3, 'grad-allreduce', [scenario], { timeoutMs: 60_000, env: { BAGUA_TIMEOUT_MS: '4000' } });
    const survivors = scenario === 'mismatch' ? 3 : 2;
    const faults = job.lines('FAULT').flat().map((l) => JSON.parse(l) as { ms: number; missing: number[]; message: string });
    t.log(faults.map((f) => `${f.ms} ms: ${f.message}`).join('\n'));
    for (let r = 0; r < survivors; r++) {
      t.true(job.results[r]!.length === 1 && job.results[r]![0]!.ok, `rank ${r}: ${JSON.stringify(job.results[r])}\n${job.output.slice(-2000)}`);
    }
    t.is(faults.length, survivors);
    for (const f of faults) {
      t.true(f.ms < 15_000, `failed after ${f.ms} ms`);
      if (scenario !== 'mismatch') t.deepEqual(f.missing, [2]);
      if (scenario === 'dies') t.regex(f.message, /rank 2 failed \(exit code 1\)/);
      if (scenario === 'mismatch') t.regex(f.message, backend === 'gloo' ? /different collectives/ : /collective mismatch/);
    }
  });
}
