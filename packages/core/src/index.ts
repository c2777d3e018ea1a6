export { type DType, type DLDataType, type HostArray, DLPACK_DTYPES, bytesPerElement, hostArray } from './dtype.js';
export {
  type HalfDType, isHalfDType, isFloatDType, isDType, floatToBf16Bits, bf16BitsToFloat, floatToF16Bits, f16BitsToFloat,
  toFloats, fromFloats,
} from './dtype.js';
export { Device, DLPACK_DEVICE_CODES, type DeviceName, type DeviceLike, type DeviceType } from './device.js';
export {
  registerBackend, getBackend, hasBackend, type Backend, type Handle, type Conv2dGeometry, type Pool2dGeometry,
  type BinaryOp, type UnaryOp,
} from './backend.js';
export { Generator, manualSeed, defaultGenerator } from './random.js';
export { fmt as formatShape, numelOf, type Shape } from './shape.js';
export { type MemoryFormat, MEMORY_FORMATS } from './memory-format.js';
export {
  Tensor, empty, tensor, zeros, ones, full, randn, rand, type ExportedTensor, type TensorOptions, type HostArrayOf, type ToArrayOptions,
} from './tensor.js';
export { noGrad, isGradEnabled, recordOp, backwardCount, GradNode, type BackwardFn, type BackwardOptions } from './autograd.js';
export { scope, endStep } from './lifetime.js';
export * as amp from './amp/index.js';
export { autocast, isAutocastEnabled, GradScaler, type GradScalerOptions } from './amp/index.js';
export { registerGradReadyHook, onBackwardStart, type HookHandle, type GradReadyHook, type BackwardStart } from './hooks.js';
export { Storage, memoryStats, emptyCache, resetPeakMemoryStats, type MemoryStats } from './memory.js';
export { setNumThreads, getNumThreads } from './threads.js';
export * as F from './ops/index.js';
export * as nn from './nn/index.js';
export * as optim from './optim/index.js';
export * as data from './data/index.js';
export * as serialize from './serialize/index.js';
