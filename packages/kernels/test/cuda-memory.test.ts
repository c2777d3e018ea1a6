import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { empty, memoryStats, Device, type MemoryStats } from '@bagua/core';
import { cudaOrSkip } from './cuda-helpers.js';

test.serial('on cuda:0 the plain training loop reaches a steady state: reserved device memory does not grow', (t) => {
  if (!cudaOrSkip(t)) return;
  // Its own process: the device allocator's reserve is per process, and ava runs other files beside this one.
  const r = spawnSync(process.execPath, [fileURLToPath(new URL('./plain-loop.js', import.meta.url)), 'cuda:0', '30'],
    { encoding: 'utf8', env: process.env, timeout: 300_000 });
  t.is(r.status, 0, r.stderr);
  const seen = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as MemoryStats);
  t.is(seen.length, 3);
  const [, b, c] = seen;
  t.true(b.reserved > 0);
  t.true(b.numSystemAllocs > 0, 'blocks were obtained from the driver during warm-up');
  t.is(c.reserved, b.reserved, 'reserved bytes are the same after step 20 and step 30');
  t.is(c.numSystemAllocs, b.numSystemAllocs, 'no cudaMalloc after warm-up');
  t.is(c.allocated, b.allocated, 'live bytes are flat');
});

test.serial('on cuda:0 a request larger than the card fails before any allocation', (t) => {
  if (!cudaOrSkip(t)) return;
  const before = memoryStats('cuda:0').numAllocs; // this thread's storages (the reserve is the process's)
  t.throws(() => empty([1024, 1024, 1024, 1024], 'float32', Device.parse('cuda:0')),
    { message: /alloc: 1099511627776 float32 elements \(4096\.0 GiB\) do not fit cuda:0, which has [\d.]+ GiB/ });
  t.is(memoryStats('cuda:0').numAllocs, before, 'no storage was made');
});
