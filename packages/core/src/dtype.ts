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

/** The 16-bit float dtypes, held on the host as raw bits (Uint16Array). */
export type HalfDType = 'float16' | 'bfloat16';
export function isHalfDType(dtype: DType): dtype is HalfDType {
  return dtype === 'float16' || dtype === 'bfloat16';
}
/** Dtypes that can hold gradients. */
export function isFloatDType(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float16' || dtype === 'bfloat16';
}
export function isDType(v: unknown): v is DType {
  return typeof v === 'string' && Object.hasOwn(DLPACK_DTYPES, v);
}

// Host conversions, bit for bit those of the kernels (native/include/bagua_half.h): a
// JavaScript number is rounded to float32 first, then to the half type, nearest even
// (as PyTorch builds a half tensor from Python floats: double -> float -> half).
const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

function float32Bits(x: number): number {
  f32Scratch[0] = x;
  return u32Scratch[0]!;
}
function bitsFloat32(u: number): number {
  u32Scratch[0] = u >>> 0;
  return f32Scratch[0]!;
}

export function floatToBf16Bits(x: number): number {
  const u = float32Bits(x);
  if ((u & 0x7fffffff) >>> 0 > 0x7f800000) return 0x7fc0;
  return Math.floor((u + 0x7fff + ((u >>> 16) & 1)) / 65536) & 0xffff;
}

export function bf16BitsToFloat(h: number): number {
  return bitsFloat32((h & 0xffff) * 65536);
}

export function floatToF16Bits(x: number): number {
  const u = float32Bits(x);
  const sign = (u >>> 16) & 0x8000;
  const a = (u & 0x7fffffff) >>> 0;
  let r: number;
  if (a >= 0x477ff000) r = a > 0x7f800000 ? 0x7e00 : 0x7c00;
  else if (a >= 0x38800000) {
    const reb = a - ((127 - 15) << 23);
    r = Math.floor((reb + 0xfff + ((reb >>> 13) & 1)) / 8192);
  } else {
    // below the normal range: multiples of 2^-24, rounded half to even
    const m = bitsFloat32(a) * 2 ** 24;
    const fl = Math.floor(m);
    const d = m - fl;
    r = d > 0.5 || (d === 0.5 && (fl & 1) === 1) ? fl + 1 : fl;
  }
  return r | sign;
}

export function f16BitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  if (e === 0) return sign * m * 2 ** -24;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** A half tensor's raw bits as numbers (float32 for float32 data): what toArray() holds, decoded. */
export function toFloats(dtype: DType, data: HostArray): Float32Array {
  if (dtype === 'float32') return data as Float32Array;
  if (!isHalfDType(dtype)) throw new Error(`toFloats: ${dtype} is not a floating-point dtype`);
  const bits = data as Uint16Array;
  const out = new Float32Array(bits.length);
  const dec = dtype === 'bfloat16' ? bf16BitsToFloat : f16BitsToFloat;
  for (let i = 0; i < bits.length; i++) out[i] = dec(bits[i]!);
  return out;
}

/** Numbers as the host array of a dtype; half types rounded to nearest even. */
export function fromFloats(dtype: HalfDType, values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  const enc = dtype === 'bfloat16' ? floatToBf16Bits : floatToF16Bits;
  for (let i = 0; i < values.length; i++) out[i] = enc(values[i]!);
  return out;
}
