import type { Backend, Conv2dGeometry, Pool2dGeometry } from '../backend.js';
import { fmt, pair } from '../shape.js';
import { recordOp } from '../autograd.js';
import { empty, type Tensor } from '../tensor.js';
import { expectRank, floatInputs, hasHalf, inFormat as toFormat, viaFloat32 } from './util.js';
import { autocastDtype, castFloat, withoutAutocast } from '../amp/autocast.js';
import { permuteStorage, tagStorage, type MemoryFormat } from '../memory-format.js';

/**
 * Channels-last inputs: where the backend's kernels read NHWC themselves
 * (Backend.nativeChannelsLast: pooling on the CPU and CUDA, the CPU's convolution
 * where oneDNN runs) they
 * get the storage as it is under the op's channels-last name (memory-format.ts,
 * NHWC_OP), with `channelsLast` in the geometry, and write channels-last outputs;
 * elsewhere they compute NCHW on the row-major copy floatInputs lends, and the
 * output goes back to the input's format (one permutation in, one out).
 */
const NHWC_OP = {
  conv2d: 'conv2d (channels-last)', maxPool2d: 'maxPool2d (channels-last)', avgPool2d: 'avgPool2d (channels-last)',
  adaptiveAvgPool2d: 'adaptiveAvgPool2d (channels-last)',
} as const;

/** Whether x is a non-empty channels-last 4D tensor whose backend takes it as it is for `kind`. */
function nativeNhwc(op: string, x: Tensor, kind: 'conv2d' | 'pool2d'): boolean {
  if (x.ndim !== 4 || x.numel === 0) return false;
  const s = x.storage(op);
  return x.memoryFormat === 'channelsLast' && !x.isContiguous() && s.backend.nativeChannelsLast?.(kind) === true;
}
function inFormat(op: string, y: Tensor, format: MemoryFormat): Tensor {
  if (format === 'contiguous') return y;
  const s = y.storage(op);
  if (y.isContiguous(format)) {
    tagStorage(s, y.shape, format); // [N, C, 1, 1]: the same order either way
    return y;
  }
  const out = empty(y.shape, s.dtype, s.device, format);
  permuteStorage(out.storage(op), s, y.shape, 'contiguous', format);
  y.dispose();
  return out;
}

type Pair = number | readonly [number, number];

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
}

function outSize(op: string, size: number, k: number, stride: number, pad: number, dil: number, x: Tensor): number {
  const o = Math.floor((size + 2 * pad - dil * (k - 1) - 1) / stride) + 1;
  if (o < 1) throw new Error(`${op}: output size ${o} is too small for input ${fmt(x.shape)} (kernel ${k}, padding ${pad}, dilation ${dil})`);
  return o;
}

function positive(op: string, name: string, p: [number, number], allowZero = false): [number, number] {
  if (p.some((v) => v < (allowZero ? 0 : 1))) throw new Error(`${op}: ${name} must be ${allowZero ? 'non-negative' : 'positive'}, got [${p}]`);
  return p;
}

export function conv2d(x: Tensor, w: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const low = autocastDtype(x, w, bias); // autocast: in the low-precision dtype
  if (low) return withoutAutocast(() => conv2d(castFloat(x, low), castFloat(w, low), castFloat(bias, low), opts));
  // half inputs: the float32 convolution (float32 accumulation), the result rounded once
  if (hasHalf(x, w, bias)) return viaFloat32('conv2d', [x, w, bias], (x32, w32, b32) => conv2d(x32!, w32!, b32, opts));
  const op = 'conv2d';
  expectRank(op, x, [4]);
  expectRank(op, w, [4], 'weight');
  const nhwc = w.numel > 0 && nativeNhwc(op, x, 'conv2d');
  const backend = floatInputs(nhwc ? NHWC_OP.conv2d : op, x, w, bias);
  const [strideH, strideW] = positive(op, 'stride', pair(op, 'stride', opts.stride ?? 1));
  const [padH, padW] = positive(op, 'padding', pair(op, 'padding', opts.padding ?? 0), true);
  const [dilH, dilW] = positive(op, 'dilation', pair(op, 'dilation', opts.dilation ?? 1));
  const groups = opts.groups ?? 1;
  const [n, c, h, wd] = x.shape;
  const [k, cg, r, s] = w.shape;
  if (!Number.isInteger(groups) || groups < 1 || c % groups || k % groups || cg * groups !== c) {
    throw new Error(`${op}: input ${fmt(x.shape)} and weight ${fmt(w.shape)} do not match with groups=${groups} ` +
      `(expected weight [K, ${c / groups}, R, S] with K divisible by ${groups})`);
  }
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== k)) {
    throw new Error(`${op}: bias ${fmt(bias.shape)} does not match weight ${fmt(w.shape)} (expected [${k}])`);
  }
  const g: Conv2dGeometry = {
    n, c, h, w: wd, k, r, s,
    oh: outSize(op, h, r, strideH, padH, dilH, x), ow: outSize(op, wd, s, strideW, padW, dilW, x),
    strideH, strideW, padH, padW, dilH, dilW, groups,
  };
  const format = x.memoryFormat;
  const wFormat = w.memoryFormat; // read now: w itself is not saved (a cast copy may be released before backward)
  // PyTorch's rule (suggest_memory_format): the output is channels-last when the input or the
  // weight is strictly channels-last; a tensor whose two orders coincide (one channel, 1x1) counts
  // as row-major, so a channels-last model's 1-channel first conv answers row-major, as PyTorch's.
  const strictlyLast = (t: Tensor) => t.memoryFormat === 'channelsLast' && !t.isContiguous();
  const yFormat: MemoryFormat = strictlyLast(x) || strictlyLast(w) ? 'channelsLast' : 'contiguous';
  let y: Tensor;
  if (nhwc) {
    const nop = NHWC_OP.conv2d;
    y = empty([n, k, g.oh, g.ow], 'float32', x.device, 'channelsLast');
    const wk = toFormat(w, 'contiguous'); // the kernel reads the weight [K, C/groups, R, S] row-major
    backend.conv2d(y.handle(nop), x.handle(nop), wk.handle(nop), bias ? bias.handle(nop) : null, { ...g, channelsLast: true });
    if (wk !== w) wk.dispose();
  } else {
    y = empty([n, k, g.oh, g.ow], 'float32', x.device);
    if (y.numel) backend.conv2d(y.handle(op), x.handle(op), w.handle(op), bias ? bias.handle(op) : null, g);
    y = inFormat(op, y, yFormat);
  }
  // The input gradient reads the weight, the weight gradient the input: only those are kept.
  return recordOp(y, op, [x, w, bias ?? null], [x.requiresGrad ? w : null, w.requiresGrad ? x : null],
    (dy, [sw, sx], needs) => {
      // asked again: oneDNN may have been turned off in this thread since the forward
      if (nhwc && backend.nativeChannelsLast?.('conv2d') === true) {
        const nop = NHWC_OP.conv2d;
        const gn = { ...g, channelsLast: true };
        const dyn = toFormat(dy, 'channelsLast'); // a layer after this one may send a row-major dy
        floatInputs(nop, dyn, sw, sx);
        let dx: Tensor | null = null;
        let dw: Tensor | null = null;
        if (needs[0]) {
          dx = empty(x.shape, 'float32', dy.device, 'channelsLast');
          const wk = toFormat(sw!, 'contiguous');
          backend.conv2dBackwardInput(dx.handle(nop), dyn.handle(nop), wk.handle(nop), gn);
          if (wk !== sw) wk.dispose();
        }
        if (needs[1]) {
          dw = empty(w.shape, 'float32', dy.device);
          backend.conv2dBackwardWeight(dw.handle(nop), dyn.handle(nop), sx!.handle(nop), gn);
          dw = inFormat(op, dw, wFormat);
        }
        let db: Tensor | null = null;
        if (needs[2]) {
          // NHWC dy is the row-major matrix [N*OH*OW, K]: its column sums, with no row-major copy
          db = empty([k], 'float32', dy.device);
          backend.sum(db.handle(nop), dyn.handle(nop), 1, n * g.oh * g.ow, k);
        }
        if (dyn !== dy) dyn.dispose();
        return [dx, dw, db];
      }
      floatInputs(op, dy, sw, sx); // row-major copies of channels-last ones
      let dx: Tensor | null = null;
      let dw: Tensor | null = null;
      if (needs[0]) {
        dx = empty(x.shape, 'float32', dy.device);
        backend.conv2dBackwardInput(dx.handle(op), dy.handle(op), sw!.handle(op), g);
        dx = inFormat(op, dx, format);
      }
      if (needs[1]) {
        dw = empty(w.shape, 'float32', dy.device);
        backend.conv2dBackwardWeight(dw.handle(op), dy.handle(op), sx!.handle(op), g);
        dw = inFormat(op, dw, wFormat);
      }
      return [dx, dw, needs[2] ? dy.sum([0, 2, 3]) : null];
    });
}

interface PoolArgs {
  kernelSize: Pair;
  stride?: Pair | null;
  padding?: Pair;
  dilation?: Pair;
  countIncludePad?: boolean;
}

/** Pooling sees [N, C, H, W] (or [C, H, W]) as planes of H x W. */
function poolGeometry(op: string, x: Tensor, a: PoolArgs): Pool2dGeometry {
  expectRank(op, x, [3, 4]);
  const [kh, kw] = positive(op, 'kernelSize', pair(op, 'kernelSize', a.kernelSize));
  const [strideH, strideW] = positive(op, 'stride', pair(op, 'stride', a.stride ?? a.kernelSize));
  const [padH, padW] = positive(op, 'padding', pair(op, 'padding', a.padding ?? 0), true);
  const [dilH, dilW] = positive(op, 'dilation', pair(op, 'dilation', a.dilation ?? 1));
  if (padH * 2 > kh || padW * 2 > kw) {
    throw new Error(`${op}: padding [${padH},${padW}] should be at most half of kernel size [${kh},${kw}]`);
  }
  const h = x.shape[x.ndim - 2];
  const w = x.shape[x.ndim - 1];
  return {
    planes: x.numel / (h * w || 1), h, w,
    oh: outSize(op, h, kh, strideH, padH, dilH, x), ow: outSize(op, w, kw, strideW, padW, dilW, x),
    kh, kw, strideH, strideW, padH, padW, dilH, dilW, countIncludePad: a.countIncludePad ?? true,
  };
}

const pooledShape = (x: Tensor, g: Pool2dGeometry) => [...x.shape.slice(0, -2), g.oh, g.ow];

export function maxPool2d(x: Tensor, kernelSize: Pair,
  opts: { stride?: Pair | null; padding?: Pair; dilation?: Pair } = {}): Tensor {
  const op = 'maxPool2d';
  if (hasHalf(x)) return viaFloat32(op, [x], (x32) => maxPool2d(x32, kernelSize, opts)); // float32 kernels, rounded once
  const g = poolGeometry(op, x, { kernelSize, ...opts });
  if (nativeNhwc(op, x, 'pool2d')) return maxPoolNhwc(x, g);
  const backend = floatInputs(op, x);
  const format = x.memoryFormat;
  let y = empty(pooledShape(x, g), 'float32', x.device);
  // Indices into each row-major H x W plane, whatever the format.
  const indices = empty(y.shape, 'int32', x.device);
  if (y.numel) backend.maxPool2d(y.handle(op), indices.handle(op), x.handle(op), g);
  y = inFormat(op, y, format);
  const rec = recordOp(y, op, [x], [indices], (dy, [idx]) => {
    floatInputs(op, dy);
    const dx = empty(x.shape, 'float32', dy.device);
    backend.maxPool2dBackward(dx.handle(op), dy.handle(op), idx!.handle(op), g);
    return [inFormat(op, dx, format)];
  });
  indices.dispose(); // the node holds its own reference when it needs one
  return rec;
}

/** Max pooling over NHWC storage: indices (flat h*w positions) stored in the output's NHWC order too. */
function maxPoolNhwc(x: Tensor, g0: Pool2dGeometry): Tensor {
  const op = NHWC_OP.maxPool2d;
  const backend = floatInputs(op, x);
  const g: Pool2dGeometry = { ...g0, channelsLast: true, channels: x.shape[1] };
  const y = empty(pooledShape(x, g), 'float32', x.device, 'channelsLast');
  const indices = empty(y.shape, 'int32', x.device, 'channelsLast');
  if (y.numel) backend.maxPool2d(y.handle(op), indices.handle(op), x.handle(op), g);
  const rec = recordOp(y, 'maxPool2d', [x], [indices], (dy, [idx]) => {
    const dyn = toFormat(dy, 'channelsLast');
    floatInputs(op, dyn);
    const dx = empty(x.shape, 'float32', dy.device, 'channelsLast');
    backend.maxPool2dBackward(dx.handle(op), dyn.handle(op), idx!.handle(op), g);
    if (dyn !== dy) dyn.dispose();
    return [dx];
  });
  indices.dispose(); // the node holds its own reference when it needs one
  return rec;
}

export function avgPool2d(x: Tensor, kernelSize: Pair,
  opts: { stride?: Pair | null; padding?: Pair; countIncludePad?: boolean } = {}): Tensor {
  const op = 'avgPool2d';
  if (hasHalf(x)) return viaFloat32(op, [x], (x32) => avgPool2d(x32, kernelSize, opts)); // float32 kernels, rounded once
  const g = poolGeometry(op, x, { kernelSize, ...opts });
  const backend = floatInputs(nativeNhwc(op, x, 'pool2d') ? NHWC_OP[op] : op, x);
  return averagePool(op, backend, x, g);
}

export function adaptiveAvgPool2d(x: Tensor, outputSize: Pair): Tensor {
  const op = 'adaptiveAvgPool2d';
  if (hasHalf(x)) return viaFloat32(op, [x], (x32) => adaptiveAvgPool2d(x32, outputSize)); // float32 kernels, rounded once
  expectRank(op, x, [3, 4]);
  const backend = floatInputs(nativeNhwc(op, x, 'pool2d') ? NHWC_OP[op] : op, x);
  const [oh, ow] = positive(op, 'outputSize', pair(op, 'outputSize', outputSize));
  const h = x.shape[x.ndim - 2];
  const w = x.shape[x.ndim - 1];
  if (h === 0 || w === 0) throw new Error(`${op}: input ${fmt(x.shape)} has an empty spatial dimension`);
  const g: Pool2dGeometry = {
    planes: x.numel / (h * w), h, w, oh, ow, kh: 0, kw: 0, strideH: 0, strideW: 0, padH: 0, padW: 0,
    dilH: 0, dilW: 0, countIncludePad: true,
  };
  return averagePool(op, backend, x, g);
}

/** The average poolings: their gradient needs nothing saved but the geometry. */
function averagePool(op: 'avgPool2d' | 'adaptiveAvgPool2d', backend: Backend, x: Tensor, g: Pool2dGeometry): Tensor {
  if (nativeNhwc(op, x, 'pool2d')) {
    // NHWC storage as it is (the caller's floatInputs lent no copy)
    const nop = NHWC_OP[op];
    const gn: Pool2dGeometry = { ...g, channelsLast: true, channels: x.shape[1] };
    const y = empty(pooledShape(x, gn), 'float32', x.device, 'channelsLast');
    if (y.numel) backend[op](y.handle(nop), x.handle(nop), gn);
    return recordOp(y, op, [x], [], (dy) => {
      const dyn = toFormat(dy, 'channelsLast');
      floatInputs(nop, dyn);
      const dx = empty(x.shape, 'float32', dy.device, 'channelsLast');
      backend[`${op}Backward` as const](dx.handle(nop), dyn.handle(nop), gn);
      if (dyn !== dy) dyn.dispose();
      return [dx];
    });
  }
  const format = x.memoryFormat;
  let y = empty(pooledShape(x, g), 'float32', x.device);
  if (y.numel) backend[op](y.handle(op), x.handle(op), g);
  y = inFormat(op, y, format);
  return recordOp(y, op, [x], [], (dy) => {
    floatInputs(op, dy);
    const dx = empty(x.shape, 'float32', dy.device);
    backend[`${op}Backward` as const](dx.handle(op), dy.handle(op), g);
    return [inFormat(op, dx, format)];
  });
}
