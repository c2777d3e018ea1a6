// A store that accepts connections but never answers (a stray program on
// MASTER_PORT, a stopped node 0): every request of both clients fails within
// its bound, naming the store's address and the request, instead of hanging.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import { StoreClient, StoreError, StoreServer, initProcessGroup, isInitialized, startStore } from '../src/index.js';
import { WAIT_GRACE_MS } from '../src/store/client.js';
import { CollectiveError } from '../src/process-group.js';
import { createGlooProcessGroup } from '../src/gloo/process-group.js';
import { needGloo } from './helpers/gloo.js';

/** Listens on 127.0.0.1, accepts, reads and never writes a byte. */
async function silentStore(t: ExecutionContext): Promise<number> {
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('data', () => undefined);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        srv.close(() => r());
      }),
  );
  return (srv.address() as net.AddressInfo).port;
}

/** Runs `body`, which must reject with a StoreError; returns it and how long it took. */
async function timed(t: ExecutionContext, body: () => Promise<unknown>): Promise<{ e: Error; ms: number }> {
  const t0 = Date.now();
  const e = await t.throwsAsync(body(), { instanceOf: StoreError });
  const ms = Date.now() - t0;
  t.log(`${ms} ms: ${e!.message}`);
  return { e: e!, ms };
}

test('TS client, silent store: get, set, add, check fail within the timeout, naming the store and the request', async (t) => {
  const port = await silentStore(t);
  const c = await StoreClient.connect({ port, timeoutMs: 700 });
  t.teardown(() => c.close());
  const { e, ms } = await timed(t, () => c.get('bagua/x'));
  t.is(e.message, `store 127.0.0.1:${port} did not answer 'get bagua/x' within 700 ms`);
  t.true(ms >= 650 && ms < 1700, `${ms} ms`);
  // The connection is out of step after a lost reply: later requests fail at once.
  const late = await timed(t, () => c.set('k', 'v'));
  t.true(late.ms < 100);
  t.regex(late.e.message, /did not answer 'get bagua\/x'/);

  for (const [name, call] of [
    ['set bagua/s', (x: StoreClient) => x.set('bagua/s', 'v')],
    ['add bagua/n', (x: StoreClient) => x.add('bagua/n', 1)],
    ['check bagua/a,bagua/b', (x: StoreClient) => x.check(['bagua/a', 'bagua/b'])],
  ] as const) {
    const fresh = await StoreClient.connect({ port, timeoutMs: 500 });
    const r = await timed(t, () => call(fresh));
    fresh.close();
    t.is(r.e.message, `store 127.0.0.1:${port} did not answer '${name}' within 500 ms`);
    t.true(r.ms < 1500, `${name}: ${r.ms} ms`);
  }
});

test('TS client, silent store: a wait fails after its own timeout plus the grace; the connect timeout is the default bound', async (t) => {
  const port = await silentStore(t);
  // Only connectTimeoutMs given (as init.ts and the launcher do): it bounds the requests too.
  const c = await StoreClient.connect({ port, connectTimeoutMs: 5000 });
  t.teardown(() => c.close());
  t.is(c.timeoutMs, 5000);
  const { e, ms } = await timed(t, () => c.wait(['bagua/join/0', 'bagua/join/1'], 800));
  t.is(e.message, `store 127.0.0.1:${port} did not answer 'wait bagua/join/0,bagua/join/1' within ${800 + WAIT_GRACE_MS} ms`);
  t.true(ms >= 800 + WAIT_GRACE_MS - 50 && ms < 800 + 1000 + 500, `${ms} ms`);
});

test('TS client, silent store with a token: connect fails on AUTH within the timeout', async (t) => {
  const port = await silentStore(t);
  const { e, ms } = await timed(t, () => StoreClient.connect({ port, token: 'tok', timeoutMs: 600 }));
  t.is(e.message, `store 127.0.0.1:${port} did not answer 'auth' within 600 ms`);
  t.true(ms < 1600, `${ms} ms`);
});

test('a stopped store process (SIGSTOP, as a frozen node 0): the client fails within its timeout', async (t) => {
  const serverUrl = new URL('../src/store/server.js', import.meta.url).href;
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { StoreServer } = await import(${JSON.stringify(serverUrl)});
       const s = new StoreServer({ log: () => {} });
       console.log((await s.listen()).port);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.teardown(() => {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  });
  const port = Number(await new Promise<string>((r) => child.stdout!.once('data', (d: Buffer) => r(d.toString()))));
  const c = await StoreClient.connect({ port, timeoutMs: 800 });
  t.teardown(() => c.close());
  await c.set('k', 'v');
  child.kill('SIGSTOP');
  const { e, ms } = await timed(t, () => c.getString('k'));
  t.is(e.message, `store 127.0.0.1:${port} did not answer 'get k' within 800 ms`);
  t.true(ms < 1800, `${ms} ms`);
});

test('initProcessGroup against a silent store fails within the group timeout, naming the store', async (t) => {
  const port = await silentStore(t);
  const t0 = Date.now();
  const e = await t.throwsAsync(
    initProcessGroup({ backend: 'gloo', initMethod: `tcp://127.0.0.1:${port}?rank=1&world_size=2`, timeoutMs: 1000 }),
    { instanceOf: StoreError },
  );
  const ms = Date.now() - t0;
  t.log(`${ms} ms: ${e!.message}`);
  t.regex(e!.message, new RegExp(`store 127\\.0\\.0\\.1:${port} did not answer 'set .*join/1' within 1000 ms`));
  t.true(ms < 2000, `${ms} ms`);
  t.false(isInitialized());
});

test('TS client: a request queued behind a long wait is not timed out early (deadlines follow the queue)', async (t) => {
  const server = new StoreServer({ log: () => undefined });
  const { port } = await server.listen();
  t.teardown(() => server.close());
  const c = await StoreClient.connect({ port, timeoutMs: 300 });
  const other = await StoreClient.connect({ port, timeoutMs: 300 });
  t.teardown(() => {
    c.close();
    other.close();
  });
  await c.set('v', 'x');
  const wait = c.wait('late', 3000);
  const get = c.getString('v'); // answered only after the wait: 300 ms alone would fail it
  const set = new Promise((r) => setTimeout(r, 800)).then(() => other.set('late', '1'));
  await wait;
  t.is(await get, 'x');
  await set;
});

test('gloo (C++ client): a group create against a silent store fails within its timeout, naming the store and the request', async (t) => {
  if (!needGloo(t)) return;
  const port = await silentStore(t);
  for (const token of ['', 'tok']) {
    const t0 = Date.now();
    const e = await t.throwsAsync(
      createGlooProcessGroup({ rank: 0, size: 2, store: { host: '127.0.0.1', port, token }, prefix: 'silent', timeoutMs: 1200 }),
      { instanceOf: CollectiveError },
    );
    const ms = Date.now() - t0;
    t.log(`${ms} ms: ${e!.message}`);
    t.true(ms < 1200 + 1000, `${ms} ms`);
    const what = token ? 'auth' : 'set silent/a/rank_0';
    t.regex(e!.message, new RegExp(`store 127\\.0\\.0\\.1:${port} did not answer '${what}' within 1200 ms`));
  }
});

test('gloo (C++ client): a wait that the store answers late fails after its timeout plus the grace', async (t) => {
  if (!needGloo(t)) return;
  // A real store, so set and get work; rank 1 never comes, so the rendezvous wait
  // times out on the store's side: the error is the rendezvous timeout, in time.
  const store = await startStore({ host: '127.0.0.1', port: 0, log: () => undefined });
  t.teardown(() => store.close());
  const t0 = Date.now();
  const e = await t.throwsAsync(
    createGlooProcessGroup({ rank: 0, size: 2, store: { host: '127.0.0.1', port: store.port }, prefix: 'late', timeoutMs: 800 }),
    { instanceOf: CollectiveError },
  );
  const ms = Date.now() - t0;
  t.regex(e!.message, /rendezvous timed out/);
  t.deepEqual(e!.missingRanks, [1]);
  t.true(ms < 800 + 1500, `${ms} ms`);
});
