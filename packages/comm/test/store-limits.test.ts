// The store's own defences: a job's keys behind its token, a short leash for
// unauthenticated connections, a bound on buffered request bytes (slow-frame
// attack), and binding exactly the address given.
import test, { type ExecutionContext } from 'ava';
import * as net from 'node:net';
import { StoreClient, StoreError, StoreServer, type StoreServerOptions } from '../src/index.js';
import { bytesField, exchange, frame, u32 } from './helpers/raw.js';

const MIB = 1 << 20;
const TOKEN = 'job-secret';

async function serve(t: ExecutionContext, opts: StoreServerOptions = {}) {
  const logs: string[] = [];
  const server = new StoreServer({ log: (m) => logs.push(m), ...opts });
  const { port } = await server.listen();
  t.teardown(() => server.close());
  return { server, port, logs };
}

const auth = (token: string) => frame(Buffer.concat([Buffer.from([0]), bytesField(token)]));
const get = (key: string) => frame(Buffer.concat([Buffer.from([2]), bytesField(key)]));
const set = (key: string, value: string | Buffer) => frame(Buffer.concat([Buffer.from([1]), bytesField(key), bytesField(value)]));

test('token: without it or with a wrong one, nothing is read or written, even pipelined behind the AUTH', async (t) => {
  const { port, logs } = await serve(t, { token: TOKEN });
  const c = await StoreClient.connect({ port, token: TOKEN });
  t.teardown(() => c.close());
  await c.set('bagua/secret', 'the-value');

  const attempts: [string, Buffer[]][] = [
    ['no token, GET', [get('bagua/secret')]],
    ['no token, SET', [set('bagua/planted', 'x')]],
    ['wrong token, GET', [auth('guess'), get('bagua/secret')]],
    ['wrong token, SET', [auth('guess'), set('bagua/planted', 'x')]],
    ['empty token, SET', [auth(''), set('bagua/planted', 'x')]],
  ];
  for (const [what, frames] of attempts) {
    const { reply, closed } = await exchange(port, Buffer.concat(frames), 1000);
    t.true(closed, what);
    t.is(reply[4], 3, `${what}: ERROR`); // one ERROR reply, then the connection is closed
    t.is(reply.length, 4 + reply.readUInt32LE(0), `${what}: a single reply`);
    t.false(reply.includes(Buffer.from('the-value')), what);
  }
  t.is(await c.get('bagua/planted'), null);
  t.is(await c.getString('bagua/secret'), 'the-value');
  t.is(logs.filter((l) => /rejected 127\.0\.0\.1:\d+: (wrong token|AUTH must be the first request)/.test(l)).length, attempts.length);

  // The TypeScript client: a wrong token fails the connect; no token fails the first request.
  await t.throwsAsync(StoreClient.connect({ port, token: 'guess' }), { instanceOf: StoreError, message: /refused the token/ });
  const none = await StoreClient.connect({ port });
  await t.throwsAsync(none.get('bagua/secret'), { instanceOf: StoreError });
  none.close();
});

test('token: a request pipelined right behind a good AUTH is read under the full frame bound', async (t) => {
  const { port } = await serve(t, { token: TOKEN });
  const big = Buffer.alloc(64 * 1024, 7); // far above the 4 KiB allowed before AUTH
  const { reply } = await exchange(port, Buffer.concat([auth(TOKEN), set('big', big), get('big')]), 800);
  // OK (AUTH), OK (SET), OK + value (GET)
  t.deepEqual([...reply.subarray(0, 5)], [1, 0, 0, 0, 0]);
  t.deepEqual([...reply.subarray(5, 10)], [1, 0, 0, 0, 0]);
  t.is(reply.readUInt32LE(10), 1 + 4 + big.length);
  t.true(reply.subarray(19).equals(big));
});

test('unauthenticated connections: dropped after 2 s by default (configurable), frames bounded to 4 KiB', async (t) => {
  const { port, logs } = await serve(t, { token: TOKEN });
  const t0 = Date.now();
  const idle = await exchange(port, Buffer.alloc(0), 5000);
  const ms = Date.now() - t0;
  t.true(idle.closed);
  t.true(ms >= 1900 && ms < 3500, `closed after ${ms} ms`);
  t.regex(logs.join('\n'), /no AUTH within the time allowed/);

  const quick = await serve(t, { token: TOKEN, authTimeoutMs: 200 });
  const t1 = Date.now();
  t.true((await exchange(quick.port, Buffer.alloc(0), 3000)).closed);
  // Well before the default's close measured above (a loaded machine delays both alike).
  const quickMs = Date.now() - t1;
  t.true(quickMs < ms - 500, `closed after ${quickMs} ms with a 200 ms allowance, ${ms} ms with the default`);
  // A big frame before AUTH is refused from its header.
  t.true((await exchange(quick.port, Buffer.concat([u32(4097), Buffer.alloc(16)]), 1000)).closed);
  t.regex(quick.logs.join('\n'), /frame of 4097 bytes exceeds the limit of 4096/);
  // An authenticated client is not on that leash.
  const c = await StoreClient.connect({ port: quick.port, token: TOKEN });
  await new Promise((r) => setTimeout(r, 500));
  await c.set('still', 'here');
  c.close();
});

/** Opens a connection that sends `bytes` of a frame announced as `frameBytes`, then goes quiet. */
function partialSender(port: number, frameBytes: number, bytes: number, body: Buffer): Promise<net.Socket & { gone: Promise<void> }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.write(u32(frameBytes));
      s.write(body.subarray(0, bytes));
      resolve(Object.assign(s, { gone }));
    });
    const gone = new Promise<void>((r) => s.once('close', () => r()));
    s.on('error', () => undefined);
  });
}

test('slow-frame attack: over the buffer bound, the largest unfinished frames are dropped first; honest clients are served', async (t) => {
  const cap = 16 * MIB;
  const { server, port, logs } = await serve(t, { maxBufferedBytes: cap });
  const honest = await StoreClient.connect({ port, timeoutMs: 5000 });
  t.teardown(() => honest.close());
  await honest.set('alive', 'yes');

  const body = Buffer.alloc(4 * MIB, 0x61);
  // Small unfinished frames (64 KiB of 1 MiB) that must survive, then 40 attackers with 4 MiB - 1 byte each.
  const small = await Promise.all(Array.from({ length: 8 }, () => partialSender(port, MIB, 64 * 1024, body)));
  const big = await Promise.all(Array.from({ length: 40 }, () => partialSender(port, 4 * MIB, 4 * MIB - 1, body)));
  t.teardown(() => [...small, ...big].forEach((s) => s.destroy()));

  let maxSeen = 0;
  const deadline = Date.now() + 15_000;
  // Until every attacker has either been dropped or has handed over all its bytes.
  for (;;) {
    maxSeen = Math.max(maxSeen, server.bufferedBytes);
    t.is(await honest.getString('alive'), 'yes');
    const open = big.filter((s) => !s.destroyed && !s.closed);
    if (open.every((s) => s.writableLength === 0) && server.bufferedBytes >= open.length * (4 * MIB - 1)) break;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 200));
  const survivors = big.filter((s) => !s.closed);
  t.log(`max buffered ${(maxSeen / MIB).toFixed(1)} MiB; ${big.length - survivors.length} of ${big.length} attackers dropped`);
  t.true(maxSeen <= cap, `buffered ${maxSeen} > ${cap}`);
  t.true(survivors.length <= 4, `${survivors.length} attackers still connected`);
  t.true(small.every((s) => !s.closed), 'a small unfinished frame was dropped');
  const drops = logs.filter((l) => /holds \d+ bytes of unfinished requests .* dropping the largest first/.test(l));
  t.is(drops.length, big.length - survivors.length, logs.slice(0, 3).join('\n'));
  t.true(drops.every((l) => Number(/holds (\d+)/.exec(l)![1]) > 64 * 1024));

  // A fresh honest client during the attack, and everything released once the attackers leave.
  const fresh = await StoreClient.connect({ port, timeoutMs: 5000 });
  await fresh.set('big-honest', new Uint8Array(MIB));
  t.is((await fresh.get('big-honest'))!.length, MIB);
  fresh.close();
  for (const s of [...small, ...big]) s.destroy();
  await Promise.all([...small, ...big].map((s) => s.gone));
  await new Promise((r) => setTimeout(r, 100));
  t.is(server.bufferedBytes, 0);
  t.is(server.connections, 1);
  t.is(await honest.getString('alive'), 'yes');
});

test('a client that does not read its replies is no longer read from: reply bytes stay bounded, and all come in order', async (t) => {
  const { server, port } = await serve(t);
  const c = await StoreClient.connect({ port });
  await c.set('v', new Uint8Array(MIB).fill(5));
  c.close();
  const n = 200; // 200 MiB of replies asked for in one write
  const s = net.connect({ host: '127.0.0.1', port });
  t.teardown(() => s.destroy());
  await new Promise((r) => s.once('connect', r));
  s.pause();
  s.write(Buffer.concat(Array.from({ length: n }, () => get('v'))));
  await new Promise((r) => setTimeout(r, 500));
  const held = server.replyBytes;
  t.log(`reply bytes held by the store: ${(held / MIB).toFixed(1)} MiB`);
  t.true(held <= 40 * MIB, `${held}`);
  // Reading resumes the store: every reply arrives, whole.
  let got = 0;
  let bytes = 0;
  await new Promise<void>((resolve) => {
    s.on('data', (d: Buffer) => {
      bytes += d.length;
      got = Math.floor(bytes / (4 + 1 + 4 + MIB));
      if (got === n) resolve();
    });
    s.resume();
  });
  t.is(bytes, n * (4 + 1 + 4 + MIB));
});

test('without a token the store serves as before, bound to exactly the address given', async (t) => {
  // 127.0.0.2 is another loopback address: a store bound there is not reachable on 127.0.0.1.
  const { server, port } = await serve(t, { host: '127.0.0.2' });
  t.deepEqual(server.address, { host: '127.0.0.2', port });
  const c = await StoreClient.connect({ host: '127.0.0.2', port });
  await c.set('k', 'v');
  t.is(await c.getString('k'), 'v');
  c.close();
  // (2 s of refusals: a 100 ms allowance could pass on a busy machine before the first refusal is read)
  await t.throwsAsync(StoreClient.connect({ host: '127.0.0.1', port, connectTimeoutMs: 2000 }), { message: /ECONNREFUSED/ });
  // And the default is loopback, not every address.
  const d = await serve(t, {});
  t.is(d.server.address!.host, '127.0.0.1');
  const e = await serve(t, { host: '' });
  t.is(e.server.address!.host, '127.0.0.1');
});
