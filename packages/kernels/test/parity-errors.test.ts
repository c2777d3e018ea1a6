/**
 * Bad inputs: wrong ranks, mismatched shapes, non-finite hyper-parameters, use after
 * dispose. Each must throw an Error whose message names the op and the shapes (or the
 * offending value): never a crash, a hang, or a silently wrong result.
 */
import test, { type ExecutionContext } from 'ava';
import '@bagua/kernels';
import { F, nn, optim, tensor, zeros, type Tensor } from '@bagua/core';
import { testDevice } from '@bagua/testing';

const device = testDevice();

/** A deterministic float tensor on the test device (values do not matter, shapes do). */
function t32(shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(i + 1)), { shape, device });
}

/** Matches a shape as '[2,3,4]' or '[2, 3, 4]'. */
function shapeRe(shape: number[]): RegExp {
  return new RegExp(`\\[${shape.join(',\\s*')}\\]`);
}

function throwsWith(t: ExecutionContext, fn: () => unknown, patterns: RegExp[]): void {
  const err = t.throws(fn, { instanceOf: Error });
  if (!err) return;
  for (const re of patterns) t.regex(err.message, re);
}

// ---------------------------------------------------------------- wrong ranks

test('parity errors: BatchNorm2d on a 3D input', (t) => {
  throwsWith(t, () => new nn.BatchNorm2d(3).to(device).forward(t32([2, 3, 4])), [/BatchNorm2d/, shapeRe([2, 3, 4])]);
});

test('parity errors: BatchNorm1d on a 1D input', (t) => {
  throwsWith(t, () => new nn.BatchNorm1d(3).to(device).forward(t32([3])), [/BatchNorm1d/, shapeRe([3])]);
});

test('parity errors: BatchNorm1d on a 4D input', (t) => {
  throwsWith(t, () => new nn.BatchNorm1d(3).to(device).forward(t32([2, 3, 2, 2])), [/BatchNorm1d/, shapeRe([2, 3, 2, 2])]);
});

test('parity errors: BatchNorm3d on a 4D input', (t) => {
  throwsWith(t, () => new nn.BatchNorm3d(3).to(device).forward(t32([2, 3, 4, 4])), [/BatchNorm3d/, shapeRe([2, 3, 4, 4])]);
});

test('parity errors: BatchNorm2d with a channel count other than numFeatures', (t) => {
  throwsWith(t, () => new nn.BatchNorm2d(4).to(device).forward(t32([2, 3, 5, 5])), [/BatchNorm2d/, shapeRe([2, 3, 5, 5]), /4/]);
});

test('parity errors: BatchNorm1d training on one value per channel', (t) => {
  // PyTorch: "Expected more than 1 value per channel when training"
  throwsWith(t, () => new nn.BatchNorm1d(3).to(device).forward(t32([1, 3])), [/batchnorm/i, shapeRe([1, 3])]);
});

test('parity: BatchNorm2d training on an empty batch is no error (PyTorch test_BatchNorm_empty)', (t) => {
  // PyTorch refuses exactly one value per channel, not zero: the output is empty, the running
  // statistics stay, numBatchesTracked counts the batch, and the gradients are zeros.
  const bn = new nn.BatchNorm2d(3).to(device);
  const x = t32([0, 3, 4, 4]);
  x.requiresGrad = true;
  const y = bn.forward(x);
  t.deepEqual(y.shape, [0, 3, 4, 4]);
  y.sum().backward();
  t.deepEqual(x.grad?.shape, [0, 3, 4, 4]);
  t.deepEqual(Array.from(bn.weight!.grad!.toArray() as Float32Array), [0, 0, 0]);
  t.deepEqual(Array.from(bn.bias!.grad!.toArray() as Float32Array), [0, 0, 0]);
  t.deepEqual(Array.from(bn.runningMean!.toArray() as Float32Array), [0, 0, 0]);
  t.deepEqual(Array.from(bn.runningVar!.toArray() as Float32Array), [1, 1, 1]);
  t.is(bn.numBatchesTracked, 1);
});

test('parity errors: batchNormStats on a 1D input', (t) => {
  throwsWith(t, () => F.batchNormStats(t32([5])), [/batchNormStats/, shapeRe([5])]);
});

test('parity errors: conv2d on a 3D input', (t) => {
  throwsWith(t, () => F.conv2d(t32([3, 5, 5]), t32([2, 3, 3, 3])), [/conv2d/, shapeRe([3, 5, 5])]);
});

test('parity errors: conv2d with a 3D weight', (t) => {
  throwsWith(t, () => F.conv2d(t32([1, 3, 5, 5]), t32([2, 3, 3])), [/conv2d/, shapeRe([2, 3, 3])]);
});

test('parity errors: Conv2d module on a 2D input', (t) => {
  throwsWith(t, () => new nn.Conv2d(3, 2, 3).to(device).forward(t32([3, 5])), [/conv2d/i, shapeRe([3, 5])]);
});

// ---------------------------------------------------------------- mismatched shapes

test('parity errors: matmul with mismatched inner dimensions', (t) => {
  throwsWith(t, () => t32([2, 3]).matmul(t32([4, 5])), [/matmul/, shapeRe([2, 3]), shapeRe([4, 5])]);
});

test('parity errors: batched matmul with mismatched batch sizes', (t) => {
  throwsWith(t, () => t32([2, 3, 4]).matmul(t32([3, 4, 5])), [/matmul/, shapeRe([2, 3, 4]), shapeRe([3, 4, 5])]);
});

test('parity errors: add with shapes that do not broadcast', (t) => {
  throwsWith(t, () => t32([2, 3]).add(t32([4])), [/add/, shapeRe([2, 3]), shapeRe([4])]);
});

test('parity errors: mul with shapes that do not broadcast (3D)', (t) => {
  throwsWith(t, () => F.mul(t32([2, 3, 4]), t32([3, 1, 5])), [/mul/, shapeRe([2, 3, 4]), shapeRe([3, 1, 5])]);
});

test('parity errors: linear with mismatched in-features', (t) => {
  throwsWith(t, () => F.linear(t32([4, 5]), t32([3, 6])), [/linear/, shapeRe([4, 5]), shapeRe([3, 6])]);
});

test('parity errors: conv2d with input channels that do not match the weight', (t) => {
  throwsWith(t, () => F.conv2d(t32([1, 4, 5, 5]), t32([2, 3, 3, 3])),
    [/conv2d/, shapeRe([1, 4, 5, 5]), shapeRe([2, 3, 3, 3])]);
});

test('parity errors: conv2d with groups that do not divide the channels', (t) => {
  throwsWith(t, () => F.conv2d(t32([1, 4, 5, 5]), t32([3, 2, 3, 3]), null, { groups: 3 }),
    [/conv2d/, shapeRe([1, 4, 5, 5]), /groups/]);
});

test('parity errors: conv2d kernel larger than the padded input', (t) => {
  throwsWith(t, () => F.conv2d(t32([1, 1, 2, 2]), t32([1, 1, 3, 3])), [/conv2d/, shapeRe([1, 1, 2, 2])]);
});

test('parity errors: maxPool2d with padding over half the kernel', (t) => {
  // PyTorch: "pad should be at most half of effective kernel size"
  throwsWith(t, () => F.maxPool2d(t32([1, 1, 6, 6]), 2, { padding: 2 }), [/maxPool2d/, /pad/]);
});

test('parity errors: reshape to a different number of elements', (t) => {
  throwsWith(t, () => t32([2, 3]).reshape([4]), [/reshape/, shapeRe([2, 3]), shapeRe([4])]);
});

test('parity errors: softmax over a dimension out of range', (t) => {
  throwsWith(t, () => t32([2, 3]).softmax(2), [/softmax/, shapeRe([2, 3])]);
});

test('parity errors: sum over a dimension out of range', (t) => {
  throwsWith(t, () => t32([2, 3]).sum(3), [/sum/, shapeRe([2, 3])]);
});

test('parity errors: mseLoss with shapes that do not match', (t) => {
  throwsWith(t, () => F.mseLoss(t32([4, 5]), t32([5, 4])), [/mseLoss/, shapeRe([4, 5]), shapeRe([5, 4])]);
});

test('parity errors: crossEntropy with a target of the wrong length', (t) => {
  const target = tensor(Int32Array.from([0, 1, 2]), { device });
  throwsWith(t, () => F.crossEntropy(t32([2, 5]), target), [/crossEntropy|nllLoss/, shapeRe([2, 5]), shapeRe([3])]);
});

test('parity errors: crossEntropy with a class index out of range', (t) => {
  // PyTorch: "Target 7 is out of bounds." A kernel must not read past the row. On a GPU the
  // kernel records it and the next read of results reports it (as CUDA reports device asserts).
  const target = tensor(Int32Array.from([0, 7]), { device });
  throwsWith(t, () => F.crossEntropy(t32([2, 5]), target).toArray(), [/crossEntropy|nllLoss|nll_loss/, /7/]);
});

test('parity errors: batchNormElemt with a mean of the wrong length', (t) => {
  throwsWith(t, () => F.batchNormElemt(t32([2, 3, 2]), t32([4]), t32([3]), null, null),
    [/batchNormElemt/, shapeRe([4])]);
});

// ---------------------------------------------------------------- non-finite hyper-parameters

test('parity errors: BatchNorm2d with eps NaN', (t) => {
  throwsWith(t, () => new nn.BatchNorm2d(3, { eps: NaN }), [/BatchNorm2d/, /eps/, /NaN/]);
});

test('parity errors: BatchNorm1d with momentum Infinity', (t) => {
  throwsWith(t, () => new nn.BatchNorm1d(3, { momentum: Infinity }), [/BatchNorm1d/, /momentum/, /Infinity/]);
});

test('parity errors: F.batchNorm with eps NaN', (t) => {
  throwsWith(t, () => F.batchNorm(t32([4, 3]), null, null, null, null, true, 0.1, NaN), [/batchNorm/, /eps/, /NaN/]);
});

test('parity errors: F.batchNorm with momentum Infinity', (t) => {
  throwsWith(t, () => F.batchNorm(t32([4, 3]), zeros([3], { device }), zeros([3], { device }), null, null, true,
    Infinity, 1e-5), [/batchNorm/, /momentum/, /Infinity/]);
});

test('parity errors: batchNormMergeStats with eps NaN', (t) => {
  throwsWith(t, () => F.batchNormMergeStats(t32([2, 7]), NaN, null, null, 0.1), [/batchNormMergeStats/, /eps/, /NaN/]);
});

test('parity errors: SGD with lr NaN', (t) => {
  throwsWith(t, () => new optim.SGD(new nn.Linear(2, 2).parameters(), { lr: NaN }), [/SGD/, /lr/, /NaN/]);
});

test('parity errors: SGD with momentum Infinity', (t) => {
  throwsWith(t, () => new optim.SGD(new nn.Linear(2, 2).parameters(), { lr: 0.1, momentum: Infinity }),
    [/SGD/, /momentum/, /Infinity/]);
});

test('parity errors: SGD with weightDecay NaN', (t) => {
  throwsWith(t, () => new optim.SGD(new nn.Linear(2, 2).parameters(), { lr: 0.1, weightDecay: NaN }),
    [/SGD/, /weightDecay/, /NaN/]);
});

// ---------------------------------------------------------------- use after dispose

test('parity errors: add on a disposed tensor', (t) => {
  const x = t32([2, 3]);
  x.dispose();
  t.true(x.isReleased);
  throwsWith(t, () => x.add(1), [/add/, /dispose/, shapeRe([2, 3])]);
});

test('parity errors: disposed tensor as the second operand', (t) => {
  const x = t32([2, 3]);
  const y = t32([3, 4]);
  y.dispose();
  throwsWith(t, () => x.matmul(y), [/matmul/, /dispose/, shapeRe([3, 4])]);
});

test('parity errors: toArray on a disposed tensor', (t) => {
  const x = t32([4]);
  x.dispose();
  throwsWith(t, () => x.toArray(), [/toArray/, /dispose/, shapeRe([4])]);
});

test('parity errors: conv2d with a disposed weight', (t) => {
  const w = t32([2, 3, 3, 3]);
  w.dispose();
  throwsWith(t, () => F.conv2d(t32([1, 3, 5, 5]), w), [/conv2d/, /dispose/, shapeRe([2, 3, 3, 3])]);
});

test('parity errors: backward after an input was disposed runs on the graph\'s own references', (t) => {
  const w = tensor(Float32Array.from([1, 2, 3]), { device, requiresGrad: true });
  const x = tensor(Float32Array.from([4, 5, 6]), { device, requiresGrad: true });
  const y = x.mul(w).sum();
  x.dispose();
  y.backward();
  t.deepEqual(Array.from(w.grad!.toArray() as Float32Array), [4, 5, 6], 'the saved input was still there');
  t.is(x.grad, null, 'a released leaf receives no gradient');
  throwsWith(t, () => x.toArray(), [/dispose/, shapeRe([3])]);
});

test('parity errors: dispose twice is harmless', (t) => {
  const x = t32([2]);
  x.dispose();
  t.notThrows(() => x.dispose());
  t.true(x.isReleased);
});
