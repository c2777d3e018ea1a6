// The public API's types, as a user's strict TypeScript sees them: tools/pack-check compiles
// this file with `tsc --strict` against the packages npm installed from the tarballs (never
// run). Each line after `// @ts-expect-error` must FAIL to compile; tsc reports it if it
// does not, so the rejections are checked as much as the acceptances.
import * as bagua from 'bagua';
import { Device, nn, optim, tensor, zeros, type DeviceLike, type DType, type HostArrayOf, type Tensor } from '@bagua/core';

const x: Tensor = zeros([2, 3]);

// Devices: literal names, 'cuda' for cuda:0, or a Device; dtypes through the same to().
const devices: DeviceLike[] = ['cpu', 'cuda', 'cuda:0', 'cuda:7', Device.cpu];
const moved: Tensor[] = devices.map((d) => x.to(d));
const half: Tensor = x.to('bfloat16');
const dtype: DType = half.dtype;

// toArray(dtype) is typed by its argument (and checked at run time); toArray() is the union.
const floats: Float32Array = x.toArray('float32');
const logical: Float32Array = x.toArray('float32', { order: 'logical' });
const raw: HostArrayOf<'float16'> = x.to('float16').toArray('float16');
const anyArray = x.toArray();
const firstValue = anyArray[0];

// stateDict's int64 buffer goes back into tensor() as it came out.
const model = new nn.Sequential(new nn.Linear(3, 4), new nn.BatchNorm1d(4), new nn.ReLU());
const state = model.stateDict();
const tracked: BigInt64Array = state['1.numBatchesTracked']!.toArray('int64');
const restored: Tensor = tensor(tracked);
model.loadStateDict({ ...state, '1.numBatchesTracked': restored });

const optimizer = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
const synced = bagua.contrib.SyncBatchNorm.convertSyncBatchnorm(model);
const wrapped = synced.withBagua([optimizer], new bagua.algorithms.GradientAllReduce({ bucketCapMb: 1 }));
const rank: number = bagua.getRank();

// @ts-expect-error: not a device name
x.to('gpu');
// @ts-expect-error: 'cuda0' misses the colon
x.to('cuda0');
// @ts-expect-error: not a dtype either
x.to('complex64');
// @ts-expect-error: toArray('float32') is a Float32Array, not an Int32Array
const wrongArray: Int32Array = x.toArray('float32');
// @ts-expect-error: the union of toArray() is not a Float32Array without asking for one
const unchecked: Float32Array = x.toArray();
// @ts-expect-error: Tensor._assign is internal: not in the published types
x._assign(x);
// @ts-expect-error: nor are the lifetime fields
x._owner;
// @ts-expect-error: tensor() takes numbers, typed arrays of its dtypes, or nested arrays
tensor(['1', '2']);

export { moved, dtype, floats, logical, raw, firstValue, wrapped, rank, wrongArray, unchecked };
