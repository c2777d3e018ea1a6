/**
 * The CPU conv2d and pooling kernels, called through the Backend, against plain-JS reference
 * implementations in double precision (tolerances as in cpu-kernels.test.ts).
 */
import test from 'ava';
import type { Conv2dGeometry, Pool2dGeometry } from '@bagua/core';
import { convGeom, randn } from '@bagua/testing';
import { cpuBackend as be } from '../src/index.js';
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
