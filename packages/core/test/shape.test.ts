import test from 'ava';
import { broadcastShapes, broadcastStrides, contiguousStrides, inferShape, normAxis, pair } from '../src/shape.js';

test('contiguous strides are row-major', (t) => {
  t.deepEqual(contiguousStrides([2, 3, 4]), [12, 4, 1]);
  t.deepEqual(contiguousStrides([]), []);
});

test('broadcasting follows NumPy and names the op and both shapes when it cannot', (t) => {
  t.deepEqual(broadcastShapes('add', [3, 1], [1, 4]), [3, 4]);
  t.deepEqual(broadcastShapes('add', [2, 3, 4], [4]), [2, 3, 4]);
  t.deepEqual(broadcastShapes('add', [], [5]), [5]);
  t.throws(() => broadcastShapes('mul', [2, 3], [4, 3]), { message: 'mul: shapes [2,3] and [4,3] cannot be broadcast (dimension 0: 2 vs 4)' });
});

test('broadcast strides read size-1 and missing dimensions with stride 0', (t) => {
  t.deepEqual(broadcastStrides([3, 1], [2, 3, 4]), [0, 1, 0]);
  t.deepEqual(broadcastStrides([4], [2, 3, 4]), [0, 0, 1]);
});

test('a -1 in a reshape is inferred; impossible shapes name the input shape', (t) => {
  t.deepEqual(inferShape('view', [4, 6], [-1, 3]), [8, 3]);
  t.throws(() => inferShape('view', [4, 6], [-1, 5]), { message: /view: shape \[-1,5\] is invalid for input of shape \[4,6\]/ });
  t.throws(() => inferShape('view', [4, 6], [-1, -1]), { message: /only one dimension can be -1/ });
  t.throws(() => inferShape('reshape', [4, 6], [5, 5]), { message: /\(24 elements\)/ });
});

test('axes may be negative; out of range names the shape', (t) => {
  t.is(normAxis('sum', -1, [2, 3]), 1);
  t.throws(() => normAxis('sum', 2, [2, 3]), { message: 'sum: dimension 2 out of range for a tensor of shape [2,3] (rank 2)' });
});

test('pair parameters accept a number or two integers', (t) => {
  t.deepEqual(pair('conv2d', 'stride', 2), [2, 2]);
  t.deepEqual(pair('conv2d', 'stride', [1, 3]), [1, 3]);
  t.throws(() => pair('conv2d', 'stride', 1.5), { message: /conv2d: stride must be an integer or a pair of integers/ });
});
