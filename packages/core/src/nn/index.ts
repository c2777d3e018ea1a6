export { Module, Parameter } from './module.js';
export {
  Sequential, Linear, Conv2d, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, MSELoss, CrossEntropyLoss,
} from './layers.js';
export { _BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, type BatchNormOptions } from './batchnorm.js';
