/**
 * float16 / bfloat16 against PyTorch, on the test device (the CPU library; cuda:0 under
 * tools/cuda-emu):
 *  - conversions (fixtures/half-conversions.json): every 16-bit pattern to float32, and
 *    float32 inputs at and around every rounding boundary to each half type, bit for bit
 *    (the CPU library converts 16 lanes at a time, the CUDA one element by element: both
 *    are held to the same bits);
 *  - batch norm on half inputs (fixtures/batchnorm-dtypes.json), below.
 */
import test, { type ExecutionContext } from 'ava';
import { inflateSync } from 'node:zlib';
import '@bagua/kernels';
import { Device, empty, tensor, type HalfDType, type Tensor } from '@bagua/core';
import { loadFixture, testDevice } from '@bagua/testing';

const device = testDevice();

interface Conversions {
  encoding: string;
  bf16Offsets: number[];
  f16Offsets: number[];
  f16Exponents: [number, number];
  counts: Record<'f16ToF32' | 'bf16ToF32' | 'f32ToBf16' | 'f32ToF16', number>;
  f16ToF32: string; bf16ToF32: string; f32ToBf16: string; f32ToF16: string;
}
const conv = loadFixture<Conversions>('half-conversions.json');

function unpack<T extends Uint16Array | Uint32Array>(b64: string, Ctor: { new(b: ArrayBuffer): T }): T {
  const bytes = inflateSync(Buffer.from(b64, 'base64'));
  return new Ctor(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
}

const isNan16 = (h: number, dtype: HalfDType) =>
  dtype === 'bfloat16' ? (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0 : (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isNan32 = (u: number) => ((u >>> 23) & 0xff) === 0xff && (u & 0x7fffff) !== 0;

/** Every output equal to torch's bits, except that a NaN may be any NaN where torch has one. */
function sameBits(t: ExecutionContext, got: ArrayLike<number>, want: ArrayLike<number>, isNan: (v: number) => boolean,
  input: (i: number) => string, what: string): void {
  t.is(got.length, want.length, `${what}: length`);
  let bad = 0;
  for (let i = 0; i < want.length; i++) {
    const ok = isNan(want[i]!) ? isNan(got[i]!) : got[i] === want[i];
    if (!ok && bad++ < 5) t.fail(`${what}: ${input(i)}: got 0x${got[i]!.toString(16)}, torch 0x${want[i]!.toString(16)}`);
  }
  t.is(bad, 0, `${what}: mismatches`);
}

/** A device tensor holding the given raw bits. */
function fromBits(bits: Uint16Array | Float32Array, dtype: 'float32' | HalfDType): Tensor {
  const x = empty([bits.length], dtype, Device.parse(device));
  x.dlpack().fromHost(bits);
  return x;
}

test('conversions: counts as documented', (t) => {
  const [e0, e1] = conv.f16Exponents;
  t.is(conv.encoding, 'zlib-base64-le');
  t.deepEqual(conv.counts, {
    f16ToF32: 65536, bf16ToF32: 65536, f32ToBf16: 65536 * conv.bf16Offsets.length,
    f32ToF16: 2 * (e1 - e0 + 1) * 1024 * conv.f16Offsets.length,
  });
});

for (const dtype of ['float16', 'bfloat16'] as const) {
  const key = dtype === 'float16' ? 'f16ToF32' : 'bf16ToF32';
  test(`conversions: every ${dtype} bit pattern to float32, as torch (${device})`, (t) => {
    const want = unpack(conv[key], Uint32Array);
    const bits = new Uint16Array(65536).map((_, i) => i);
    const x = fromBits(bits, dtype);
    const y = x.to('float32');
    t.is(y.dtype, 'float32');
    const got = new Uint32Array((y.toArray() as Float32Array).buffer);
    sameBits(t, got, want, isNan32, (i) => `${dtype} 0x${i.toString(16)}`, `${dtype} -> float32`);
  });
}

test(`conversions: float32 to bfloat16 at and around every rounding boundary, as torch (${device})`, (t) => {
  const want = unpack(conv.f32ToBf16, Uint16Array);
  const offs = conv.bf16Offsets;
  const inBits = new Uint32Array(65536 * offs.length);
  for (let p = 0, i = 0; p < 65536; p++) for (const o of offs) inBits[i++] = ((p << 16) | o) >>> 0;
  const y = fromBits(new Float32Array(inBits.buffer), 'float32').to('bfloat16');
  t.is(y.dtype, 'bfloat16');
  sameBits(t, y.toArray() as Uint16Array, want, (h) => isNan16(h, 'bfloat16'),
    (i) => `float32 0x${inBits[i]!.toString(16)}`, 'float32 -> bfloat16');
});

test(`conversions: float32 to float16 over the subnormal, normal and overflow ranges, as torch (${device})`, (t) => {
  const want = unpack(conv.f32ToF16, Uint16Array);
  const [e0, e1] = conv.f16Exponents;
  const inBits = new Uint32Array(conv.counts.f32ToF16);
  let i = 0;
  for (let s = 0; s < 2; s++) for (let e = e0; e <= e1; e++) for (let k = 0; k < 1024; k++) {
    for (const o of conv.f16Offsets) inBits[i++] = ((s << 31) | (e << 23) | (k << 13) | o) >>> 0;
  }
  const y = fromBits(new Float32Array(inBits.buffer), 'float32').to('float16');
  sameBits(t, y.toArray() as Uint16Array, want, (h) => isNan16(h, 'float16'),
    (j) => `float32 0x${inBits[j]!.toString(16)}`, 'float32 -> float16');
});

test(`conversions: tensor(data, {dtype}) rounds numbers to nearest even, and to() between the half types (${device})`, (t) => {
  // 1 + 2^-8 is the tie between bfloat16 1 and 1 + 2^-7: even is 1; 1 + 3 * 2^-8 ties up to 1 + 2^-6
  const b = tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8, -0, 3e38, 1e-40, NaN, Infinity], { dtype: 'bfloat16', device });
  t.deepEqual([...(b.toArray() as Uint16Array)], [0x3f80, 0x3f82, 0x8000, 0x7f62, 0x0001, 0x7fc0, 0x7f80]);
  t.is(b.item === undefined, false);
  // float16: 2049 ties between 2048 and 2050 (even mantissa: 2048); 65520 overflows to inf; 2^-25 ties to 0
  const h = tensor([2049, 2051, 65519, 65520, 2 ** -25, 3 * 2 ** -25, 2 ** -24], { dtype: 'float16', device });
  t.deepEqual([...(h.toArray() as Uint16Array)], [0x6800, 0x6802, 0x7bff, 0x7c00, 0x0000, 0x0002, 0x0001]);
  t.is(tensor([0.1], { dtype: 'bfloat16', device }).item(), 0.10009765625);
  // float16 -> bfloat16 goes through float32 exactly: 2049 is not a float16, 2048 and 2050 are
  const hb = tensor([2048, 2050, 65504], { dtype: 'float16', device }).to('bfloat16');
  t.deepEqual([...(hb.toArray() as Uint16Array)], [0x4500, 0x4500, 0x4780]);
  t.throws(() => tensor([1], { dtype: 'int32', device }).to('bfloat16'), { message: /only float32, float16 and bfloat16/ });
});
