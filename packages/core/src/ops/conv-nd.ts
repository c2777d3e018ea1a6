import { fmt } from '../shape.js';
import { recordOp } from '../autograd.js';
import { empty, tensor, type Tensor } from '../tensor.js';
import { avgPool2d, conv2d } from './conv.js';
import { reshape, transpose } from './shape.js';
import { expectRank, floatInputs, hasHalf, viaFloat32 } from './util.js';

type Triple = number | readonly [number, number, number];

export interface Conv1dOptions {
  stride?: number;
  padding?: number;
  dilation?: number;
  groups?: number;
}

export interface Conv3dOptions {
  stride?: Triple;
  padding?: Triple;
  dilation?: Triple;
  groups?: number;
}

function single(op: string, name: string, v: number | readonly number[]): number {
  const x = typeof v === 'number' ? v : v.length === 1 ? v[0] : NaN;
  if (!Number.isInteger(x)) throw new Error(`${op}: ${name} must be an integer or a 1-element list, got ${JSON.stringify(v)}`);
  return x;
}

export function triple(op: string, name: string, v: Triple): [number, number, number] {
  const t = typeof v === 'number' ? [v, v, v] : [...v];
  if (t.length !== 3 || t.some((d) => !Number.isInteger(d))) {
    throw new Error(`${op}: ${name} must be an integer or a list of 3 integers, got ${JSON.stringify(v)}`);
  }
  return t as [number, number, number];
}

function outSize(op: string, size: number, k: number, stride: number, pad: number, dil: number, x: Tensor): number {
  const o = Math.floor((size + 2 * pad - dil * (k - 1) - 1) / stride) + 1;
  if (o < 1) throw new Error(`${op}: output size ${o} is too small for input ${fmt(x.shape)} (kernel ${k}, padding ${pad}, dilation ${dil})`);
  return o;
}

/** PyTorch's F.conv1d on [N, C, L] with weight [K, C/groups, S]: conv2d over [N, C, 1, L]. */
export function conv1d(x: Tensor, w: Tensor, bias?: Tensor | null, opts: Conv1dOptions = {}): Tensor {
  const op = 'conv1d';
  if (hasHalf(x, w, bias)) return viaFloat32(op, [x, w, bias], (x32, w32, b32) => conv1d(x32!, w32!, b32, opts));
  floatInputs(op, x, w, bias);
  expectRank(op, x, [3]);
  expectRank(op, w, [3], 'weight');
  const stride = single(op, 'stride', opts.stride ?? 1);
  const padding = single(op, 'padding', opts.padding ?? 0);
  const dilation = single(op, 'dilation', opts.dilation ?? 1);
  const [n, c, l] = x.shape;
  const [k, cg, s] = w.shape;
  const y = conv2d(reshape(x, [n, c, 1, l]), reshape(w, [k, cg, 1, s]), bias,
    { stride: [1, stride], padding: [0, padding], dilation: [1, dilation], groups: opts.groups ?? 1 });
  return reshape(y, [n, k, y.shape[3]]);
}

/**
 * The depth taps of a 3D window, gathered: for input [B, D, M] and a constant
 * [P, D] matrix A, out[b] = A @ x[b] ([B, P, M]). With 0/1 rows (one 1 per row,
 * or none for padding) it copies depth slices exactly; with 1/k rows it averages
 * them. The gradient is A^T @ dy. One batched GEMM each way, A shared by all b.
 */
function mixDepth(op: string, x: Tensor, a: Float32Array, p: number): Tensor {
  const backend = floatInputs(op, x);
  const [b, d, m] = x.shape;
  const mat = tensor(a, { shape: [p, d], device: x.device });
  const out = empty([b, p, m], 'float32', x.device);
  if (out.numel) backend.gemm(out.handle(op), mat.handle(op), x.handle(op), false, false, p, m, d, 1, 0, d, m, m, b, 0, d * m, p * m);
  const rec = recordOp(out, op, [x], [mat], (dy, [sa]) => {
    const dx = empty([b, d, m], 'float32', dy.device);
    if (dx.numel) backend.gemm(dx.handle(op), sa!.handle(op), dy.handle(op), true, false, d, m, p, 1, 0, d, m, m, b, 0, p * m, d * m);
    return [dx];
  });
  mat.dispose(); // the node holds its own reference when it needs one
  return rec;
}

/**
 * PyTorch's F.conv3d on [N, C, D, H, W] with weight [K, C/groups, KD, R, S], as one
 * conv2d: the KD depth taps of each output depth are gathered next to each input
 * channel ([N * OD, C * KD, H, W], channel c * KD + kd), which is exactly how the
 * weight's memory reads as [K, C/groups * KD, R, S], groups included. The 2D
 * convolution (oneDNN where present) then does all the arithmetic.
 */
export function conv3d(x: Tensor, w: Tensor, bias?: Tensor | null, opts: Conv3dOptions = {}): Tensor {
  const op = 'conv3d';
  if (hasHalf(x, w, bias)) return viaFloat32(op, [x, w, bias], (x32, w32, b32) => conv3d(x32!, w32!, b32, opts));
  floatInputs(op, x, w, bias);
  expectRank(op, x, [5]);
  expectRank(op, w, [5], 'weight');
  const [sd, sh, sw] = triple(op, 'stride', opts.stride ?? 1);
  const [pd, ph, pw] = triple(op, 'padding', opts.padding ?? 0);
  const [dd, dh, dw] = triple(op, 'dilation', opts.dilation ?? 1);
  if (sd < 1 || dd < 1 || pd < 0) throw new Error(`${op}: stride and dilation must be positive and padding non-negative`);
  const groups = opts.groups ?? 1;
  const [n, c, d, h, wd] = x.shape;
  const [k, cg, kd, r, s] = w.shape;
  if (!Number.isInteger(groups) || groups < 1 || c % groups || k % groups || cg * groups !== c) {
    throw new Error(`${op}: input ${fmt(x.shape)} and weight ${fmt(w.shape)} do not match with groups=${groups} ` +
      `(expected weight [K, ${c / groups}, KD, R, S] with K divisible by ${groups})`);
  }
  const od = outSize(op, d, kd, sd, pd, dd, x);
  const sel = new Float32Array(od * kd * d);
  for (let o = 0; o < od; o++) {
    for (let t = 0; t < kd; t++) {
      const src = o * sd - pd + t * dd;
      if (src >= 0 && src < d) sel[(o * kd + t) * d + src] = 1;
    }
  }
  // [N*C, D, HW] -> [N*C, OD*KD, HW] = [N, C, OD, KD*HW] -> [N, OD, C, KD*HW] -> [N*OD, C*KD, H, W]
  const taps = mixDepth(op, reshape(x, [n * c, d, h * wd]), sel, od * kd);
  const cols = reshape(transpose(reshape(taps, [n, c, od, kd * h * wd]), 1, 2), [n * od, c * kd, h, wd]);
  const y2 = conv2d(cols, reshape(w, [k, cg * kd, r, s]), bias,
    { stride: [sh, sw], padding: [ph, pw], dilation: [dh, dw], groups });
  const [, , oh, ow] = y2.shape;
  // conv2d may answer in a half type (autocast): the transpose runs in float32, the result goes back
  const low = y2.dtype;
  const y = reshape(transpose(reshape(low === 'float32' ? y2 : y2.to('float32'), [n, od, k, oh * ow]), 1, 2),
    [n, k, od, oh, ow]);
  return low === 'float32' ? y : y.to(low);
}

/** PyTorch's F.avg_pool1d on [N, C, L] (or [C, L]): avgPool2d over a unit height. */
export function avgPool1d(x: Tensor, kernelSize: number, opts: { stride?: number | null; padding?: number;
  countIncludePad?: boolean } = {}): Tensor {
  const op = 'avgPool1d';
  if (hasHalf(x)) return viaFloat32(op, [x], (x32) => avgPool1d(x32, kernelSize, opts)); // rounded once
  floatInputs(op, x);
  expectRank(op, x, [2, 3]);
  const kk = single(op, 'kernelSize', kernelSize);
  const stride = single(op, 'stride', opts.stride ?? kk);
  const padding = single(op, 'padding', opts.padding ?? 0);
  const lead = x.shape.slice(0, -1);
  const l = x.shape[x.ndim - 1];
  const y = avgPool2d(reshape(x, [...lead, 1, l]), [1, kk],
    { stride: [1, stride], padding: [0, padding], countIncludePad: opts.countIncludePad });
  return reshape(y, [...lead, y.shape[y.ndim - 1]]);
}

/**
 * PyTorch's F.avg_pool3d on [N, C, D, H, W] (or [C, D, H, W]): a box average is
 * separable, so avgPool2d over H and W, then the depth windows averaged by one
 * batched GEMM. The divisor splits too: KD * KH * KW with countIncludePad (no
 * window reaches past the padding), else the product of each axis' valid count.
 */
export function avgPool3d(x: Tensor, kernelSize: Triple, opts: { stride?: Triple | null; padding?: Triple;
  countIncludePad?: boolean } = {}): Tensor {
  const op = 'avgPool3d';
  if (hasHalf(x)) return viaFloat32(op, [x], (x32) => avgPool3d(x32, kernelSize, opts)); // rounded once
  floatInputs(op, x);
  expectRank(op, x, [4, 5]);
  const [kd, kh, kw] = triple(op, 'kernelSize', kernelSize);
  const [sd, sh, sw] = triple(op, 'stride', opts.stride ?? kernelSize);
  const [pd, ph, pw] = triple(op, 'padding', opts.padding ?? 0);
  if ([kd, kh, kw, sd, sh, sw].some((v) => v < 1) || [pd, ph, pw].some((v) => v < 0)) {
    throw new Error(`${op}: kernelSize and stride must be positive and padding non-negative`);
  }
  if (pd * 2 > kd || ph * 2 > kh || pw * 2 > kw) {
    throw new Error(`${op}: padding [${pd},${ph},${pw}] should be at most half of kernel size [${kd},${kh},${kw}]`);
  }
  const includePad = opts.countIncludePad ?? true;
  const lead = x.shape.slice(0, -3);
  const [d, h, wd] = x.shape.slice(-3);
  const planes = x.numel / (d * h * wd || 1);
  const od = outSize(op, d, kd, sd, pd, 1, x);
  const hw = avgPool2d(reshape(x, [planes, d, h, wd]), [kh, kw],
    { stride: [sh, sw], padding: [ph, pw], countIncludePad: includePad });
  const [, , oh, ow] = hw.shape;
  const avg = new Float32Array(od * d);
  for (let o = 0; o < od; o++) {
    const start = o * sd - pd;
    const lo = Math.max(start, 0);
    const hi = Math.min(start + kd, d);
    const div = includePad ? kd : hi - lo;
    for (let i = lo; i < hi; i++) avg[o * d + i] = 1 / div;
  }
  const y = mixDepth(op, reshape(hw, [planes, d, oh * ow]), avg, od);
  return reshape(y, [...lead, od, oh, ow]);
}
