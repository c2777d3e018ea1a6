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
import { Device, empty, F, nn, tensor, toFloats, type DType, type HalfDType, type Tensor } from '@bagua/core';
import { loadFixture, randn, testDevice } from '@bagua/testing';

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

// ---------------------------------------------------------------- batch norm on half inputs
//
// Tolerances, from the dtype's unit roundoff u (2^-8 bfloat16, 2^-11 float16):
//  - outputs and input gradients (in the half dtype): both sides compute in float32 or
//    wider and round once to the half type, each within u |v| of the exact value; two
//    such roundings may land one ulp apart (<= 2u |v|), so rtol = 2u, with an atol of
//    2u * 2^-5 * max|v| for values near 0, where the float32 arithmetic before the rounding
//    (a few 2^-24 of the terms' size) can decide it;
//  - weight / bias gradients and running statistics in float32: sums of exactly known
//    half values accumulated in float32 / double on both sides: 2^-20 of the sum of the
//    terms' magnitudes (as parity-batchnorm), and 1e-5 relative for running statistics;
//    in a half dtype (same-dtype modules) they are rounded once more: 2u relative;
//  - where torch's bfloat16 kernels ran their all-bfloat16 path (no float32 parameter or
//    buffer: "torchHalfPath"), torch rounds its intermediates (the statistics, x - mean) to
//    bfloat16, an error of about u |mean| invstd |w| on every element whatever its size: against
//    torch the atol is then 2u max|v| (|mean| invstd <= max|y| for these inputs), and the same
//    step is held to the float64 reference at the tolerances above.

interface DTensor { shape: number[]; dtype: 'float32' | HalfDType; b64: string }
interface BnStep {
  training: boolean; input: DTensor; gradOutput: DTensor; output: DTensor; gradInput: DTensor;
  gradWeight: DTensor | null; gradBias: DTensor | null; runningMean: DTensor | null; runningVar: DTensor | null;
  float64?: { output: DTensor; gradInput: DTensor; gradWeight: DTensor | null; gradBias: DTensor | null };
}
interface BnCase {
  name: string; dtype: HalfDType; module: 'BatchNorm1d' | 'BatchNorm2d' | 'BatchNorm3d'; numFeatures: number;
  options: { eps: number; momentum: number | null; affine: boolean; trackRunningStats: boolean };
  paramDtype: 'float32' | HalfDType; reference: 'torch' | 'float64'; torchHalfPath: boolean;
  initial: Record<'weight' | 'bias' | 'runningMean' | 'runningVar', DTensor | null>;
  steps: BnStep[];
}
const bnfx = loadFixture<{ expectedCounts: { modules: number }; modules: BnCase[] }>('batchnorm-dtypes.json');

const UNIT_ROUNDOFF: Record<'float32' | HalfDType, number> = { bfloat16: 2 ** -8, float16: 2 ** -11, float32: 2 ** -24 };

function rawOf(d: DTensor): Float32Array | Uint16Array {
  const b = Buffer.from(d.b64, 'base64');
  const buf = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
  return d.dtype === 'float32' ? new Float32Array(buf) : new Uint16Array(buf);
}
const valuesOf = (d: DTensor): Float32Array => toFloats(d.dtype, rawOf(d));
function fxTensor(d: DTensor, dev: string, requiresGrad = false): Tensor {
  const x = empty(d.shape, d.dtype, Device.parse(dev));
  x.dlpack().fromHost(rawOf(d));
  if (requiresGrad) x.requiresGrad = true;
  return x;
}

/** |got - want| <= atol + rtol |want| (plus scale-based slack), got's dtype checked first. */
function closeTo(t: ExecutionContext, got: Tensor | null | undefined, want: DTensor, what: string,
  o: { rtol: number; atolOfMax?: number; scale?: Float64Array; scaleRtol?: number; dtype?: string }): void {
  if (!got) return void t.fail(`${what}: missing`);
  t.is(got.dtype, (o.dtype ?? want.dtype) as DType, `${what}: dtype`);
  t.deepEqual(got.shape, want.shape, `${what}: shape`);
  const g = toFloats(got.dtype, got.toArray()), w = valuesOf(want);
  let max = 0;
  for (const v of w) max = Math.max(max, Math.abs(v));
  const atol = (o.atolOfMax ?? 0) * max + 1e-30;
  const per = w.length / (o.scale?.length ?? 1);
  let worst = 0, at = -1;
  for (let i = 0; i < w.length; i++) {
    const tol = atol + o.rtol * Math.abs(w[i]!) + (o.scale ? o.scale[Math.floor(i / per) % o.scale.length]! * o.scaleRtol! : 0);
    const r = Math.abs(g[i]! - w[i]!) / tol;
    if (!(r <= worst)) { worst = r; at = i; }
  }
  if (!(worst <= 1)) t.fail(`${what}: element ${at}: got ${g[at]}, expected ${w[at]} (${worst.toFixed(2)} x the tolerance)`);
  else t.pass();
}

/** Per channel sum |dy| |x - mean| invstd and sum |dy| (the terms of grad weight / bias). */
function termScales(x: Float32Array, dy: Float32Array, shape: number[], mean: ArrayLike<number>, v: ArrayLike<number>,
  eps: number): { weight: Float64Array; bias: Float64Array } {
  const [n, c] = shape as [number, number];
  const inner = x.length / (n * c);
  const weight = new Float64Array(c), bias = new Float64Array(c);
  for (let ni = 0; ni < n; ni++) for (let ch = 0; ch < c; ch++) for (let k = 0; k < inner; k++) {
    const i = (ni * c + ch) * inner + k;
    weight[ch] += Math.abs(dy[i]!) * Math.abs(x[i]! - mean[ch]!) / Math.sqrt(v[ch]! + eps);
    bias[ch] += Math.abs(dy[i]!);
  }
  return { weight, bias };
}
function batchMoments(x: Float32Array, shape: number[]): { mean: Float64Array; v: Float64Array } {
  const [n, c] = shape as [number, number];
  const inner = x.length / (n * c);
  const mean = new Float64Array(c), v = new Float64Array(c);
  for (let ni = 0; ni < n; ni++) for (let ch = 0; ch < c; ch++) for (let k = 0; k < inner; k++) mean[ch] += x[(ni * c + ch) * inner + k]!;
  for (let ch = 0; ch < c; ch++) mean[ch] /= n * inner;
  for (let ni = 0; ni < n; ni++) for (let ch = 0; ch < c; ch++) for (let k = 0; k < inner; k++) v[ch] += (x[(ni * c + ch) * inner + k]! - mean[ch]!) ** 2;
  for (let ch = 0; ch < c; ch++) v[ch] /= n * inner;
  return { mean, v };
}

test('batchnorm-dtypes.json: every case present (2 dtypes x 3 ranks x affine x momentum x running stats, + same-dtype)', (t) => {
  t.is(bnfx.modules.length, 56);
  t.is(bnfx.expectedCounts.modules, 56);
  for (const c of bnfx.modules) t.is(c.steps.length, 3, c.name);
});

for (const c of bnfx.modules) {
  test(`batchnorm ${c.name} (${c.reference} reference, ${device})`, (t) => {
    const m = new nn[c.module](c.numFeatures, c.options);
    const { affine, trackRunningStats: track, eps } = c.options;
    const state: Record<string, Tensor> = { ...m.stateDict() };
    for (const k of ['weight', 'bias', 'runningMean', 'runningVar'] as const) {
      const v = c.initial[k];
      if (v) state[k] = fxTensor(v, 'cpu');
    }
    m.loadStateDict(state);
    if (device !== 'cpu') m.to(device);
    if (affine) t.is(m.weight!.dtype, c.paramDtype, 'parameters in their dtype');
    const u = UNIT_ROUNDOFF[c.dtype], up = UNIT_ROUNDOFF[c.paramDtype];
    const half = { rtol: 2 * u, atolOfMax: 2 * u * 2 ** -5, dtype: c.dtype };
    const vsTorch = c.torchHalfPath ? { ...half, atolOfMax: 2 * u } : half;
    let prevMean = c.initial.runningMean, prevVar = c.initial.runningVar;
    c.steps.forEach((s, i) => {
      const label = `${c.name} step ${i} (${s.training ? 'train' : 'eval'})`;
      m.train(s.training);
      m.zeroGrad();
      const x = fxTensor(s.input, device, true);
      const y = m.forward(x);
      closeTo(t, y, s.output, `${label} output`, vsTorch);
      y.backward(fxTensor(s.gradOutput, device));
      closeTo(t, x.grad, s.gradInput, `${label} grad input`, vsTorch);
      if (c.torchHalfPath) {
        t.truthy(s.float64, 'float64 reference present');
        closeTo(t, y, s.float64!.output, `${label} output (float64 reference)`, half);
        closeTo(t, x.grad, s.float64!.gradInput, `${label} grad input (float64 reference)`, half);
      }
      if (affine) {
        const xv = valuesOf(s.input), gv = valuesOf(s.gradOutput);
        const batch = !s.training && track ? { mean: valuesOf(prevMean!), v: valuesOf(prevVar!) } : batchMoments(xv, s.input.shape);
        const sc = termScales(xv, gv, s.input.shape, batch.mean, batch.v, eps);
        const o = { rtol: c.paramDtype === 'float32' ? 0 : 2 * up, scaleRtol: 2 ** -20, dtype: c.paramDtype };
        const ref = c.torchHalfPath ? s.float64! : s; // torch's own all-bfloat16 sums are rounded too
        closeTo(t, m.weight?.grad, ref.gradWeight!, `${label} grad weight`, { ...o, scale: sc.weight });
        closeTo(t, m.bias?.grad, ref.gradBias!, `${label} grad bias`, { ...o, scale: sc.bias });
      }
      if (track) {
        // torch's all-bfloat16 update rounds (1 - f) running and f stat apart: atol 2u max|v| as above
        const o = c.paramDtype === 'float32' ? { rtol: 1e-5, atolOfMax: 1e-6, dtype: 'float32' }
          : { rtol: 2 * up, atolOfMax: 2 * up * (c.torchHalfPath ? 1 : 2 ** -5), dtype: c.paramDtype };
        closeTo(t, m.runningMean, s.runningMean!, `${label} runningMean`, o);
        closeTo(t, m.runningVar, s.runningVar!, `${label} runningVar`, o);
        prevMean = s.runningMean;
        prevVar = s.runningVar;
      }
    });
  });
}

test(`to(dtype) is differentiable: the gradient comes back in the input's dtype (${device})`, (t) => {
  const x = tensor([1.5, -2.25, 3], { device, requiresGrad: true });
  const y = x.to('bfloat16');
  t.is(y.dtype, 'bfloat16');
  y.backward(tensor([0.5, 1 + 2 ** -8, -4], { dtype: 'bfloat16', device }));
  t.is(x.grad!.dtype, 'float32');
  t.deepEqual([...(x.grad!.toArray() as Float32Array)], [0.5, 1, -4]); // 1 + 2^-8 was rounded (to even) on the way in
  const h = tensor([1, 2], { dtype: 'float16', device, requiresGrad: true });
  const f = h.to('float32');
  f.backward(tensor([0.1, 3], { device }));
  t.is(h.grad!.dtype, 'float16');
  t.deepEqual([...toFloats('float16', h.grad!.toArray())], [Math.fround(0.0999755859375), 3]);
});

// ---------------------------------------------------------------- other ops on half inputs
//
// fixtures/ops-dtypes.json. Ours: no half kernel, the float32 op on the inputs cast to float32
// and the result rounded once (core's viaFloat32): within u |v| of the exact value plus
// float32 accumulation (~2^-24 of the terms), so against the float64 reference rtol 2u and
// atol 2u * 2^-5 * max|v|, as for batch norm. torch's own bfloat16 CPU kernels round partial
// results to bfloat16 (measured: up to 1.6 bfloat16 ulps of max|v| on a 33-term matmul), so
// against torch the atol is 2u * max|v|; every torch case is also held to its float64
// reference at the tight tolerance.

interface OpCase {
  name: string; dtype: HalfDType; op: string;
  inputs: Record<string, DTensor | { shape: number[]; dtype: 'int32'; data: number[] }>;
  attrs: Record<string, unknown>; output: DTensor; gradOutput: DTensor; grads: Record<string, DTensor>;
  reference: 'torch' | 'float64';
  float64?: { output: DTensor; grads: Record<string, DTensor> };
}
const opfx = loadFixture<{ expectedCounts: { cases: number }; cases: OpCase[] }>('ops-dtypes.json');

function runOp(c: OpCase, a: Record<string, Tensor>): Tensor {
  const at = c.attrs as { dims?: number[] | null; keepDim?: boolean; stride?: number; padding?: number; reduction?: 'mean' };
  switch (c.op) {
    case 'add': return F.add(a.a!, a.b!);
    case 'sub': return F.sub(a.a!, a.b!);
    case 'mul': return F.mul(a.a!, a.b!);
    case 'div': return F.div(a.a!, a.b!);
    case 'neg': return F.neg(a.x!);
    case 'relu': return F.relu(a.x!);
    case 'sum': return F.sum(a.x!, at.dims ?? undefined, at.keepDim);
    case 'mean': return F.mean(a.x!, at.dims ?? undefined, at.keepDim);
    case 'matmul': return F.matmul(a.a!, a.b!);
    case 'linear': return F.linear(a.x!, a.w!, a.b);
    case 'conv2d': return F.conv2d(a.x!, a.w!, a.b, { stride: at.stride, padding: at.padding });
    case 'mseLoss': return F.mseLoss(a.input!, a.target!, { reduction: at.reduction });
    case 'crossEntropy': return F.crossEntropy(a.input!, a.target!, { reduction: at.reduction });
    default: throw new Error(`unknown op ${c.op}`);
  }
}

test('ops-dtypes.json: 14 ops in each half dtype', (t) => {
  t.is(opfx.cases.length, 28);
  t.is(opfx.expectedCounts.cases, 28);
});

for (const c of opfx.cases) {
  test(`op ${c.name} (${c.reference} reference, ${device})`, (t) => {
    const args: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(c.inputs)) {
      args[k] = v.dtype === 'int32'
        ? tensor(Int32Array.from((v as { data: number[] }).data), { shape: v.shape, dtype: 'int32', device })
        : fxTensor(v as DTensor, device, true);
    }
    const y = runOp(c, args);
    const u = UNIT_ROUNDOFF[c.dtype];
    const tight = { rtol: 2 * u, atolOfMax: 2 * u * 2 ** -5, dtype: c.dtype };
    const vsTorch = c.reference === 'torch' ? { ...tight, atolOfMax: 2 * u } : tight;
    closeTo(t, y, c.output, `${c.name} output`, vsTorch);
    if (c.reference === 'torch') closeTo(t, y, c.float64!.output, `${c.name} output (float64 reference)`, tight);
    y.backward(fxTensor(c.gradOutput, device));
    for (const [k, g] of Object.entries(c.grads)) {
      closeTo(t, args[k]!.grad, g, `${c.name} grad ${k}`, vsTorch);
      if (c.reference === 'torch') closeTo(t, args[k]!.grad, c.float64!.grads[k]!, `${c.name} grad ${k} (float64 reference)`, tight);
    }
  });
}

test(`half gradients accumulate into a leaf in its dtype (${device})`, (t) => {
  const x = tensor([1, 2, 3], { dtype: 'bfloat16', device, requiresGrad: true });
  const y = F.add(F.mul(x, 3), F.mul(x, x)); // two paths to x: the gradients add
  F.sum(y).backward();
  t.is(x.grad!.dtype, 'bfloat16');
  t.deepEqual([...toFloats('bfloat16', x.grad!.toArray())], [5, 7, 9]);
  // mixed: bfloat16 with float32 promotes to float32, as PyTorch does
  const f = tensor([0.5, 0.25, 2], { device });
  t.is(F.add(x, f).dtype, 'float32');
  t.is(F.matmul(tensor([[1, 2]], { dtype: 'float16', device }), tensor([[3], [4]], { dtype: 'float16', device })).item(), 11);
});

// ---------------------------------------------------------------- half kernels = float32 kernels on the widened values
//
// The half kernels are the float32 ones with other loads and stores (one source), so on the
// same values (every half value is a float32) they must give the float32 kernels' statistics
// and sums bit for bit, and their outputs rounded once. Larger shapes than the fixtures, so
// that the CUDA kernels split channels over several blocks (and rows over splits) and merge
// their partials (under tools/cuda-emu with BAGUA_CUDA_EMU_SMS=132, as test:asan runs it).
// One exception: the CPU library reads bfloat16 32 at a time as even / odd lanes (a shift
// or a mask each, no shuffles), so its float lane sums group the terms differently from the
// float32 code: there records and sums agree to 2^-20 (relative, and of the largest value)
// instead of bit for bit; outputs stay exact.
for (const dtype of ['bfloat16', 'float16'] as const) {
  for (const shape of [[64, 8, 40, 40], [2048, 64], [33, 5, 7, 3]]) {
    test(`${dtype} batch-norm kernels equal the float32 ones on the same values: [${shape}] (${device})`, (t) => {
      const numel = shape.reduce((a, b) => a * b, 1);
      const c = shape[1]!;
      const xh = tensor(randn(numel, 5, 0.5, 2), { shape, device }).to(dtype);
      const dyh = tensor(randn(numel, 6), { shape, device }).to(dtype);
      const xw = xh.to('float32'), dyw = dyh.to('float32');
      const bits = (x: Tensor) => [...new Uint32Array((x.toArray() as Float32Array).buffer)];
      const regrouped = device === 'cpu' && dtype === 'bfloat16';
      const same = (a: Tensor, b: Tensor, what: string) => {
        if (!regrouped) return t.deepEqual(bits(a), bits(b), what);
        const av = a.toArray() as Float32Array, bv = b.toArray() as Float32Array;
        let max = 0;
        for (const v of bv) max = Math.max(max, Math.abs(v));
        const bad = av.findIndex((v, i) => !(Math.abs(v - bv[i]!) <= 2 ** -20 * (Math.abs(bv[i]!) + max)));
        t.is(bad, -1, `${what}${bad >= 0 ? `: element ${bad}: ${av[bad]} vs ${bv[bad]}` : ''}`);
      };
      same(F.batchNormStats(xh, 7), F.batchNormStats(xw, 7), 'stats records');
      const shift = tensor(randn(c, 8), { device });
      same(F.batchNormStatsSums(xh, shift, 3, 1, 7), F.batchNormStatsSums(xw, shift, 3, 1, 7), 'sums records');
      const { mean, invstd, count } = F.batchNormMergeStats(F.batchNormStats(xw), 1e-5, null, null, 0);
      const w = tensor(randn(c, 9, 1, 0.2), { device }), b = tensor(randn(c, 10), { device });
      const y = F.batchNormElemt(xh, mean, invstd, w, b);
      t.is(y.dtype, dtype);
      t.deepEqual([...(y.toArray() as Uint16Array)], [...(F.batchNormElemt(xw, mean, invstd, w, b).to(dtype).toArray() as Uint16Array)],
        'elemt: the float32 result rounded once');
      const rh = F.batchNormBackwardReduce(dyh, xh, mean, invstd, true), rw = F.batchNormBackwardReduce(dyw, xw, mean, invstd, true);
      same(rh.sums, rw.sums, 'backward sums');
      same(rh.gradWeight!, rw.gradWeight!, 'grad weight');
      const dx = F.batchNormBackwardElemt(dyh, xh, mean, invstd, w, rw.sums, count);
      t.is(dx.dtype, dtype);
      t.deepEqual([...(dx.toArray() as Uint16Array)],
        [...(F.batchNormBackwardElemt(dyw, xw, mean, invstd, w, rw.sums, count).to(dtype).toArray() as Uint16Array)], 'backward elemt');
    });
  }
}
