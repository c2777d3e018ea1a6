// The rendezvous store: operations, waits, prefixes, retries, and the worker-thread host.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { networkInterfaces } from 'node:os';
import { Worker } from 'node:worker_threads';
import { StoreClient, StoreError, StoreServer, StoreTimeoutError, startStore } from '../src/index.js';
import { bytesField, exchange, frame, u32 } from './helpers/raw.js';

async function withServer(t: import('ava').ExecutionContext, opts: ConstructorParameters<typeof StoreServer>[0] = {}) {
  const logs: string[] = [];
  const server = new StoreServer({ log: (m) => logs.push(m), ...opts });
  const { port } = await server.listen();
  t.teardown(() => server.close());
  return { server, port, logs };
}

async function client(t: import('ava').ExecutionContext, port: number, token?: string): Promise<StoreClient> {
  const c = await StoreClient.connect({ port, ...(token ? { token } : {}) });
  t.teardown(() => c.close());
  return c;
}

test('set, get, add, delete, check', async (t) => {
  const { port, logs } = await withServer(t);
  const c = await client(t, port);
  t.is(await c.get('missing'), null);
  await c.set('k', 'hello');
  t.is(await c.getString('k'), 'hello');
  await c.set('bin', new Uint8Array([0, 255, 1]));
  t.deepEqual([...(await c.get('bin'))!], [0, 255, 1]);
  t.is(await c.add('n', 5), 5);
  t.is(await c.add('n', -2), 3);
  t.is(await c.getString('n'), '3'); // counters are stored as decimal text
  t.is(await c.add('big', 2n ** 62n), 2 ** 62);
  t.true(await c.check(['k', 'n']));
  t.false(await c.check(['k', 'nope']));
  await c.delete('k');
  t.is(await c.get('k'), null);
  // ADD on a non-counter is an error reply; the connection stays usable.
  await c.set('text', 'abc');
  await t.throwsAsync(c.add('text', 1), { instanceOf: StoreError, message: /not an integer/ });
  t.is(await c.getString('text'), 'abc');
  t.deepEqual(logs, []);
});

test('wait: resolved by another client, times out naming the missing keys, and holds later requests in order', async (t) => {
  const { port } = await withServer(t);
  const a = await client(t, port);
  const b = await client(t, port);
  const waiting = a.wait(['x', 'y'], 5000);
  const after = a.getString('x'); // queued behind the wait on the same connection
  await b.set('x', '1');
  await new Promise((r) => setTimeout(r, 30));
  await b.set('y', '2');
  await waiting;
  t.is(await after, '1');
  const start = Date.now();
  const e = await t.throwsAsync(a.wait(['x', 'z1', 'z2'], 150), { instanceOf: StoreTimeoutError });
  t.deepEqual(e!.missingKeys, ['z1', 'z2']);
  t.true(Date.now() - start >= 140);
});

test('prefixed views share a connection and namespace keys', async (t) => {
  const { port } = await withServer(t);
  const c = await client(t, port);
  const p = c.withPrefix('job/');
  await p.set('a', '1');
  t.is(await c.getString('job/a'), '1');
  t.is(await p.getString('a'), '1');
  t.is(p.withPrefix('x/').prefix, 'job/x/');
});

test('pipelined requests are answered in order; large values round-trip', async (t) => {
  const { port } = await withServer(t);
  const c = await client(t, port);
  await Promise.all(Array.from({ length: 200 }, (_, i) => c.set(`k${i}`, String(i))));
  const vals = await Promise.all(Array.from({ length: 200 }, (_, i) => c.getString(`k${i}`)));
  t.deepEqual(vals, Array.from({ length: 200 }, (_, i) => String(i)));
  const big = randomBytes(3 << 20);
  await c.set('big', big);
  const back = await c.get('big');
  t.true(back !== null && Buffer.compare(Buffer.from(back), big) === 0); // (deepEqual is slow on megabytes)
});

test('the wire format matches the protocol (raw frames; WAIT with timeout 0 answers at once)', async (t) => {
  const { port } = await withServer(t);
  const set = frame(Buffer.concat([Buffer.from([1]), bytesField('k'), bytesField('v')]));
  const wait0 = frame(Buffer.concat([Buffer.from([4]), u32(1), bytesField('absent'), u32(0)]));
  const add = frame(Buffer.concat([Buffer.from([3]), bytesField('c'), Buffer.from([7, 0, 0, 0, 0, 0, 0, 0])]));
  const t0 = Date.now();
  const { reply } = await exchange(port, [set, wait0, add], 10_000, 23);
  t.true(Date.now() - t0 < 5000, `WAIT with timeout 0 answers at once (took ${Date.now() - t0} ms)`);
  // OK, TIMEOUT, OK + i64 7: each as a frame.
  t.deepEqual([...reply], [1, 0, 0, 0, 0, 1, 0, 0, 0, 2, 9, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
});

test('a client retries until the store comes up', async (t) => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const connecting = StoreClient.connect({ port, connectTimeoutMs: 5000 });
  await new Promise((r) => setTimeout(r, 200));
  const server = new StoreServer({ port });
  await server.listen();
  t.teardown(() => server.close());
  const c = await connecting;
  await c.set('a', 'b');
  t.is(await c.getString('a'), 'b');
  c.close();
  await t.throwsAsync(StoreClient.connect({ port: 1, connectTimeoutMs: 100 }), { instanceOf: StoreError });
});

test('startStore: serves from a worker thread, binds only the given address, and keeps serving while this thread blocks', async (t) => {
  const logs: string[] = [];
  const h = await startStore({ host: '127.0.0.1', port: 0, log: (m) => logs.push(m) });
  t.teardown(() => h.close());
  t.true(h.port > 0);
  const c = await client(t, h.port);
  await c.set('a', '1');
  t.is(await c.getString('a'), '1');

  // Bound to 127.0.0.1 only: another local address refuses the connection.
  const other = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal);
  if (other) {
    await t.throwsAsync(StoreClient.connect({ host: other.address, port: h.port, connectTimeoutMs: 50 }));
  }

  // Block this thread in Atomics.wait while another thread uses the store.
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const clientUrl = new URL('../src/store/client.js', import.meta.url).href;
  const w = new Worker(
    `const { workerData: d } = await import('node:worker_threads');
     const { StoreClient } = await import(${JSON.stringify(clientUrl)});
     const c = await StoreClient.connect({ port: d.port });
     await c.set('from-thread', 'yes');
     const v = await c.getString('a');
     c.close();
     Atomics.store(d.flag, 0, v === '1' ? 1 : 2);
     Atomics.notify(d.flag, 0);`,
    { eval: true, workerData: { port: h.port, flag } },
  );
  const r = Atomics.wait(flag, 0, 0, 5000);
  t.not(r, 'timed-out', 'the store starved while its creator blocked');
  t.is(Atomics.load(flag, 0), 1);
  await new Promise((res) => w.once('exit', res));
  t.is(await c.getString('from-thread'), 'yes');

  // Protocol violations on the threaded store are reported through the log callback.
  await exchange(h.port, Buffer.from([1, 0, 0, 0, 99]), 300);
  await new Promise((res) => setTimeout(res, 50));
  t.true(logs.some((l) => /unknown op 99/.test(l)), logs.join('\n'));

  // An address already in use is an error.
  await t.throwsAsync(startStore({ host: '127.0.0.1', port: h.port, log: () => undefined }), { message: /cannot listen/ });
});
