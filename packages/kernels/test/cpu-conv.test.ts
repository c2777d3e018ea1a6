/**
 * The CPU conv2d and pooling kernels, called through the Backend, against plain-JS reference
 * implementations in double precision (tolerances as in cpu-kernels.test.ts).
 */
import test from 'ava';
import type { Conv2dGeometry, Pool2dGeometry } from '@bagua/core';
import { convGeom, randn, skipOrFail } from '@bagua/testing';
import { cpuBackend as be, cpuInfo, useOneDnn } from '../src/index.js';
import { packConv2d, packPool2d } from '../src/geometry.js';
import { close, closeScaled, F } from './cpu-helpers.js';

// ------------------------------------------------------------------ conv2d


/** Visits every (n, k, oy, ox, ci, ky, kx) with an in-bounds input position. */
function convVisit(g: Conv2dGeometry, f: (yi: number, xi: number, wi: number) => void): void {
  const cg = g.c / g.groups, kg = g.k / g.groups;
  for (let n = 0; n < g.n; n++) {
    for (let k = 0; k < g.k; k++) {
      const grp = Math.floor(k / kg);
      for (let oy = 0; oy < g.oh; oy++) {
        for (let ox = 0; ox < g.ow; ox++) {
          const yi = ((n * g.k + k) * g.oh + oy) * g.ow + ox;
          for (let ci = 0; ci < cg; ci++) {
            for (let ky = 0; ky < g.r; ky++) {
              const iy = oy * g.strideH - g.padH + ky * g.dilH;
              if (iy < 0 || iy >= g.h) continue;
              for (let kx = 0; kx < g.s; kx++) {
                const ix = ox * g.strideW - g.padW + kx * g.dilW;
                if (ix < 0 || ix >= g.w) continue;
                const xi = ((n * g.c + grp * cg + ci) * g.h + iy) * g.w + ix;
                const wi = ((k * cg + ci) * g.r + ky) * g.s + kx;
                f(yi, xi, wi);
              }
            }
          }
        }
      }
    }
  }
}

const convCases: [string, Conv2dGeometry][] = [
  ['3x3 pad 1', convGeom(2, 3, 6, 5, 4, 3, 3, { pad: [1, 1] })],
  ['stride, pad, dilation, groups', convGeom(2, 4, 9, 8, 6, 3, 2, { stride: [2, 1], pad: [1, 2], dil: [1, 2], groups: 2 })],
  ['depthwise stride 2', convGeom(1, 6, 7, 7, 6, 3, 3, { stride: [2, 2], pad: [1, 1], groups: 6 })],
  ['pointwise 1x1', convGeom(3, 5, 4, 6, 7, 1, 1)],
  ['1x1 stride 2', convGeom(2, 3, 5, 5, 2, 1, 1, { stride: [2, 2] })],
  ['wide 5x5 kernel, large pad', convGeom(1, 2, 4, 4, 3, 5, 5, { pad: [3, 3] })],
];

for (const [name, g] of convCases) {
  test(`cpu: conv2d forward and both backward kernels vs naive convolution: ${name}`, (t) => {
    const cg = g.c / g.groups;
    const x = randn(g.n * g.c * g.h * g.w, 1), w = randn(g.k * cg * g.r * g.s, 2), bias = randn(g.k, 3);
    const ySize = g.n * g.k * g.oh * g.ow;
    const dy = randn(ySize, 4);
    // forward, with and without bias
    for (const withBias of [true, false]) {
      const want = new Float64Array(ySize), scale = new Float64Array(ySize);
      const ohw = g.oh * g.ow;
      if (withBias) {
        for (let i = 0; i < ySize; i++) {
          want[i] = bias[Math.floor(i / ohw) % g.k]!;
          scale[i] = Math.abs(want[i]!);
        }
      }
      convVisit(g, (yi, xi, wi) => {
        want[yi] += x[xi]! * w[wi]!;
        scale[yi] += Math.abs(x[xi]! * w[wi]!);
      });
      const y = new Float32Array(ySize).fill(NaN);
      be.conv2d(y, x, w, withBias ? bias : null, g);
      closeScaled(t, y, want, scale, `conv2d ${withBias ? 'with' : 'without'} bias`);
    }
    // backward input: dx[xi] = sum dy[yi] * w[wi]
    const dxWant = new Float64Array(x.length), dxScale = new Float64Array(x.length);
    const dwWant = new Float64Array(w.length), dwScale = new Float64Array(w.length);
    convVisit(g, (yi, xi, wi) => {
      dxWant[xi] += dy[yi]! * w[wi]!;
      dxScale[xi] += Math.abs(dy[yi]! * w[wi]!);
      dwWant[wi] += dy[yi]! * x[xi]!;
      dwScale[wi] += Math.abs(dy[yi]! * x[xi]!);
    });
    const dx = new Float32Array(x.length).fill(NaN);
    be.conv2dBackwardInput(dx, dy, w, g);
    // positions no window touches have scale 0 and must be exactly 0
    closeScaled(t, dx, dxWant, dxScale, 'conv2d backward input');
    const dw = new Float32Array(w.length).fill(NaN);
    be.conv2dBackwardWeight(dw, dy, x, g);
    closeScaled(t, dw, dwWant, dwScale, 'conv2d backward weight');
  });
}

test('cpu: conv2d backward agrees with finite differences of sum(y * dy)', (t) => {
  // A check independent of the naive reference: d/dx_i of L = sum(conv(x, w) * dy).
  // L is linear in x, so central differences in double are exact up to float32 rounding of y;
  // with h = 1e-2 that rounding gives ~1e-4 relative error: tolerance 1e-3.
  const g = convGeom(1, 2, 5, 4, 3, 3, 2, { stride: [1, 2], pad: [1, 1], dil: [2, 1] });
  const x = randn(g.n * g.c * g.h * g.w, 11), w = randn(g.k * g.c * g.r * g.s, 12);
  const dy = randn(g.n * g.k * g.oh * g.ow, 13);
  const loss = (xx: Float32Array, ww: Float32Array) => {
    const y = new Float32Array(dy.length);
    be.conv2d(y, xx, ww, null, g);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i]! * dy[i]!;
    return s;
  };
  const dx = new Float32Array(x.length), dw = new Float32Array(w.length);
  be.conv2dBackwardInput(dx, dy, w, g);
  be.conv2dBackwardWeight(dw, dy, x, g);
  const h = 1e-2;
  for (const [v, grad, other, isX] of [[x, dx, w, true], [w, dw, x, false]] as const) {
    const fd: number[] = [];
    for (let i = 0; i < v.length; i++) {
      const p = v.slice(), m = v.slice();
      p[i] = v[i]! + h;
      m[i] = v[i]! - h;
      const lp = isX ? loss(p, other) : loss(other, p), lm = isX ? loss(m, other) : loss(other, m);
      fd.push((lp - lm) / (2 * h));
    }
    close(t, grad, fd, `finite differences ${isX ? 'dx' : 'dw'}`, 1e-3, 1e-3);
  }
});

test('cpu: conv2d rejects a geometry whose output size does not match', (t) => {
  const g = { ...convGeom(1, 2, 5, 5, 2, 3, 3), oh: 4 };
  const err = t.throws(() => be.conv2d(new Float32Array(100), new Float32Array(50), new Float32Array(36), null, g));
  t.regex(err!.message, /conv2d: bk_conv2d_f32: output size 4x3 does not match the geometry \(expected 3x3\)/);
  const bad = { ...convGeom(1, 3, 5, 5, 2, 3, 3), groups: 2 };
  t.throws(() => be.conv2d(new Float32Array(100), new Float32Array(75), new Float32Array(54), null, bad), {
    message: /divisible by groups/,
  });
});

// ------------------------------------------------------------------ pooling

function poolGeom(planes: number, h: number, w: number, kh: number, kw: number,
  o: { stride?: [number, number]; pad?: [number, number]; dil?: [number, number]; includePad?: boolean; ceil?: boolean } = {}): Pool2dGeometry {
  const [strideH, strideW] = o.stride ?? [kh, kw];
  const [padH, padW] = o.pad ?? [0, 0];
  const [dilH, dilW] = o.dil ?? [1, 1];
  // PyTorch's output size; in ceil mode the last window must start inside the input or left padding
  const size = (len: number, k: number, s: number, p: number, d: number) => {
    let out = (o.ceil ? Math.ceil : Math.floor)((len + 2 * p - d * (k - 1) - 1) / s) + 1;
    if (o.ceil && (out - 1) * s >= len + p) out--;
    return out;
  };
  const oh = size(h, kh, strideH, padH, dilH), ow = size(w, kw, strideW, padW, dilW);
  return { planes, h, w, oh, ow, kh, kw, strideH, strideW, padH, padW, dilH, dilW, countIncludePad: o.includePad ?? true };
}

test('cpu: max pool with padding (padding is -inf), stride, dilation; indices; backward', (t) => {
  for (const g of [
    poolGeom(3, 7, 6, 3, 3, { stride: [2, 2], pad: [1, 1] }),
    poolGeom(2, 8, 9, 2, 3, { stride: [1, 2], pad: [1, 1], dil: [2, 1] }),
    poolGeom(2, 5, 5, 2, 2),
  ]) {
    // all-negative input: a zero padding would win, -inf padding never does
    const x = F(Array.from(randn(g.planes * g.h * g.w, 7), (v) => -Math.abs(v) - 1));
    const no = g.planes * g.oh * g.ow;
    const y = new Float32Array(no), idx = new Int32Array(no);
    be.maxPool2d(y, idx, x, g);
    const wantY: number[] = [], wantI: number[] = [];
    for (let p = 0; p < g.planes; p++) {
      for (let oy = 0; oy < g.oh; oy++) {
        for (let ox = 0; ox < g.ow; ox++) {
          let best = -Infinity, arg = -1;
          for (let ky = 0; ky < g.kh; ky++) {
            for (let kx = 0; kx < g.kw; kx++) {
              const iy = oy * g.strideH - g.padH + ky * g.dilH, ix = ox * g.strideW - g.padW + kx * g.dilW;
              if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
              const v = x[(p * g.h + iy) * g.w + ix]!;
              if (v > best) { best = v; arg = iy * g.w + ix; }
            }
          }
          wantY.push(best);
          wantI.push(arg);
        }
      }
    }
    t.deepEqual([...y], wantY.map(Math.fround));
    t.deepEqual([...idx], wantI);
    const dy = randn(no, 8);
    const dx = new Float32Array(x.length).fill(NaN);
    be.maxPool2dBackward(dx, dy, idx, g);
    const wantDx = new Float64Array(x.length);
    for (let p = 0; p < g.planes; p++) {
      for (let o = 0; o < g.oh * g.ow; o++) wantDx[p * g.h * g.w + wantI[p * g.oh * g.ow + o]!] += dy[p * g.oh * g.ow + o]!;
    }
    close(t, dx, wantDx, 'max pool backward');
  }
  // NaN propagates, as in PyTorch
  const g = poolGeom(1, 2, 2, 2, 2);
  const y = new Float32Array(1), idx = new Int32Array(1);
  be.maxPool2d(y, idx, F([1, NaN, 3, 2]), g);
  t.true(Number.isNaN(y[0]));
  t.is(idx[0], 1);
  // indices from outside are checked
  const err = t.throws(() => be.maxPool2dBackward(new Float32Array(4), F([1]), Int32Array.of(4), g));
  t.regex(err!.message, /maxPool2dBackward: .*index 4 .*outside the plane of 4 elements/);
});

test('cpu: avg pool with padding, count_include_pad on and off, ceil-mode windows; backward', (t) => {
  for (const includePad of [true, false]) {
    for (const g of [
      poolGeom(2, 7, 6, 3, 3, { stride: [2, 2], pad: [1, 1], includePad }),
      poolGeom(3, 5, 8, 2, 3, { stride: [2, 3], pad: [1, 1], includePad, ceil: true }),
      poolGeom(1, 4, 4, 2, 2, { includePad }),
    ]) {
      const x = randn(g.planes * g.h * g.w, 21);
      const no = g.planes * g.oh * g.ow;
      const dy = randn(no, 22);
      const wantY = new Float64Array(no), wantDx = new Float64Array(x.length);
      for (let p = 0; p < g.planes; p++) {
        for (let oy = 0; oy < g.oh; oy++) {
          for (let ox = 0; ox < g.ow; ox++) {
            // PyTorch: window [start, min(start + k, size + pad)) counted when including padding
            const y0 = oy * g.strideH - g.padH, x0 = ox * g.strideW - g.padW;
            const y1 = Math.min(y0 + g.kh, g.h + g.padH), x1 = Math.min(x0 + g.kw, g.w + g.padW);
            const padCount = (y1 - y0) * (x1 - x0);
            const ys = Math.max(y0, 0), xs = Math.max(x0, 0), ye = Math.min(y1, g.h), xe = Math.min(x1, g.w);
            const div = includePad ? padCount : (ye - ys) * (xe - xs);
            const o = (p * g.oh + oy) * g.ow + ox;
            let s = 0;
            for (let iy = ys; iy < ye; iy++) for (let ix = xs; ix < xe; ix++) s += x[(p * g.h + iy) * g.w + ix]!;
            wantY[o] = s / div;
            for (let iy = ys; iy < ye; iy++) for (let ix = xs; ix < xe; ix++) wantDx[(p * g.h + iy) * g.w + ix] += dy[o]! / div;
          }
        }
      }
      const y = new Float32Array(no).fill(NaN), dx = new Float32Array(x.length).fill(NaN);
      be.avgPool2d(y, x, g);
      be.avgPool2dBackward(dx, dy, g);
      close(t, y, wantY, `avg pool includePad=${includePad}`, 1e-5, 1e-6);
      close(t, dx, wantDx, `avg pool backward includePad=${includePad}`, 1e-5, 1e-6);
    }
  }
});

test('cpu: adaptive avg pool with windows floor(i*h/oh) .. ceil((i+1)*h/oh); backward', (t) => {
  for (const [h, w, oh, ow] of [[7, 5, 3, 2], [6, 6, 4, 4], [5, 9, 1, 1], [3, 4, 5, 6]] as const) {
    const planes = 2;
    const g: Pool2dGeometry = { planes, h, w, oh, ow, kh: 0, kw: 0, strideH: 0, strideW: 0, padH: 0, padW: 0, dilH: 0, dilW: 0, countIncludePad: false };
    const x = randn(planes * h * w, h * 10 + w), dy = randn(planes * oh * ow, 5);
    const wantY = new Float64Array(planes * oh * ow), wantDx = new Float64Array(x.length);
    for (let p = 0; p < planes; p++) {
      for (let i = 0; i < oh; i++) {
        const ys = Math.floor((i * h) / oh), ye = Math.ceil(((i + 1) * h) / oh);
        for (let j = 0; j < ow; j++) {
          const xs = Math.floor((j * w) / ow), xe = Math.ceil(((j + 1) * w) / ow);
          const cnt = (ye - ys) * (xe - xs), o = (p * oh + i) * ow + j;
          let s = 0;
          for (let iy = ys; iy < ye; iy++) for (let ix = xs; ix < xe; ix++) s += x[(p * h + iy) * w + ix]!;
          wantY[o] = s / cnt;
          for (let iy = ys; iy < ye; iy++) for (let ix = xs; ix < xe; ix++) wantDx[(p * h + iy) * w + ix] += dy[o]! / cnt;
        }
      }
    }
    const y = new Float32Array(wantY.length), dx = new Float32Array(x.length);
    be.adaptiveAvgPool2d(y, x, g);
    be.adaptiveAvgPool2dBackward(dx, dy, g);
    close(t, y, wantY, `adaptive ${h}x${w}->${oh}x${ow}`);
    close(t, dx, wantDx, `adaptive backward ${h}x${w}->${oh}x${ow}`);
  }
});

// ------------------------------------------------------------------ NHWC (channels-last) operands

/** [n, c, ...spatial] row-major -> [n, ...spatial, c] (or back with `back`). */
function permuteNhwc<T extends Float32Array | Int32Array>(a: T, n: number, c: number, hw: number, back = false): T {
  const out = new (a.constructor as new (len: number) => T)(a.length);
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < c; ch++) {
      for (let p = 0; p < hw; p++) {
        const nchw = (i * c + ch) * hw + p, nhwc = (i * hw + p) * c + ch;
        if (back) out[nchw] = a[nhwc]!;
        else out[nhwc] = a[nchw]!;
      }
    }
  }
  return out;
}

/** Forward (with and without bias) and both backward kernels on the given inputs. */
function convAll(g: Conv2dGeometry, x: Float32Array, w: Float32Array, bias: Float32Array, dy: Float32Array) {
  const cg = g.c / g.groups;
  const r = {
    y: new Float32Array(g.n * g.k * g.oh * g.ow).fill(NaN), yb: new Float32Array(g.n * g.k * g.oh * g.ow).fill(NaN),
    dx: new Float32Array(g.n * g.c * g.h * g.w).fill(NaN), dw: new Float32Array(g.k * cg * g.r * g.s).fill(NaN),
  };
  be.conv2d(r.y, x, w, null, g);
  be.conv2d(r.yb, x, w, bias, g);
  be.conv2dBackwardInput(r.dx, dy, w, g);
  be.conv2dBackwardWeight(r.dw, dy, x, g);
  return r;
}

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

test('cpu: conv2d on NHWC operands (oneDNN) equals the NCHW kernels on the same data', (t) => {
  if (!useOneDnn()) {
    skipOrFail(t, 'dnnl', cpuInfo());
    return;
  }
  t.true(be.nativeChannelsLast('conv2d'), 'the backend declares NHWC convolution where oneDNN runs');
  for (const [name, g] of [...convCases, ['3-channel stem, 7x7 stride 2', convGeom(2, 3, 15, 14, 8, 7, 7,
    { stride: [2, 2], pad: [3, 3] })] as [string, Conv2dGeometry]]) {
    const cg = g.c / g.groups;
    const x = randn(g.n * g.c * g.h * g.w, 11), w = randn(g.k * cg * g.r * g.s, 12), bias = randn(g.k, 13);
    const dy = randn(g.n * g.k * g.oh * g.ow, 14);
    const want = convAll(g, x, w, bias, dy);
    const hw = g.h * g.w, ohw = g.oh * g.ow;
    const got = convAll({ ...g, channelsLast: true }, permuteNhwc(x, g.n, g.c, hw), w, bias, permuteNhwc(dy, g.n, g.k, ohw));
    // oneDNN sums in another order per layout: float32 rounding apart
    close(t, permuteNhwc(got.y, g.n, g.k, ohw, true), want.y, `${name}: y`, 1e-4, 1e-5);
    close(t, permuteNhwc(got.yb, g.n, g.k, ohw, true), want.yb, `${name}: y with bias`, 1e-4, 1e-5);
    close(t, permuteNhwc(got.dx, g.n, g.c, hw, true), want.dx, `${name}: dx`, 1e-4, 1e-5);
    close(t, got.dw, want.dw, `${name}: dw`, 1e-4, 1e-5);
  }
  // an empty input: the NHWC output is the bias per pixel, channels innermost
  const g0 = convGeom(1, 0, 2, 2, 3, 1, 1);
  const y = new Float32Array(12).fill(NaN);
  be.conv2d(y, new Float32Array(0), new Float32Array(0), F([1, 2, 3]), { ...g0, channelsLast: true });
  t.deepEqual([...y], [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
});

test('cpu: the built-in conv2d refuses NHWC operands by name; the backend then says so and core permutes', (t) => {
  const wasOn = useOneDnn();
  useOneDnn(false);
  try {
    t.false(be.nativeChannelsLast('conv2d'));
    t.true(be.nativeChannelsLast('pool2d'), 'pooling reads NHWC itself whatever runs the convolutions');
    const g = { ...convGeom(1, 2, 3, 3, 2, 3, 3, { pad: [1, 1] }), channelsLast: true };
    const err = t.throws(() => be.conv2d(new Float32Array(18), new Float32Array(18), new Float32Array(36), null, g));
    t.regex(err!.message, /conv2d: bk_conv2d_f32: NHWC \(channels-last\) convolution needs oneDNN, which is not in use in this thread/);
    t.throws(() => be.conv2dBackwardInput(new Float32Array(18), new Float32Array(18), new Float32Array(36), g),
      { message: /bk_conv2d_backward_input_f32: NHWC .* needs oneDNN/ });
    t.throws(() => be.conv2dBackwardWeight(new Float32Array(36), new Float32Array(18), new Float32Array(18), g),
      { message: /bk_conv2d_backward_weight_f32: NHWC .* needs oneDNN/ });
  } finally {
    useOneDnn(wasOn);
  }
});

test('cpu: geometry layout fields are checked (conv and pool)', (t) => {
  const k = be.native;
  const cg = packConv2d(convGeom(1, 1, 3, 3, 1, 1, 1));
  cg[17] = 2;
  t.not(k.fn.bk_conv2d_f32(new Float32Array(9), new Float32Array(9), new Float32Array(1), null, cg, null), 0);
  t.regex(k.library.lastError(), /bk_conv2d_f32: geom->layout must be 0 \(NCHW\) or 1 \(NHWC\), got 2/);
  const g = { ...poolGeom(6, 4, 4, 2, 2), channelsLast: true, channels: 4 };
  t.throws(() => be.avgPool2d(new Float32Array(24), new Float32Array(96), g),
    { message: /bk_avg_pool2d_f32: NHWC pooling: 6 planes are not a whole number of images of 4 channels/ });
  const pg = packPool2d({ ...g, channels: 3 });
  pg[15] = 7;
  t.not(k.fn.bk_avg_pool2d_f32(new Float32Array(24), new Float32Array(96), pg, null), 0);
  t.regex(k.library.lastError(), /bk_avg_pool2d_f32: geom->layout must be 0 \(NCHW\) or 1 \(NHWC\), got 7/);
});

test('cpu: NHWC pooling equals NCHW pooling bit for bit (max with indices and NaN, avg, adaptive; forward, backward)', (t) => {
  const cases: [string, number, number, Pool2dGeometry][] = [
    ['max/avg 3x3 s2 p1', 2, 5, poolGeom(10, 9, 8, 3, 3, { stride: [2, 2], pad: [1, 1] })],
    ['2x2, 17 channels (vector tails)', 3, 17, poolGeom(51, 6, 6, 2, 2)],
    ['dilation, uneven stride, exclude pad', 2, 3, poolGeom(6, 9, 7, 2, 3, { stride: [1, 2], pad: [1, 1], dil: [2, 1], includePad: false })],
    ['overlapping 3x3 s1, one channel', 2, 1, poolGeom(2, 5, 6, 3, 3, { stride: [1, 1], pad: [1, 1] })],
  ];
  for (const [name, n, c, g] of cases) {
    const hw = g.h * g.w, ohw = g.oh * g.ow;
    const x = randn(n * c * hw, 21);
    x[5] = NaN; // NaN wins its windows in both layouts, with the same index
    const dy = randn(n * c * ohw, 22);
    const gl = { ...g, channelsLast: true, channels: c };
    const xl = permuteNhwc(x, n, c, hw), dyl = permuteNhwc(dy, n, c, ohw);
    const y = new Float32Array(n * c * ohw), idx = new Int32Array(y.length), yl = new Float32Array(y.length).fill(7);
    const idxl = new Int32Array(y.length).fill(-7);
    be.maxPool2d(y, idx, x, g);
    be.maxPool2d(yl, idxl, xl, gl);
    t.deepEqual(bits(permuteNhwc(yl, n, c, ohw, true)), bits(y), `${name}: max y`);
    t.deepEqual([...permuteNhwc(idxl, n, c, ohw, true)], [...idx], `${name}: max indices`);
    const dx = new Float32Array(x.length), dxl = new Float32Array(x.length).fill(7);
    be.maxPool2dBackward(dx, dy, idx, g);
    be.maxPool2dBackward(dxl, dyl, idxl, gl);
    t.deepEqual(bits(permuteNhwc(dxl, n, c, hw, true)), bits(dx), `${name}: max dx`);
    x[5] = 0.5;
    const xl2 = permuteNhwc(x, n, c, hw);
    be.avgPool2d(y, x, g);
    be.avgPool2d(yl, xl2, gl);
    t.deepEqual(bits(permuteNhwc(yl, n, c, ohw, true)), bits(y), `${name}: avg y`);
    be.avgPool2dBackward(dx, dy, g);
    be.avgPool2dBackward(dxl, dyl, gl);
    t.deepEqual(bits(permuteNhwc(dxl, n, c, hw, true)), bits(dx), `${name}: avg dx`);
    for (const [oh, ow] of [[3, 2], [1, 1], [g.h, g.w]] as const) {
      const ga = { ...g, oh, ow }, gal = { ...gl, oh, ow };
      const ya = new Float32Array(n * c * oh * ow), yal = new Float32Array(ya.length).fill(7);
      be.adaptiveAvgPool2d(ya, x, ga);
      be.adaptiveAvgPool2d(yal, xl2, gal);
      t.deepEqual(bits(permuteNhwc(yal, n, c, oh * ow, true)), bits(ya), `${name}: adaptive ${oh}x${ow} y`);
      const dya = randn(ya.length, 23);
      be.adaptiveAvgPool2dBackward(dx, dya, ga);
      be.adaptiveAvgPool2dBackward(dxl, permuteNhwc(dya, n, c, oh * ow), gal);
      t.deepEqual(bits(permuteNhwc(dxl, n, c, hw, true)), bits(dx), `${name}: adaptive ${oh}x${ow} dx`);
    }
  }
});

test('cpu: stridedCopy permutations NCHW <-> NHWC (the tiled transpose) equal an element-by-element copy', (t) => {
  // 4D and 5D, sizes on and off the 16-element tiles, and a transpose inside a strided outer walk
  const shapes = [[2, 3, 5, 7], [1, 17, 33, 20], [3, 64, 9, 9], [2, 5, 3, 4, 6], [1, 40, 1, 48]];
  for (const shape of shapes) {
    const [n, c] = shape as [number, number];
    const hw = shape.slice(2).reduce((a, b) => a * b, 1);
    const x = randn(n * c * hw, 31);
    const toNhwc = new Float32Array(x.length).fill(NaN), back = new Float32Array(x.length).fill(NaN);
    // NHWC written row-major over [n, hw, c], reading NCHW; then NCHW over [n, c, hw] reading NHWC
    be.stridedCopy(toNhwc, x, [n, hw, c], [c * hw, 1, hw]);
    t.deepEqual(bits(toNhwc), bits(permuteNhwc(x, n, c, hw)), `[${shape}] NCHW -> NHWC`);
    be.stridedCopy(back, toNhwc, [n, c, hw], [hw * c, 1, c]);
    t.deepEqual(bits(back), bits(x), `[${shape}] NHWC -> NCHW`);
  }
  // every other image of a batch (an outer stride that does not merge), transposed
  const n = 4, c = 20, hw = 18;
  const x = randn(n * c * hw, 32);
  const got = new Float32Array(2 * hw * c);
  be.stridedCopy(got, x, [2, hw, c], [2 * c * hw, 1, hw]);
  const want = permuteNhwc(x, n, c, hw);
  t.deepEqual(bits(got), [...bits(want).slice(0, hw * c), ...bits(want).slice(2 * hw * c, 3 * hw * c)]);
});
