export { Module, Parameter } from './module.js';
export {
  Sequential, Linear, Conv2d, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, MSELoss, CrossEntropyLoss,
  Identity, Dropout, Conv1d, Conv3d, AvgPool1d, AvgPool3d,
} from './layers.js';
export { LayerNorm, GroupNorm } from './norm.js';
export { ModuleList, ModuleDict } from './containers.js';
export { _BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, type BatchNormOptions } from './batchnorm.js';
