export { add, sub, mul, div, neg, relu, exp, log, sqrt, affine, expand, addInPlace } from './elementwise.js';
export { reshape, flatten, transpose, clone, to, contiguous } from './shape.js';
export { sum, mean, sumTo } from './reduce.js';
export { matmul, linear } from './linalg.js';
export { softmax, logSoftmax } from './softmax.js';
export { conv2d, maxPool2d, avgPool2d, adaptiveAvgPool2d, type Conv2dOptions } from './conv.js';
export {
  batchNorm, batchNormStats, batchNormMergeStats, batchNormStatsSums, batchNormMergeSums, batchNormElemt,
  batchNormBackwardReduce, batchNormBackwardElemt, batchNormInvstd, bnLayout, bnGradInDtype, type MergedStats,
  type BackwardSums,
} from './batchnorm.js';
export { mseLoss, nllLoss, crossEntropy, type Reduction } from './loss.js';
export { layerNorm, groupNorm } from './norm.js';
export { dropout } from './dropout.js';
export { conv1d, conv3d, avgPool1d, avgPool3d, type Conv1dOptions, type Conv3dOptions } from './conv-nd.js';
