/**
 * Self-checks of the backend stand-in against hand-computed values, so that a
 * wrong stand-in cannot make core's tests pass vacuously.
 */
import test, { type ExecutionContext } from 'ava';
import { ReferenceBackend } from './helpers/reference-backend.js';
import type { Handle } from '../src/index.js';

const b = new ReferenceBackend();
const f = (values: number[]): Handle => {
  const h = b.alloc('float32', values.length, 0);
  b.upload(h, Float32Array.from(values));
  return h;
};
const zeros = (n: number): Handle => b.alloc('float32', n, 0);
const read = (h: Handle): number[] => Array.from(b.hostView(h) as Float32Array);
const near = (actual: number[], expected: number[], tol = 1e-5): boolean =>
  actual.length === expected.length && actual.every((v, i) => Math.abs(v - expected[i]) <= tol);

test('gemm: plain, transposed, leading dimensions, alpha/beta and batches', (t) => {
  // A = [[1, 2, 3], [4, 5, 6]] (2x3), B = [[1, 0], [0, 1], [1, 1]] (3x2): A @ B = [[4, 5], [10, 11]]
  const a = f([1, 2, 3, 4, 5, 6]);
  const bm = f([1, 0, 0, 1, 1, 1]);
  const c = zeros(4);
  b.gemm(c, a, bm, false, false, 2, 2, 3, 1, 0, 3, 2, 2, 1, 0, 0, 0);
  t.deepEqual(read(c), [4, 5, 10, 11]);
  // A^T stored as [[1, 4], [2, 5], [3, 6]], B^T stored as [[1, 0, 1], [0, 1, 1]]; alpha 2, beta 1 over C = 1
  const at = f([1, 4, 2, 5, 3, 6]);
  const bt = f([1, 0, 1, 0, 1, 1]);
  const c2 = f([1, 1, 1, 1]);
  b.gemm(c2, at, bt, true, true, 2, 2, 3, 2, 1, 2, 3, 2, 1, 0, 0, 0);
  t.deepEqual(read(c2), [9, 11, 21, 23]);
  // ldc 3: the third column of C is left alone; batch 2 with strides
  const c3 = f([7, 7, 7, 7, 7, 7]);
  b.gemm(c3, a, bm, false, false, 2, 2, 3, 1, 0, 3, 2, 3, 1, 0, 0, 0);
  t.deepEqual(read(c3), [4, 5, 7, 10, 11, 7]);
  // batch 2: [[1]] @ [[2]] and [[3]] @ [[4]]
  const c4 = zeros(2);
  b.gemm(c4, f([1, 3]), f([2, 4]), false, false, 1, 1, 1, 1, 0, 1, 1, 1, 2, 1, 1, 1);
  t.deepEqual(read(c4), [2, 12]);
});

test('binary broadcasts through strides; stridedCopy transposes', (t) => {
  // [2, 3] + [3] (row broadcast) and [2, 1] * [1, 3] (outer product)
  const out = zeros(6);
  b.binary('add', out, f([1, 2, 3, 4, 5, 6]), [3, 1], f([10, 20, 30]), [0, 1], [2, 3]);
  t.deepEqual(read(out), [11, 22, 33, 14, 25, 36]);
  b.binary('mul', out, f([1, 2]), [1, 0], f([1, 10, 100]), [0, 1], [2, 3]);
  t.deepEqual(read(out), [1, 10, 100, 2, 20, 200]);
  b.binary('sub', out, f([6, 6, 6, 6, 6, 6]), [3, 1], f([1, 2]), [1, 0], [2, 3]);
  t.deepEqual(read(out), [5, 5, 5, 4, 4, 4]);
  b.binary('div', out, f([1, 2, 3, 4, 5, 6]), [3, 1], f([2]), [0, 0], [2, 3]);
  t.deepEqual(read(out), [0.5, 1, 1.5, 2, 2.5, 3]);
  // [[1, 2, 3], [4, 5, 6]] read as its transpose [3, 2]
  b.stridedCopy(out, f([1, 2, 3, 4, 5, 6]), [3, 2], [1, 3]);
  t.deepEqual(read(out), [1, 4, 2, 5, 3, 6]);
});

test('sum over the middle axis, unary, affine, reluBackward', (t) => {
  // x [2, 2, 2] = 0..7, summed over axis 1: [[0+2, 1+3], [4+6, 5+7]]
  const out = zeros(4);
  b.sum(out, f([0, 1, 2, 3, 4, 5, 6, 7]), 2, 2, 2);
  t.deepEqual(read(out), [2, 4, 10, 12]);
  const u = zeros(3);
  b.unary('relu', u, f([-1, 0, 2]), 3);
  t.deepEqual(read(u), [0, 0, 2]);
  b.unary('neg', u, f([-1, 0, 2]), 3);
  t.deepEqual(read(u), [1, -0, -2]);
  b.affine(u, f([1, 2, 3]), 3, 2, -1);
  t.deepEqual(read(u), [1, 3, 5]);
  b.reluBackward(u, f([5, 6, 7]), f([-1, 0, 1]), 3);
  t.deepEqual(read(u), [0, 0, 7]);
});

test('softmax, log-softmax, NLL and their backward', (t) => {
  const x = f([0, Math.log(3)]); // softmax = [1/4, 3/4]
  const y = zeros(2);
  b.softmax(y, x, 1, 2, false);
  t.true(near(read(y), [0.25, 0.75]));
  const lp = zeros(2);
  b.softmax(lp, x, 1, 2, true);
  t.true(near(read(lp), [Math.log(0.25), Math.log(0.75)]));
  const target = b.alloc('int32', 1, 0);
  b.upload(target, Int32Array.from([1]));
  const loss = zeros(1);
  b.nllLoss(loss, lp, target, 1, 2);
  t.true(near(read(loss), [-Math.log(0.75)]));
  const dlp = zeros(2);
  b.nllLossBackward(dlp, f([1]), target, 1, 2);
  t.deepEqual(read(dlp), [0, -1]);
  // d(cross-entropy)/dx = softmax - onehot
  const dx = zeros(2);
  b.softmaxBackward(dx, dlp, lp, 1, 2, true);
  t.true(near(read(dx), [0.25, -0.25]));
  b.upload(target, Int32Array.from([2]));
  t.throws(() => b.nllLoss(loss, lp, target, 1, 2), { message: /target 2 out of range/ });
});

test('conv2d with padding, stride and bias', (t) => {
  // x [1, 1, 3, 3] = 1..9, a 2x2 kernel of ones, padding 0, stride 1: window sums
  const g = {
    n: 1, c: 1, h: 3, w: 3, k: 1, r: 2, s: 2, oh: 2, ow: 2,
    strideH: 1, strideW: 1, padH: 0, padW: 0, dilH: 1, dilW: 1, groups: 1,
  };
  const x = f([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const y = zeros(4);
  b.conv2d(y, x, f([1, 1, 1, 1]), f([0.5]), g);
  t.deepEqual(read(y), [12.5, 16.5, 24.5, 28.5]);
  // a 3x3 centre-only kernel, padding 1, stride 2: picks x[0, 0], x[0, 2], x[2, 0], x[2, 2]
  const y2 = zeros(4);
  b.conv2d(y2, x, f([0, 0, 0, 0, 1, 0, 0, 0, 0]), null, { ...g, r: 3, s: 3, strideH: 2, strideW: 2, padH: 1, padW: 1 });
  t.deepEqual(read(y2), [1, 3, 7, 9]);
});

/** A one-channel merge's outputs, the running statistics starting at mean 0, var 1. */
function mergeOutputs() {
  return { mean: zeros(1), invstd: zeros(1), count: zeros(1), rm: f([0]), rv: f([1]) };
}

/** What merging ranks {1, 2} and {3, 4} gives: mean 2.5, biased var 1.25, N 4, momentum 0.1. */
function expectMerged1234(t: ExecutionContext, o: ReturnType<typeof mergeOutputs>): void {
  t.true(near(read(o.mean), [2.5]));
  t.true(near(read(o.invstd), [1 / Math.sqrt(1.25 + 1e-5)]));
  t.deepEqual(read(o.count), [4]);
  t.true(near(read(o.rm), [0.25]));
  t.true(near(read(o.rv), [0.9 + 0.1 * 1.25 * 4 / 3]), 'the running variance is unbiased');
}

test('batch-norm statistics, their merge across ranks, the running update and normalisation', (t) => {
  // x [2, 1, 2]: channel 0 holds 1, 2, 3, 4 (mean 2.5, biased var 1.25, count 4), then the tag
  const stats = zeros(4);
  b.bnStats(stats, f([1, 2, 3, 4]), 2, 1, 2, 7);
  t.deepEqual(read(stats), [2.5, 1.25, 4, 7]);
  // x [1, 2, 2]: two channels, {1, 3} and {10, 10}
  const stats2 = zeros(6);
  b.bnStats(stats2, f([1, 3, 10, 10]), 1, 2, 2, 0);
  t.deepEqual(read(stats2), [2, 10, 1, 0, 2, 0]);
  // ranks {1, 2} and {3, 4} (means 1.5, 3.5, var 0.25 each) merge to the same mean and variance;
  // a rank with no data is skipped; records are 4 floats apart (the tag column is not read)
  const o = mergeOutputs();
  b.bnMergeStats(o.mean, o.invstd, o.count, f([1.5, 0.25, 2, 5, 3.5, 0.25, 2, 5, 9, 9, 0, 5]), 3, 1, 4, 1e-5,
    o.rm, o.rv, 0.1);
  expectMerged1234(t, o);
  const y = zeros(4);
  b.bnElemt(y, f([1, 2, 3, 4]), f([2.5]), f([2]), f([3]), f([1]), 2, 1, 2);
  t.deepEqual(read(y), [-8, -2, 4, 10]);
});

test("batch-norm shifted sums ('allReduce' exchange): tag slots, the merge from sums, the shift update", (t) => {
  // x [2, 1, 2] = 1, 2, 3, 4 shifted by 2: S1 = 2, S2 = 1 + 0 + 1 + 4 = 6; 3 ranks, this one rank 1, tag 7
  const sums = zeros(6);
  b.bnStatsSums(sums, f([1, 2, 3, 4]), f([2]), 2, 1, 2, 3, 1, 7);
  t.deepEqual(read(sums), [2, 6, 4, 0, 7, 0]);
  // ranks {1, 2} and {3, 4} shifted by 2, summed: S1 = -1 + 3 = 2, S2 = 1 + 0 + 1 + 4 = 6, N = 4
  const o = mergeOutputs();
  const shift = f([2]);
  b.bnMergeSums(o.mean, o.invstd, o.count, shift, f([2, 6, 4, 5, 5]), 1, 1e-5, o.rm, o.rv, 0.1);
  expectMerged1234(t, o);
  t.deepEqual(read(shift), [2.5], 'the shift follows the merged mean');
  // no shift is a shift of 0
  b.bnStatsSums(sums, f([1, 2, 3, 4]), null, 2, 1, 2, 1, 0, 3);
  t.deepEqual(read(sums).slice(0, 4), [10, 30, 4, 3]);
});

test('sgd: plain, momentum (the first step seeds the buffer), weight decay', (t) => {
  const p = f([1, 2]);
  b.sgd(p, null, f([1, 1]), 2, 0.5, 0, 0, 0, false, true);
  t.deepEqual(read(p), [0.5, 1.5]);
  const buf = zeros(2);
  b.sgd(p, buf, f([1, 2]), 2, 1, 0.5, 0, 0, false, true);
  t.deepEqual(read(buf), [1, 2]);
  t.deepEqual(read(p), [-0.5, -0.5]);
  b.sgd(p, buf, f([1, 2]), 2, 1, 0.5, 0, 0, false, false); // buf = 0.5 * buf + g = [1.5, 3]
  t.deepEqual(read(buf), [1.5, 3]);
  t.deepEqual(read(p), [-2, -3.5]);
  const q = f([2]);
  b.sgd(q, null, f([0]), 1, 0.25, 0, 0, 0.5, false, true); // q -= 0.25 * (0 + 0.5 * 2)
  t.deepEqual(read(q), [1.75]);
});

test('storage: stats count live bytes, free and reclaim take storages back, kernels it lacks say so', (t) => {
  const s = new ReferenceBackend();
  const h = s.alloc('float32', 4, 0);
  const i = s.alloc('int32', 2, 0);
  t.deepEqual(s.allocatorStats(), { reserved: 24, systemAllocs: 2 });
  s.free(h);
  s.reclaim(s.reclaimToken(i));
  t.deepEqual(s.allocatorStats(), { reserved: 0, systemAllocs: 2 });
  t.throws(() => s.free(h), { message: /not a live storage/ });
  t.throws(() => s.alloc('float16', 1, 0), { message: /not supported by the stand-in/ });
  t.throws(() => s.alloc('float32', 1, 1), { message: /only device index 0/ });
  t.throws(() => s.maxPool2dBackward(h, h, i, {} as never), { message: /maxPool2dBackward is not supported by the stand-in/ });
});
