/**
 * core's data module: DistributedSampler against PyTorch 1.13's (fixtures/sampler.json,
 * tools/gen-data-fixtures.py), the DataLoader's batching against PyTorch's, seeded
 * shuffling, collate, and the prefetching worker thread against the in-thread path.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { useReferenceBackend } from './helpers/reference-backend.js';
import { Synthetic } from './helpers/data-sets.js';
import { data, Generator, tensor, type Tensor } from '../src/index.js';

useReferenceBackend();

interface SamplerCase { n: number; numReplicas: number; dropLast: boolean; totalSize: number; ranks: { length: number; indices: number[] }[] }
interface LoaderCase { n: number; batchSize: number; dropLast: boolean; batches: number[][] }
const fixture = JSON.parse(readFileSync(new URL('../../../../fixtures/sampler.json', import.meta.url), 'utf8')) as
  { torch: string; sampler: SamplerCase[]; loader: LoaderCase[] };

const arange = (n: number) => tensor(Int32Array.from({ length: n }, (_, i) => i));
const values = (t: Tensor) => Array.from(t.toArray() as Int32Array);

test('DistributedSampler without shuffle partitions exactly as PyTorch 1.13 (lengths 0-17, 1-4 ranks, dropLast both ways)', (t) => {
  t.true(fixture.sampler.length >= 90);
  for (const c of fixture.sampler) {
    for (let rank = 0; rank < c.numReplicas; rank++) {
      const s = new data.DistributedSampler(c.n, { numReplicas: c.numReplicas, rank, shuffle: false, dropLast: c.dropLast });
      const label = `n=${c.n} replicas=${c.numReplicas} rank=${rank} dropLast=${c.dropLast}`;
      t.is(s.length, c.ranks[rank].length, `${label}: length`);
      t.is(s.totalSize, c.totalSize, `${label}: totalSize`);
      t.deepEqual(Array.from(s.indices()), c.ranks[rank].indices, `${label}: indices`);
    }
  }
});

/** Every rank's indices for one epoch, concatenated. */
function epochIndices(n: number, replicas: number, epoch: number, dropLast: boolean, seed = 3): number[][] {
  return Array.from({ length: replicas }, (_, rank) => {
    const s = new data.DistributedSampler(n, { numReplicas: replicas, rank, seed, dropLast });
    s.setEpoch(epoch);
    return Array.from(s.indices());
  });
}

test('DistributedSampler with shuffle: each index once per epoch across 1-4 ranks, plus PyTorch\'s padding; a new order each epoch', (t) => {
  for (const n of [1, 5, 10, 13, 17, 100]) {
    for (let replicas = 1; replicas <= 4; replicas++) {
      for (const dropLast of [false, true]) {
        const torchCase = fixture.sampler.find((c) => c.n === n && c.numReplicas === replicas && c.dropLast === dropLast);
        const orders: string[] = [];
        for (let epoch = 0; epoch < 3; epoch++) {
          const ranks = epochIndices(n, replicas, epoch, dropLast);
          const all = ranks.flat();
          const label = `n=${n} replicas=${replicas} dropLast=${dropLast} epoch=${epoch}`;
          if (torchCase) t.deepEqual(ranks.map((r) => r.length), torchCase.ranks.map((r) => r.length), `${label}: sizes as PyTorch's`);
          t.true(ranks.every((r) => r.length === ranks[0].length), `${label}: every rank takes as many`);
          const counts = new Map<number, number>();
          for (const i of all) counts.set(i, (counts.get(i) ?? 0) + 1);
          t.true(all.every((i) => Number.isInteger(i) && i >= 0 && i < n), `${label}: in range`);
          if (dropLast) {
            t.is(counts.size, all.length, `${label}: no index twice`);
            t.is(all.length, replicas * Math.floor(n / replicas), `${label}: the tail is dropped`);
          } else {
            t.is(counts.size, n, `${label}: every index at least once`);
            const extra = all.length - n;
            t.true(extra >= 0 && extra < replicas, `${label}: padding below one per rank`);
            // padding repeats the start of the shuffled list: the duplicates are its first `extra` entries
            const global = new data.DistributedSampler(n, { numReplicas: replicas, rank: 0, seed: 3 });
            global.setEpoch(epoch);
            const g = Array.from(global.globalIndices());
            t.deepEqual(g.slice(n), g.slice(0, extra), `${label}: padded by wrapping`);
            t.deepEqual([...counts.values()].reduce((a, b) => a + b, 0), n + extra);
          }
          orders.push(JSON.stringify(ranks));
        }
        if (n >= 5) t.is(new Set(orders).size, 3, `n=${n} replicas=${replicas}: three epochs, three orders`);
        t.deepEqual(epochIndices(n, replicas, 1, dropLast), epochIndices(n, replicas, 1, dropLast), 'same seed and epoch, same order');
      }
    }
  }
  t.notDeepEqual(epochIndices(50, 2, 0, false, 1), epochIndices(50, 2, 0, false, 2), 'the seed changes the order');
});

test('DistributedSampler rejects a bad rank, replica count or epoch with PyTorch\'s message', (t) => {
  t.throws(() => new data.DistributedSampler(10, { numReplicas: 2, rank: 2 }), { message: /invalid rank 2, rank should be in the interval \[0, 1\]/ });
  t.throws(() => new data.DistributedSampler(10, { numReplicas: 0, rank: 0 }), { message: /numReplicas must be a positive integer/ });
  t.throws(() => new data.DistributedSampler(-1, { numReplicas: 1, rank: 0 }), { message: /non-negative integer/ });
  t.throws(() => new data.DistributedSampler(3, { numReplicas: 1, rank: 0 }).setEpoch(1.5), { message: /epoch must be/ });
});

for (const prefetch of [false, true]) {
  test(`DataLoader batches as PyTorch's (batch sizes, dropLast, never an empty batch)${prefetch ? ', prefetched on a worker' : ''}`, async (t) => {
    for (const c of fixture.loader) {
      const loader = new data.DataLoader(new data.TensorDataset(arange(c.n)), { batchSize: c.batchSize, dropLast: c.dropLast, prefetch });
      t.is(loader.prefetching, prefetch);
      const got = [...loader].map(([x]) => values(x));
      t.deepEqual(got, c.batches, `n=${c.n} batchSize=${c.batchSize} dropLast=${c.dropLast}`);
      t.is(loader.length, c.batches.length);
      await loader.close();
    }
  });
}

test('DataLoader: TensorDataset rows stack with their shapes; seeded shuffle is reproducible, covers every item, and changes per epoch', async (t) => {
  const x = tensor(Float32Array.from({ length: 10 * 6 }, (_, i) => i), { shape: [10, 2, 3] });
  const ds = new data.TensorDataset(x, arange(10));
  const loader = new data.DataLoader(ds, { batchSize: 4, shuffle: true, generator: new Generator(7) });
  const epoch1 = [...loader];
  t.deepEqual(epoch1.map(([b]) => b.shape), [[4, 2, 3], [4, 2, 3], [2, 2, 3]]);
  const order1 = epoch1.flatMap(([, y]) => values(y));
  t.deepEqual([...order1].sort((a, b) => a - b), [...Array(10).keys()], 'every item once');
  for (const [b, y] of epoch1) {
    const xs = Array.from(b.toArray() as Float32Array);
    values(y).forEach((i, k) => t.deepEqual(xs.slice(k * 6, k * 6 + 6), [0, 1, 2, 3, 4, 5].map((v) => v + 6 * i), `row ${i}`));
  }
  const order2 = [...loader].flatMap(([, y]) => values(y));
  t.notDeepEqual(order1, order2, 'a new order for the second epoch');
  const again = new data.DataLoader(ds, { batchSize: 4, shuffle: true, generator: new Generator(7) });
  t.deepEqual([...again].flatMap(([, y]) => values(y)), order1, 'the same seed gives the same order');
  await loader.close();
  await again.close();
});

test('DataLoader on a worker gives the same batches as on the main thread, records and numbers included', async (t) => {
  const ds = new Synthetic(23);
  const onWorker = new data.DataLoader(ds, { batchSize: 5, sampler: new data.DistributedSampler(23, { numReplicas: 2, rank: 1, seed: 9 }) });
  const inThread = new data.DataLoader(ds, { batchSize: 5, sampler: new data.DistributedSampler(23, { numReplicas: 2, rank: 1, seed: 9 }), prefetch: false });
  t.true(onWorker.prefetching);
  t.false(inThread.prefetching);
  const dump = (b: { image: Tensor; label: Tensor; weight: Tensor }) =>
    ({ image: [b.image.shape, b.image.dtype, Array.from(b.image.toArray() as Float32Array)], label: [b.label.dtype, values(b.label)],
      weight: [b.weight.shape, Array.from(b.weight.toArray() as Float32Array)] });
  for (let epoch = 0; epoch < 3; epoch++) {
    (onWorker.sampler as data.DistributedSampler).setEpoch(epoch);
    (inThread.sampler as data.DistributedSampler).setEpoch(epoch);
    const a = [...onWorker].map(dump);
    const b = [...inThread].map(dump);
    t.is(a.length, 3); // 12 indices per rank: 5, 5, 2
    t.deepEqual(a, b, `epoch ${epoch}`);
    t.deepEqual(a[0].image[0], [5, 2, 3]);
    t.is(a[0].label[0], 'int32');
  }
  // two iterations at once: the older one is stopped, with an error saying so
  const first = onWorker[Symbol.iterator]();
  first.next();
  const second = [...onWorker];
  t.is(second.length, 3);
  t.throws(() => first.next(), { message: /a newer iteration of this loader started/ });
  // stopping early, then a new epoch: the leftovers of the stopped one are not mixed in
  for (const batch of onWorker) { t.is(batch.image.shape[0], 5); break; }
  t.deepEqual([...onWorker].map(dump), [...inThread].map(dump));
  await onWorker.close();
});

test('DataLoader: a failing item is reported from the worker with its batch; collate mismatches name the item', async (t) => {
  const loader = new data.DataLoader(new Synthetic(10, 7), { batchSize: 4 });
  t.throws(() => [...loader], { message: /DataLoader worker: batch 1: item 7 is unreadable/ });
  await loader.close();
  const exits = new data.DataLoader(new Synthetic(10, -1, 5), { batchSize: 4 });
  t.throws(() => [...exits], { message: /DataLoader worker: the worker thread exited/ });
  const mixed: data.Dataset = { length: 2, getItem: (i) => [i === 0 ? Float32Array.of(1, 2) : Float32Array.of(1, 2, 3)] };
  t.throws(() => [...new data.DataLoader(mixed, { batchSize: 2 })], { message: /item\[0\] is float32 \[2\] in item 0 but float32 \[3\] in item 1/ });
  t.throws(() => new data.DataLoader(mixed, { prefetch: true }), { message: /has no workerSource/ });
  t.throws(() => new data.DataLoader(mixed, { sampler: new data.SequentialSampler(2), shuffle: true }), { message: /mutually exclusive/ });
  t.throws(() => new data.DataLoader(mixed, { batchSize: 0 }), { message: /batchSize must be a positive integer/ });
  const floats = new data.DataLoader({ length: 3, getItem: (i: number) => [i, i + 0.5] }, { batchSize: 3 });
  const [[ints, halves]] = [...floats] as unknown as Tensor[][];
  t.is(ints.dtype, 'int32');
  t.is(halves.dtype, 'float32');
  t.deepEqual(Array.from(halves.toArray() as Float32Array), [0.5, 1.5, 2.5]);
});

test('DataLoader with a custom collate runs it on the main thread', (t) => {
  const loader = new data.DataLoader(new Synthetic(4), { batchSize: 3, collate: (items) => items.map((it) => it.label) });
  t.false(loader.prefetching);
  t.deepEqual([...loader], [[0, 1, 2], [3]]);
});
