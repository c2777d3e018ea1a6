/**
 * autocast, in the manner of torch.autocast: inside `autocast(device, dtype, fn)`, ops on
 * tensors of that device type choose their precision themselves:
 *  - matmul, linear, conv2d run in the low-precision dtype (float32 inputs and weights cast
 *    to it, recorded, so gradients reach float32 weights in float32): PyTorch's
 *    "lower precision" list;
 *  - the losses (mseLoss, nllLoss, crossEntropy) run in float32 (half inputs cast up):
 *    PyTorch's "float32" list;
 *  - everything else runs in its inputs' dtype: batch norm on a half input then takes
 *    PyTorch's mixed rule (float32 statistics, weight and running statistics).
 * fn runs synchronously; autocast regions nest (the innermost wins) and end when fn returns
 * or throws.
 */
import { Device, type DeviceType } from '../device.js';
import { type DType, type HalfDType, isFloatDType, isHalfDType } from '../dtype.js';
import { cast } from '../ops/shape.js';
import type { Tensor } from '../tensor.js';

interface AutocastState {
  readonly deviceType: DeviceType;
  readonly dtype: HalfDType;
}

let current: AutocastState | null = null;

/**
 * Runs fn with autocast on for tensors of `device`'s type ('cpu', 'cuda', or a device such as
 * 'cuda:0'), in `dtype` (float16 or bfloat16; PyTorch's defaults: bfloat16 on the CPU,
 * float16 on CUDA). Returns fn's result.
 */
export function autocast<T>(device: string | Device, dtype: HalfDType | undefined, fn: () => T): T {
  const type: DeviceType = device instanceof Device ? device.type
    : device === 'cpu' || device === 'cuda' ? device : Device.parse(device).type;
  const d = dtype ?? (type === 'cpu' ? 'bfloat16' : 'float16');
  if (!isHalfDType(d)) throw new Error(`autocast: dtype must be 'float16' or 'bfloat16', got ${String(dtype)}`);
  if (typeof fn !== 'function') throw new Error('autocast: expected a function to run');
  const prev = current;
  current = { deviceType: type, dtype: d };
  try {
    const out = fn();
    if (out instanceof Promise) {
      throw new Error('autocast: fn returned a Promise; autocast covers synchronous code only (await outside it)');
    }
    return out;
  } finally {
    current = prev;
  }
}

/** Whether autocast is on (for tensors of `deviceType`, when given). */
export function isAutocastEnabled(deviceType?: DeviceType): boolean {
  return current !== null && (deviceType === undefined || current.deviceType === deviceType);
}

/** @internal The low-precision dtype for an op on these tensors, or null outside autocast (or on another device type). */
export function autocastDtype(...ts: readonly (Tensor | null | undefined)[]): HalfDType | null {
  if (current === null) return null;
  for (const t of ts) if (t && !t.isReleased && t.device.type === current.deviceType) return current.dtype;
  return null;
}

/** @internal Runs fn with autocast off: an op that cast its inputs computes as it is. */
export function withoutAutocast<T>(fn: () => T): T {
  const prev = current;
  current = null;
  try {
    return fn();
  } finally {
    current = prev;
  }
}

/** @internal A float tensor in `dtype` (a recorded cast; integer tensors and null as they are). */
export function castFloat<T extends Tensor | null | undefined>(t: T, dtype: DType): T {
  if (!t || !isFloatDType(t.dtype) || t.dtype === dtype) return t;
  return cast(t, dtype) as T;
}
