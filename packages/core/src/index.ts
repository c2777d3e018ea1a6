export { type DType, type DLDataType, type HostArray, DLPACK_DTYPES, bytesPerElement, hostArray } from './dtype.js';
export { Device, DLPACK_DEVICE_CODES, type DeviceName, type DeviceType } from './device.js';
export {
  registerBackend, getBackend, hasBackend, type Backend, type Handle, type Conv2dGeometry, type Pool2dGeometry,
  type BinaryOp, type UnaryOp,
} from './backend.js';
export { Generator, manualSeed, defaultGenerator } from './random.js';
export { fmt as formatShape, numelOf, type Shape } from './shape.js';
export {
  Tensor, Storage, empty, tensor, zeros, ones, full, randn, rand, noGrad, isGradEnabled, recordOp,
  type GradNode, type TensorOptions,
} from './tensor.js';
export * as F from './ops/index.js';
export * as nn from './nn/index.js';
export * as optim from './optim/index.js';
