// Every collective, reduction and dtype over the threads backend at world sizes 1-4.
import test from 'ava';
import { runThreads } from '../src/index.js';

const fixture = new URL('./fixtures/collectives.js', import.meta.url);

async function run(t: import('ava').ExecutionContext, n: number, mode: string): Promise<void> {
  const res = await runThreads(n, fixture, [mode], { output: 'capture', timeoutMs: 20_000 });
  if (res.exitCode !== 0) t.log(res.stderr.join('\n'), res.stdout.join('\n'));
  t.is(res.exitCode, 0);
  t.deepEqual(res.exitCodes, new Array(n).fill(0));
  for (let r = 0; r < n; r++) t.regex(res.stdout[r]!, new RegExp(`OK ${r}/${n} args=${mode}`));
}

for (const n of [1, 2, 3, 4]) {
  test.serial(`threads x${n}: allReduce (sum/avg/max/min, 5 dtypes), allGather, broadcast, barrier, device staging`, (t) =>
    run(t, n, 'small'),
  );
  test.serial(`threads x${n}: 16 MiB allReduce / allGather / broadcast`, (t) => run(t, n, 'large'));
  test.serial(`threads x${n}: sub-groups and back-to-back collectives on several groups`, (t) => run(t, n, 'groups'));
}

test.serial('threads x3: destroyProcessGroup() then initProcessGroup() again, with sub-groups', (t) => run(t, 3, 'reinit'));
