/** The typed surface of Tensor: tensor() of int64 host data, toArray(dtype), device names (on the reference backend). */
import test from 'ava';
import { useReferenceBackend } from './helpers/reference-backend.js';
import { Device, tensor, type DeviceLike, type HostArrayOf } from '../src/index.js';

useReferenceBackend();

test('tensor() takes the BigInt64Array stateDict gives for numBatchesTracked: int64, exact', (t) => {
  const big = 2n ** 60n + 3n; // beyond float64's integers: must not pass through a number
  const x = tensor(new BigInt64Array([big, -5n]));
  t.is(x.dtype, 'int64');
  t.deepEqual([...x.toArray('int64')], [big, -5n]);
  const f = tensor(new BigInt64Array([7n, 8n]), { dtype: 'float32' });
  t.is(f.dtype, 'float32');
  t.deepEqual([...f.toArray('float32')], [7, 8]);
});

test('toArray(dtype) returns that dtype\'s array and refuses another dtype, naming both', (t) => {
  const x = tensor([1, 2, 3]);
  const a: Float32Array = x.toArray('float32'); // the static type follows the argument
  t.true(a instanceof Float32Array);
  const i: HostArrayOf<'int32'> = tensor(new Int32Array([4])).toArray('int32');
  t.true(i instanceof Int32Array);
  const e = t.throws(() => x.toArray('int64'));
  t.regex(e!.message, /toArray\('int64'\): this tensor is float32; ask toArray\('float32'\)/);
  t.deepEqual([...x.toArray('float32', { order: 'storage' })], [1, 2, 3]); // options still follow
});

test('device names: literal types at compile time, the same names at run time', (t) => {
  const names: DeviceLike[] = ['cpu', 'cuda', 'cuda:0', 'cuda:3', Device.cpu];
  t.deepEqual(names.map((n) => Device.parse(n).toString()), ['cpu', 'cuda:0', 'cuda:0', 'cuda:3', 'cpu']);
  // @ts-expect-error: a misspelt device is a compile error
  const bad: DeviceLike = 'cdua:0';
  t.throws(() => Device.parse(bad as string), { message: /unknown device 'cdua:0'/ });
});
