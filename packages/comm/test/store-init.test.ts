// initProcessGroup: threads without a launcher, env:// and tcp:// rendezvous through a
// store that rank 0 serves, a rank that never joins, and the backend registry.
import test from 'ava';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  CollectiveError,
  destroyProcessGroup,
  getLocalRank,
  getRank,
  getWorldSize,
  initProcessGroup,
  isInitialized,
  parseInitMethod,
  runProcesses,
} from '../src/index.js';

const SCRIPT = fileURLToPath(new URL('./fixtures/init-script.js', import.meta.url));

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function parse(out: string, tag: string) {
  const m = new RegExp(`^${tag} (.*)$`, 'm').exec(out);
  return m ? JSON.parse(m[1]!) : null;
}

test.serial('threads without a launcher: a world of one rank; helpers; double init and destroy', async (t) => {
  const g = await initProcessGroup();
  t.true(isInitialized());
  t.is(g.backend, 'threads');
  t.is(getRank(), 0);
  t.is(getWorldSize(), 1);
  t.is(getLocalRank(), 0);
  const a = new Float32Array([1, 2]);
  g.allReduce(a, 'avg');
  t.deepEqual([...a], [1, 2]);
  const out = new Int32Array(2);
  g.allGather(out, new Int32Array([4, 5]));
  t.deepEqual([...out], [4, 5]);
  g.barrier();
  const sub = await g.newGroup([0]);
  t.is(sub!.size, 1);
  await t.throwsAsync(initProcessGroup(), { message: /already initialised/ });
  await destroyProcessGroup();
  t.false(isInitialized());
  t.throws(() => g.barrier(), { instanceOf: CollectiveError, message: /destroyed/ });
  t.throws(() => getRank(), { message: /not initialised/ });
});

test.serial('threads as separate processes is refused with a clear error', async (t) => {
  const saved = { ...process.env };
  process.env['WORLD_SIZE'] = '2';
  process.env['RANK'] = '1';
  try {
    await t.throwsAsync(initProcessGroup({ backend: 'threads' }), { message: /worker threads of one process.*bagua-launch --backend threads/ });
  } finally {
    process.env = saved;
  }
});

test('parseInitMethod: tcp:// and env://', (t) => {
  t.deepEqual(parseInitMethod('tcp://10.0.0.1:1234?rank=3&world_size=8'), { host: '10.0.0.1', port: 1234, rank: 3, worldSize: 8 });
  t.deepEqual(parseInitMethod('tcp://[::1]:99'), { host: '::1', port: 99, rank: undefined, worldSize: undefined });
  t.throws(() => parseInitMethod('file:///tmp/x'), { message: /unsupported init method/ });
  t.throws(() => parseInitMethod('tcp://h:1?rank=x'), { message: /rank .* must be a non-negative integer/ });
});

test('tcp:// without a launcher: rank 0 serves the store, the factory gets a working store', async (t) => {
  const port = await freePort();
  // Two independent single-process launches: each rank knows only its URL.
  const per = await Promise.all(
    [0, 1].map((r) =>
      runProcesses(1, SCRIPT, [`tcp://127.0.0.1:${port}?rank=${r}&world_size=2`, '5000'], {
        output: 'capture',
        env: { BAGUA_STORE_SERVED: undefined },
        rankOffset: r,
        worldSize: 2,
      }),
    ),
  );
  for (const [r, p] of per.entries()) {
    t.is(p.exitCode, 0, p.stderr.join('') + p.stdout.join(''));
    const init = parse(p.stdout[0]!, 'INIT');
    t.deepEqual(init, { rank: r, worldSize: 2, localRank: 0, prefix: 'bagua/pg0/', timeoutMs: 5000, store: `127.0.0.1:${port}` });
  }
});

test('env:// without a launcher: MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE', async (t) => {
  const port = await freePort();
  const res = await runProcesses(3, SCRIPT, [], {
    output: 'capture',
    env: { MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), BAGUA_STORE_SERVED: undefined, BAGUA_TIMEOUT_MS: '4000' },
  });
  t.is(res.exitCode, 0, res.stderr.join(''));
  for (let r = 0; r < 3; r++) {
    const init = parse(res.stdout[r]!, 'INIT');
    t.is(init.rank, r);
    t.is(init.worldSize, 3);
    t.is(init.timeoutMs, 4000);
  }
});

test('a rank that never joins the rendezvous: CollectiveError naming it, within the timeout', async (t) => {
  const port = await freePort();
  const start = Date.now();
  const res = await runProcesses(1, SCRIPT, [`tcp://127.0.0.1:${port}?rank=0&world_size=3`, '800'], {
    output: 'capture',
    env: { BAGUA_STORE_SERVED: undefined },
  });
  t.is(res.exitCode, 3, res.stderr.join(''));
  const e = parse(res.stdout[0]!, 'INITERR');
  t.is(e.op, 'initProcessGroup');
  t.deepEqual(e.missing, [1, 2]);
  t.regex(e.message, /rendezvous through the store at 127\.0\.0\.1:\d+ timed out after 800 ms \(ranks not arrived: 1, 2\)/);
  t.true(Date.now() - start < 30_000);
});
