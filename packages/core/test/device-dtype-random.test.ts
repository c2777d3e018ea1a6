import test from 'ava';
import {
  bytesPerElement, defaultGenerator, Device, DLPACK_DTYPES, Generator, getBackend, hasBackend, hostArray, manualSeed,
} from '../src/index.js';

test('devices parse and carry DLPack codes', (t) => {
  t.is(String(Device.parse('cpu')), 'cpu');
  t.is(Device.parse('cpu').dlpackCode, 1);
  const d = Device.parse('cuda:3');
  t.is(d.type, 'cuda');
  t.is(d.index, 3);
  t.is(d.dlpackCode, 2);
  t.true(Device.parse('cuda').equals(Device.parse('cuda:0')));
  t.throws(() => Device.parse('gpu:0'), { message: "unknown device 'gpu:0': expected 'cpu', 'cuda' or 'cuda:N'" });
});

test('dtypes follow DLPack and have their host arrays', (t) => {
  t.deepEqual(DLPACK_DTYPES.float32, { code: 2, bits: 32, lanes: 1 });
  t.deepEqual(DLPACK_DTYPES.bfloat16, { code: 4, bits: 16, lanes: 1 });
  t.is(bytesPerElement('int64'), 8);
  t.true(hostArray('float32', 3) instanceof Float32Array);
  t.true(hostArray('int64', 3) instanceof BigInt64Array);
  t.true(hostArray('float16', 3) instanceof Uint16Array);
});

test('the generator is reproducible and manualSeed resets the default one', (t) => {
  const a = new Generator(42);
  const b = new Generator(42);
  const xs = Array.from({ length: 5 }, () => a.uniform());
  t.deepEqual(xs, Array.from({ length: 5 }, () => b.uniform()));
  t.notDeepEqual(xs, Array.from({ length: 5 }, () => new Generator(43).uniform()));
  manualSeed(7);
  const first = defaultGenerator.normal();
  manualSeed(7);
  t.is(defaultGenerator.normal(), first);
});

test('uniform draws lie in [0, 1) and normal draws have mean 0 and variance 1', (t) => {
  const g = new Generator(1);
  const n = 200_000;
  let min = 1, max = 0, sum = 0, sq = 0;
  for (let i = 0; i < n; i++) {
    const u = g.uniform();
    min = Math.min(min, u);
    max = Math.max(max, u);
    const z = g.normal();
    sum += z;
    sq += z * z;
  }
  t.true(min >= 0 && max < 1);
  t.true(Math.abs(sum / n) < 0.01, `mean ${sum / n}`);
  t.true(Math.abs(sq / n - 1) < 0.02, `variance ${sq / n}`);
});

test('a device type without a registered backend says which package registers it', (t) => {
  t.false(hasBackend('cuda'));
  t.throws(() => getBackend('cuda'), { message: /no backend registered for device type 'cuda': import '@bagua\/kernels'/ });
});
