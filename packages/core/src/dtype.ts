/** Element types, with their DLPack codes (kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4). */
export type DType = 'float32' | 'float16' | 'bfloat16' | 'int32' | 'int64' | 'uint8';

export interface DLDataType {
  readonly code: number;
  readonly bits: number;
  readonly lanes: number;
}

export const DLPACK_DTYPES: Readonly<Record<DType, DLDataType>> = {
  float32: { code: 2, bits: 32, lanes: 1 },
  float16: { code: 2, bits: 16, lanes: 1 },
  bfloat16: { code: 4, bits: 16, lanes: 1 },
  int32: { code: 0, bits: 32, lanes: 1 },
  int64: { code: 0, bits: 64, lanes: 1 },
  uint8: { code: 1, bits: 8, lanes: 1 },
};

export function bytesPerElement(dtype: DType): number {
  return DLPACK_DTYPES[dtype].bits / 8;
}

/** The host array type that holds each dtype (half types are held as their raw bits). */
export type HostArray = Float32Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array;

export function hostArray(dtype: DType, numel: number): HostArray {
  switch (dtype) {
    case 'float32': return new Float32Array(numel);
    case 'int32': return new Int32Array(numel);
    case 'int64': return new BigInt64Array(numel);
    case 'uint8': return new Uint8Array(numel);
    case 'float16':
    case 'bfloat16': return new Uint16Array(numel);
  }
}
