// Hostile input: the store logs and drops the offending connection, and keeps serving real clients.
import test from 'ava';
import { MAX_FRAME, StoreClient, StoreError, StoreServer } from '../src/index.js';
import { bytesField, exchange, frame, u32 } from './helpers/raw.js';

/** Deterministic pseudo-random bytes (a fixed-seed LCG), so every run sends the same garbage. */
function noise(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

async function setup(t: import('ava').ExecutionContext, token?: string) {
  const logs: string[] = [];
  const server = new StoreServer({ log: (m) => logs.push(m), ...(token ? { token } : {}) });
  const { port } = await server.listen();
  const c = await StoreClient.connect({ port, ...(token ? { token } : {}) });
  await c.set('alive', 'yes');
  t.teardown(async () => {
    c.close();
    await server.close();
  });
  // A real client keeps working after each attack.
  const stillServes = async () => {
    t.is(await c.getString('alive'), 'yes');
    const fresh = await StoreClient.connect({ port, ...(token ? { token } : {}) });
    t.is(await fresh.getString('alive'), 'yes');
    fresh.close();
  };
  return { port, logs, stillServes };
}

test('garbage bytes: dropped and logged', async (t) => {
  const { port, logs, stillServes } = await setup(t);
  for (let i = 0; i < 20; i++) {
    // Random lengths and contents; the header is forced small enough to be read whole.
    const g = noise(64 + i * 13, i + 1);
    g.writeUInt32LE(g.length - 4, 0);
    const { closed } = await exchange(port, g, 500);
    t.true(closed, `garbage #${i} did not close the connection`);
  }
  t.true(logs.length >= 20, logs.join('\n'));
  t.true(logs.every((l) => /closed connection from 127\.0\.0\.1:\d+: malformed request/.test(l)), logs.join('\n'));
  await stillServes();
});

test('oversized frame: dropped before its payload is buffered', async (t) => {
  const { port, logs, stillServes } = await setup(t);
  const { closed } = await exchange(port, Buffer.concat([u32(MAX_FRAME + 1), Buffer.alloc(16)]), 1000);
  t.true(closed);
  t.regex(logs.join('\n'), new RegExp(`frame of ${MAX_FRAME + 1} bytes exceeds the limit of ${MAX_FRAME}`));
  await stillServes();
});

test('malformed messages: unknown op, truncated field, trailing bytes, empty frame', async (t) => {
  const { port, logs, stillServes } = await setup(t);
  const cases: [Buffer, RegExp][] = [
    [frame(Buffer.from([42])), /unknown op 42/],
    [frame(Buffer.concat([Buffer.from([1]), u32(1000), Buffer.from('short')])), /truncated/],
    [frame(Buffer.concat([Buffer.from([2]), bytesField('k'), Buffer.from('xx')])), /trailing/],
    [frame(Buffer.alloc(0)), /truncated/],
    [frame(Buffer.concat([Buffer.from([4]), u32(0xffffffff)])), /truncated/], // a WAIT claiming 4G keys
  ];
  for (const [msg, why] of cases) {
    const before = logs.length;
    const { closed } = await exchange(port, msg, 500);
    t.true(closed);
    t.regex(logs.slice(before).join('\n'), why);
  }
  await stillServes();
});

test('a client that vanishes during a WAIT does not disturb the store', async (t) => {
  const { port, stillServes } = await setup(t);
  const wait = frame(Buffer.concat([Buffer.from([4]), u32(1), bytesField('never'), u32(60_000)]));
  const { closed } = await exchange(port, wait, 100);
  t.false(closed);
  await stillServes();
});

test('token: wrong token and requests before AUTH are rejected and logged; the right one works', async (t) => {
  const { port, logs, stillServes } = await setup(t, 's3cret');
  await t.throwsAsync(StoreClient.connect({ port, token: 'wrong' }), { instanceOf: StoreError, message: /refused the token/ });
  t.regex(logs.join('\n'), /rejected 127\.0\.0\.1:\d+: wrong token/);

  // A stranger that skips AUTH gets ERROR and a closed connection, and learns nothing.
  const get = frame(Buffer.concat([Buffer.from([2]), bytesField('alive')]));
  const { reply, closed } = await exchange(port, get, 1000);
  t.true(closed);
  t.is(reply[4], 3); // ERROR
  t.false(reply.includes(Buffer.from('yes')));
  t.regex(logs.join('\n'), /AUTH must be the first request/);

  // Before AUTH, frames are bounded tightly.
  const { closed: c2 } = await exchange(port, Buffer.concat([u32(100_000), Buffer.alloc(64)]), 1000);
  t.true(c2);
  t.regex(logs.join('\n'), /exceeds the limit of 4096/);

  // No token at all.
  await t.throwsAsync(
    (async () => {
      const c = await StoreClient.connect({ port });
      try {
        await c.get('alive');
      } finally {
        c.close();
      }
    })(),
    { instanceOf: StoreError },
  );
  await stillServes();
});

test('memory bound: a SET beyond maxStoredBytes is refused, the store keeps serving', async (t) => {
  const server = new StoreServer({ maxStoredBytes: 1000, log: () => undefined });
  const { port } = await server.listen();
  const c = await StoreClient.connect({ port });
  t.teardown(async () => {
    c.close();
    await server.close();
  });
  await c.set('a', new Uint8Array(900));
  await t.throwsAsync(c.set('b', new Uint8Array(200)), { instanceOf: StoreError, message: /store is full/ });
  await c.set('a', new Uint8Array(10)); // replacing frees the old value
  await c.set('b', new Uint8Array(200));
  await c.delete('a');
  await c.set('c', new Uint8Array(700));
  t.is((await c.get('b'))!.length, 200);
});
