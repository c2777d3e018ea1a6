/**
 * The gloo backend inside one process: group creation runs on koffi worker
 * threads, so several ranks can rendezvous from one event loop. Covers the
 * store client (token), settings agreement, a single-rank group, argument
 * errors, and the library lookup's error text.
 */
import test from 'ava';
import { startStore, type StartStoreOptions, type StoreHandle } from '../src/store/host.js';
import { CollectiveError } from '../src/process-group.js';
import { createGlooProcessGroup } from '../src/gloo/process-group.js';
import { GlooUnavailableError, glooLibraryCandidates } from '../src/gloo/library.js';
import { needGloo } from './helpers/gloo.js';

/** Runs `body` with a store on a free port of 127.0.0.1 (quiet), closing it afterwards. */
async function withStore(options: StartStoreOptions, body: (store: StoreHandle) => Promise<void>): Promise<void> {
  const store = await startStore({ host: '127.0.0.1', port: 0, ...options, log: () => {} });
  try {
    await body(store);
  } finally {
    await store.close();
  }
}

test('gloo: the library is looked for in BAGUA_GLOO_LIB, then native/build; the error says how to build it', (t) => {
  const c = glooLibraryCandidates({ BAGUA_GLOO_LIB: '/opt/x/libbagua_gloo.so' });
  t.is(c[0], '/opt/x/libbagua_gloo.so');
  t.regex(c[1]!, /packages\/comm\/native\/build\/libbagua_gloo\.so$/);
  const e = new GlooUnavailableError('libbagua_gloo.so was not found', c);
  t.regex(e.message, /\/opt\/x\/libbagua_gloo\.so/);
  t.regex(e.message, /apt-get install libgloo-dev && pnpm --filter @bagua\/comm native/);
});

test('gloo: the shim reports the peers at fault through a call, as global ranks, not in its message', async (t) => {
  if (!needGloo(t)) return;
  await withStore({}, async (store) => {
    const e = await t.throwsAsync(
      createGlooProcessGroup({
        rank: 0,
        size: 3,
        ranks: [5, 7, 9],
        store: { host: '127.0.0.1', port: store.port },
        prefix: 'absent',
        timeoutMs: 600,
      }),
      { instanceOf: CollectiveError },
    );
    t.is(e!.rank, 5);
    t.deepEqual(e!.missingRanks, [7, 9]);
    t.regex(e!.message, /rendezvous timed out/);
    t.notRegex(e!.message, /\{ranks:/);
  });
});

test('gloo: two ranks rendezvous from one process, with a store token', async (t) => {
  if (!needGloo(t)) return;
  await withStore({ token: 's3cret' }, async (store) => {
    const ep = { host: '127.0.0.1', port: store.port, token: 's3cret' };
    const [a, b] = await Promise.all(
      [0, 1].map((rank) => createGlooProcessGroup({ rank, size: 2, store: ep, prefix: 'tok', timeoutMs: 5000 })),
    );
    t.is(a.size, 2);
    t.is(b.rank, 1);
    t.deepEqual(a.ranks, [0, 1]);
    a.destroy();
    b.destroy();
    t.throws(() => a.barrier(), { instanceOf: CollectiveError, message: /destroyed/ });

    const bad = await t.throwsAsync(
      createGlooProcessGroup({ rank: 0, size: 1, store: { ...ep, token: 'wrong' }, prefix: 'bad', timeoutMs: 2000 }),
      { instanceOf: CollectiveError },
    );
    t.regex(bad!.message, /wrong token|refused the token/);
  });
});

test('gloo: ranks must agree on BAGUA_GLOO_SMALL_BYTES', async (t) => {
  if (!needGloo(t)) return;
  await withStore({}, async (store) => {
    const ep = { host: '127.0.0.1', port: store.port };
    const results = await Promise.allSettled(
      [0, 1].map((rank) =>
        createGlooProcessGroup({ rank, size: 2, store: ep, prefix: 'cfg', timeoutMs: 5000, smallBytes: rank ? 100 : 200 }),
      ),
    );
    for (const r of results) {
      t.is(r.status, 'rejected');
      t.regex((r as PromiseRejectedResult).reason.message, /ranks disagree on the small-payload threshold \(BAGUA_GLOO_SMALL_BYTES\)/);
    }
  });
});

test('gloo: a single-rank group, and argument errors that leave it usable', async (t) => {
  if (!needGloo(t)) return;
  await withStore({}, async (store) => {
    const g = await createGlooProcessGroup({ rank: 0, size: 1, store: { host: '127.0.0.1', port: store.port }, prefix: 'one', timeoutMs: 5000 });
    const x = new Float64Array([1.5, -2]);
    g.allReduce(x, 'avg');
    t.deepEqual([...x], [1.5, -2]);
    const out = new Int32Array(3);
    g.allGather(out, new Int32Array([4, 5, 6]));
    t.deepEqual([...out], [4, 5, 6]);
    g.broadcast(x, 0);
    g.barrier();
    t.throws(() => g.allReduce(new Float32Array(1), 'prod' as never), { instanceOf: TypeError });
    t.throws(() => g.allReduce(new Uint16Array(2) as never), { instanceOf: TypeError, message: /unsupported buffer type/ });
    t.throws(() => g.allGather(new Float64Array(3), new Float32Array(3)), { instanceOf: TypeError });
    t.throws(() => g.broadcast(x, 1), { instanceOf: RangeError });
    await t.throwsAsync(g.newGroup([0, 1]), { instanceOf: RangeError });
    await t.throwsAsync(g.newGroup([0, 0]), { instanceOf: RangeError });
    const sub = await g.newGroup([0]);
    t.is(sub!.name, 'group(0)#1', 'rejected calls do not consume a sub-group number');
    sub!.destroy();
    g.barrier();
    g.destroy();
    await t.throwsAsync(
      createGlooProcessGroup({ rank: 1, size: 1, store: { host: '127.0.0.1', port: store.port }, prefix: 'x' }),
      { instanceOf: RangeError },
    );
  });
});
