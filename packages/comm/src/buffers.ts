/** Helpers shared by the backends to tell buffer kinds apart and stage device memory. */
import type { CommBuffer, DeviceBuffer, HostBuffer } from './process-group.js';

export type DType = DeviceBuffer['dtype'];

/** Small integer codes for dtypes, used in shared-memory descriptors. */
export const DTYPE_CODES: Readonly<Record<DType, number>> = {
  float32: 1,
  float64: 2,
  int32: 3,
  int64: 4,
  uint8: 5,
};

export function isDeviceBuffer(buf: CommBuffer): buf is DeviceBuffer {
  // Typed arrays are the only host form; anything else must honour the DeviceBuffer shape.
  return !ArrayBuffer.isView(buf) && typeof (buf as DeviceBuffer).toHost === 'function';
}

export function hostDType(buf: HostBuffer): DType {
  if (buf instanceof Float32Array) return 'float32';
  if (buf instanceof Float64Array) return 'float64';
  if (buf instanceof Int32Array) return 'int32';
  if (buf instanceof BigInt64Array) return 'int64';
  if (buf instanceof Uint8Array) return 'uint8';
  throw new TypeError(
    `unsupported buffer type ${Object.prototype.toString.call(buf)}: ` +
      'use Float32Array, Float64Array, Int32Array, BigInt64Array or Uint8Array',
  );
}

export function dtypeOf(buf: CommBuffer): DType {
  return isDeviceBuffer(buf) ? buf.dtype : hostDType(buf);
}

export function bytesPerElement(dtype: DType): number {
  return dtype === 'float64' || dtype === 'int64' ? 8 : dtype === 'uint8' ? 1 : 4;
}

export function allocHost(dtype: DType, length: number): HostBuffer {
  switch (dtype) {
    case 'float32':
      return new Float32Array(length);
    case 'float64':
      return new Float64Array(length);
    case 'int32':
      return new Int32Array(length);
    case 'int64':
      return new BigInt64Array(length);
    case 'uint8':
      return new Uint8Array(length);
  }
}
