/**
 * The nccl backend without a GPU: the library lookup and its error message
 * (must say exactly where it looked), and the bindings exercised against a
 * stand-in libnccl/libcudart built from fixtures/nccl-fake.c (NCCL's C
 * signatures on host memory): the 128-byte unique id through the store as
 * raw bytes, init off the event loop, collectives on device buffers, host
 * buffers rejected, and abort on timeout / on an asynchronous error.
 */
import test from 'ava';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CollectiveError } from '../src/process-group.js';
import { findLibrary } from '../src/nccl/find.js';
import { loadNccl, NcclUnavailableError, ncclAvailability, resetNcclLoaderForTests } from '../src/nccl/library.js';
import { createNcclProcessGroup } from '../src/nccl/process-group.js';
import { FakeDeviceBuffer, MemoryStore, useFakeNccl, type FakeLibrary } from './helpers/nccl-fake.js';

test.serial('nccl: a missing libnccl.so.2 is reported with every place looked at', (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'bagua-nccl-empty-'));
  const saved = { lib: process.env.BAGUA_NCCL_LIB, ld: process.env.LD_LIBRARY_PATH };
  process.env.BAGUA_NCCL_LIB = '/nonexistent/bagua/libnccl.so.2';
  process.env.LD_LIBRARY_PATH = empty;
  resetNcclLoaderForTests();
  try {
    const a = ncclAvailability();
    if (a.available) {
      t.log(`a real NCCL is installed here (${a.path}): only the search list is checked`);
    } else {
      const msg = a.reason;
      t.log(msg);
      for (const expected of [
        'NCCL (libnccl.so.2) could not be loaded',
        'BAGUA_NCCL_LIB=/nonexistent/bagua/libnccl.so.2',
        '/nonexistent/bagua/libnccl.so.2',
        join(empty, 'libnccl.so.2'),
        '/usr/lib/x86_64-linux-gnu/libnccl.so.2',
        '/usr/local/cuda/lib64/libnccl.so.2',
        join('nvidia', 'nccl', 'lib'),
        'ldconfig',
        'pip install nvidia-nccl-cu12',
      ]) {
        t.true(msg.includes(expected), `message should mention ${expected}`);
      }
      const e = t.throws(() => loadNccl(), { instanceOf: NcclUnavailableError });
      t.true(e!.tried.includes('/nonexistent/bagua/libnccl.so.2'));
    }
    const s = findLibrary({ envVar: 'BAGUA_NCCL_LIB', names: ['libnccl.so.2'], wheel: 'nccl', askPython: false });
    t.is(s.tried[0], '/nonexistent/bagua/libnccl.so.2', 'the override is looked at first');
    t.is(s.tried[1], join(empty, 'libnccl.so.2'), 'then LD_LIBRARY_PATH');
  } finally {
    if (saved.lib === undefined) delete process.env.BAGUA_NCCL_LIB;
    else process.env.BAGUA_NCCL_LIB = saved.lib;
    if (saved.ld === undefined) delete process.env.LD_LIBRARY_PATH;
    else process.env.LD_LIBRARY_PATH = saved.ld;
    resetNcclLoaderForTests();
  }
});

// The search itself (override directories, the wheels of BAGUA_PYTHON_SITE_PACKAGES in the
// CUDA 12 and 13 layouts, python3 asked) is tested in @bagua/nvidia-libs (test/find.test.ts).

// ---- against the stand-in library ----

interface Fake extends FakeLibrary {
  control(asyncError: number, streamBusy: number, initSleepMs: number): void;
  lastId(): { id: Uint8Array; inits: number };
  aborts(): number;
}

let fake: Fake | null | undefined;
function withFake(t: Parameters<typeof useFakeNccl>[0]): Fake | null {
  const lib = useFakeNccl(t);
  if (!lib) return null;
  if (!fake) {
    const control = lib.lib.func('void fake_control(int a, int b, int c)');
    const lastId = lib.lib.func('int fake_nccl_last_id(_Out_ uint8_t *out)');
    const aborts = lib.lib.func('int fake_nccl_aborts(void)');
    fake = {
      ...lib,
      control: (a, b, c) => control(a, b, c),
      lastId: () => {
        const id = new Uint8Array(128);
        const inits = lastId(id) as number;
        return { id, inits };
      },
      aborts: () => aborts() as number,
    };
  }
  fake.control(0, 0, 0);
  return fake;
}

test.serial('nccl (stand-in): unique id travels as 128 raw bytes; collectives on device buffers', async (t) => {
  const f = withFake(t);
  if (!f) return;
  const store = new MemoryStore();
  const [pg0, pg1] = await Promise.all([
    createNcclProcessGroup({ rank: 0, size: 2, store, prefix: 'job/', timeoutMs: 2000 }),
    createNcclProcessGroup({ rank: 1, size: 2, store, prefix: 'job/', timeoutMs: 2000 }),
  ]);
  const published = store.kv.get('job/nccl/uniqueId')!;
  t.is(published.length, 128);
  t.is(published[0], 0);
  t.is(published[127], 0xff);
  const { id, inits } = f.lastId();
  t.true(inits >= 2);
  t.deepEqual([...id], [...published], 'ncclCommInitRank received the id byte for byte');
  t.is(pg0.ncclVersion, '2.21.5');
  t.true(pg0.supports('cuda:0'), 'nccl moves its own device\'s memory');
  t.false(pg0.supports({ type: 'cuda', index: 1 }));
  t.false(pg0.supports('cpu'));

  const b = new FakeDeviceBuffer(f, 'float32', 5);
  b.fromHost(new Float32Array([1, 2, 3, 4, 5]));
  pg0.allReduce(b);
  t.deepEqual([...b.toHost()], [2, 4, 6, 8, 10]);
  const out = new FakeDeviceBuffer(f, 'int32', 6);
  const inp = new FakeDeviceBuffer(f, 'int32', 3);
  inp.fromHost(new Int32Array([7, 8, 9]));
  pg1.allGather(out, inp);
  t.deepEqual([...out.toHost()], [7, 8, 9, 7, 8, 9]);
  pg1.broadcast(b, 0);
  pg0.barrier();

  const err = t.throws(() => pg0.allReduce(new Float32Array(4)), { instanceOf: TypeError });
  t.regex(err!.message, /NCCL needs device memory/);
  t.throws(() => pg0.allGather(out, new FakeDeviceBuffer(f, 'int32', 2)), { instanceOf: RangeError });
  t.throws(() => pg0.allReduce({ ...b, device: 'cuda:1', toHost: b.toHost, fromHost: b.fromHost }), {
    message: /cuda:1, the communicator on cuda:0/,
  });

  const sub = await Promise.all([pg0.newGroup([1]), pg1.newGroup([1])]);
  t.is(sub[0], null);
  t.is(sub[1]!.size, 1);
  t.is(sub[1]!.name, 'group(1)#1');
  sub[1]!.destroy();
  pg0.destroy();
  pg1.destroy();
  pg0.destroy();
  t.throws(() => pg0.barrier(), { instanceOf: CollectiveError, message: /destroyed/ });
});

test.serial('nccl (stand-in): a collective that never completes aborts the communicator within the timeout', async (t) => {
  const f = withFake(t);
  if (!f) return;
  const pg = await createNcclProcessGroup({ rank: 0, size: 1, store: new MemoryStore(), prefix: 'a/', timeoutMs: 150 });
  f.control(0, 1, 0);
  const before = f.aborts();
  const start = Date.now();
  const e = t.throws(() => pg.barrier(), { instanceOf: CollectiveError });
  const took = Date.now() - start;
  t.true(took >= 140 && took < 2000, `took ${took} ms`);
  t.regex(e!.message, /barrier on group 'world' failed at rank 0: did not complete within 150 ms; the communicator was aborted/);
  t.is(f.aborts(), before + 1);
  f.control(0, 0, 0);
  t.throws(() => pg.allReduce(new FakeDeviceBuffer(f, 'float32', 1)), { message: /aborted after an earlier failure/ });
  pg.destroy();
});

test.serial('nccl (stand-in): an asynchronous NCCL error fails the next collective with ncclGetErrorString', async (t) => {
  const f = withFake(t);
  if (!f) return;
  const pg = await createNcclProcessGroup({ rank: 0, size: 1, store: new MemoryStore(), prefix: 'b/', timeoutMs: 1000 });
  f.control(6, 0, 0);
  const e = t.throws(() => pg.allReduce(new FakeDeviceBuffer(f, 'float32', 1)), { instanceOf: CollectiveError });
  t.regex(e!.message, /ncclRemoteError: remote process exited or there was a network error \(fake\) \(fake last error\)/);
  f.control(0, 0, 0);
  pg.destroy();
});

test.serial('nccl (stand-in): an init that does not finish names the ranks that never arrived', async (t) => {
  const f = withFake(t);
  if (!f) return;
  f.control(0, 0, 600);
  const store = new MemoryStore();
  const e = await t.throwsAsync(
    createNcclProcessGroup({ rank: 0, size: 3, store, prefix: 'c/', timeoutMs: 200 }),
    { instanceOf: CollectiveError },
  );
  t.deepEqual(e!.missingRanks, [1, 2]);
  t.regex(e!.message, /init on group 'world' failed at rank 0: ncclCommInitRank did not complete within 200 ms/);
  // rank 1 of another job: rank 0 never publishes the id
  const e2 = await t.throwsAsync(
    createNcclProcessGroup({ rank: 1, size: 2, store: new MemoryStore(), prefix: 'd/', timeoutMs: 100 }),
    { instanceOf: CollectiveError },
  );
  t.regex(e2!.message, /did not publish the NCCL unique id/);
  t.deepEqual(e2!.missingRanks, [0]);
  await new Promise((r) => setTimeout(r, 500)); // let the slow fake init finish before the next test
  f.control(0, 0, 0);
});
