/**
 * Every kernel of bagua_kernels.h but batch norm (cuda-bn.test.ts) on cuda:0 against the CPU library on the same
 * random inputs, through core's Backend interface (both backends, same calls).
 *
 * Tolerances: exact where both sides do the same IEEE operations in the same
 * order (copies, + - * /, max pooling, nll, relu); otherwise a few float32 ulps
 * (rtol 1e-6: the GPU contracts a*b+c into one fma, and its expf/logf differ
 * from glibc's by up to 2 ulp); and for reductions (sum, gemm, conv, pooling
 * windows, softmax sums, batch-norm sums) the error is bounded relative to the
 * sum of |terms| (1e-5 of it) rather than to the result, because the GPU adds
 * in another order and the result itself may cancel to near 0.
 *
 * Without a GPU each test logs `SKIPPED (cuda missing): ...` and passes, unless
 * BAGUA_REQUIRE contains 'cuda'.
 */
import type { Backend, Conv2dGeometry, Pool2dGeometry } from '@bagua/core';
import {
  abs, both, close, cpu, exact, gpu, gpuTest, h, randint, randn, runOn, STAND_IN, uniform, type H,
  type Operand,
} from './cuda-helpers.js';
import { BK_STATUS, KernelError, cudaBackend } from '../src/index.js';

// `cpu` also computes magnitudes (the same kernel on |inputs|: sums of |terms|) that bound reduction errors

// ------------------------------------------------------------------ memory movement

gpuTest('fill and copy (odd sizes: vector body and scalar tail)', (t) => {
  for (const n of [1, 3, 1000, 1_000_003]) {
    const x = randn(n, n);
    const r = both({ out: { n }, y: { n }, x }, (b, hh) => {
      b.fill(h(hh, 'out'), n, 2.5);
      b.copy(h(hh, 'y'), h(hh, 'x'), n);
    });
    exact(t, r.gpu.out, r.cpu.out, `fill n=${n}`);
    exact(t, r.gpu.y, x, `copy n=${n}`);
  }
});

gpuTest('stridedCopy: transposes, broadcasts, 8 dimensions', (t) => {
  const cases: { shape: number[]; strides: number[]; src: number }[] = [
    { shape: [37, 53], strides: [1, 37], src: 37 * 53 },                   // transpose
    { shape: [4, 5, 6], strides: [1, 4, 20], src: 120 },                   // reversed axes
    { shape: [7, 9], strides: [0, 1], src: 9 },                            // row broadcast
    { shape: [3, 1, 4], strides: [4, 99, 1], src: 12 },                    // size-1 dimension
    { shape: [2, 2, 2, 2, 2, 2, 2, 3], strides: [1, 2, 4, 8, 16, 32, 64, 128], src: 384 },
    { shape: [], strides: [], src: 1 },                                     // a scalar
  ];
  for (const c of cases) {
    const x = randn(c.src, 5);
    const numel = c.shape.reduce((a, v) => a * v, 1);
    const r = both({ out: { n: numel }, x }, (b, hh) => b.stridedCopy(h(hh, 'out'), h(hh, 'x'), c.shape, c.strides));
    exact(t, r.gpu.out, r.cpu.out, `stridedCopy [${c.shape}] strides [${c.strides}]`);
  }
});

// ------------------------------------------------------------------ elementwise

gpuTest('binary ops: same shape, broadcasting, scalar, strided', (t) => {
  const ops = ['add', 'sub', 'mul', 'div'] as const;
  const cases: { shape: number[]; as: number[]; bs: number[]; na: number; nb: number; label: string }[] = [
    { shape: [1001, 7], as: [7, 1], bs: [7, 1], na: 7007, nb: 7007, label: 'contiguous' },
    { shape: [64, 33], as: [33, 1], bs: [0, 1], na: 64 * 33, nb: 33, label: 'row broadcast' },
    { shape: [64, 33], as: [33, 1], bs: [1, 0], na: 64 * 33, nb: 64, label: 'column broadcast' },
    { shape: [5, 6, 7], as: [42, 7, 1], bs: [0, 0, 0], na: 210, nb: 1, label: 'scalar right' },
    { shape: [5, 6, 7], as: [0, 0, 0], bs: [42, 7, 1], na: 1, nb: 210, label: 'scalar left' },
    { shape: [3, 4, 5, 6], as: [1, 3, 12, 60], bs: [0, 30, 6, 1], na: 360, nb: 120, label: 'transposed a, broadcast b' },
  ];
  for (const c of cases) {
    const a = randn(c.na, 11);
    const bb = uniform(c.nb, 12, 0.5, 2); // no division by ~0
    const numel = c.shape.reduce((x, v) => x * v, 1);
    for (const op of ops) {
      const r = both({ out: { n: numel }, a, b: bb }, (be, hh) =>
        be.binary(op, h(hh, 'out'), h(hh, 'a'), c.as, h(hh, 'b'), c.bs, c.shape));
      // IEEE + - * / are exact-rounded on both sides (nvcc's default -prec-div=true)
      exact(t, r.gpu.out, r.cpu.out, `${op} ${c.label}`);
    }
  }
});

gpuTest('unary ops, affine, reluBackward', (t) => {
  const n = 100_003;
  const x = randn(n, 21);
  const pos = uniform(n, 22, 1e-3, 50);
  for (const op of ['neg', 'relu'] as const) {
    const r = both({ out: { n }, x }, (b, hh) => b.unary(op, h(hh, 'out'), h(hh, 'x'), n));
    exact(t, r.gpu.out, r.cpu.out, op);
  }
  const s = both({ out: { n }, x: pos }, (b, hh) => b.unary('sqrt', h(hh, 'out'), h(hh, 'x'), n));
  exact(t, s.gpu.out, s.cpu.out, 'sqrt (IEEE on both)');
  // expf / logf: CUDA's are within 2 ulp, glibc's within 1
  const e = both({ out: { n }, x }, (b, hh) => b.unary('exp', h(hh, 'out'), h(hh, 'x'), n));
  close(t, e.gpu.out, e.cpu.out, 'exp', { rtol: 5e-7, atol: 0 });
  const l = both({ out: { n }, x: pos }, (b, hh) => b.unary('log', h(hh, 'out'), h(hh, 'x'), n));
  close(t, l.gpu.out, l.cpu.out, 'log', { rtol: 5e-7, atol: 1e-7 });
  // alpha * x + beta: one fma on the GPU, maybe two roundings on the CPU
  const a = both({ out: { n }, x }, (b, hh) => b.affine(h(hh, 'out'), h(hh, 'x'), n, 1.7, -0.3));
  close(t, a.gpu.out, a.cpu.out, 'affine', { rtol: 1e-6, atol: 1e-7 });
  const dy = randn(n, 23);
  const rb = both({ dx: { n }, dy, x }, (b, hh) => b.reluBackward(h(hh, 'dx'), h(hh, 'dy'), h(hh, 'x'), n));
  exact(t, rb.gpu.dx, rb.cpu.dx, 'reluBackward');
  // in place (out aliases x)
  const ip = both({ x }, (b, hh) => b.unary('neg', h(hh, 'x'), h(hh, 'x'), n));
  exact(t, ip.gpu.x, ip.cpu.x, 'neg in place');
});

// ------------------------------------------------------------------ reductions and products

gpuTest('sum over [outer, reduce, inner]: rows, columns, split reductions, empty', (t) => {
  const cases: [number, number, number][] = [
    [1, 1_000_000, 1],  // one long row: split across blocks
    [1000, 37, 1],      // many short rows: a warp each
    [7, 1000, 33],      // columns
    [2, 100_000, 3],    // few long columns: split
    [3, 0, 4],          // empty reduction: zeros
    [1, 5, 1],
  ];
  for (const [o, r, i] of cases) {
    const x = randn(o * r * i, o + r + i);
    const run = (v: Float32Array) => both({ out: { n: o * i }, x: v }, (b, hh) => b.sum(h(hh, 'out'), h(hh, 'x'), o, r, i));
    const res = run(x);
    const scale = run(abs(x)).cpu.out;
    close(t, res.gpu.out, res.cpu.out, `sum [${o}, ${r}, ${i}]`, { scale });
  }
});

gpuTest('gemm: transposes, leading dimensions, batches, alpha/beta', (t) => {
  const cases = [
    { m: 64, n: 48, k: 96, ta: false, tb: false, batch: 1, alpha: 1, beta: 0, pad: 0 },
    { m: 33, n: 17, k: 65, ta: true, tb: false, batch: 1, alpha: 0.5, beta: 0, pad: 0 },
    { m: 33, n: 17, k: 65, ta: false, tb: true, batch: 1, alpha: 1, beta: 1, pad: 3 },
    { m: 20, n: 30, k: 40, ta: true, tb: true, batch: 3, alpha: -1.5, beta: 0.25, pad: 2 },
    { m: 7, n: 5, k: 0, ta: false, tb: false, batch: 2, alpha: 1, beta: 0.5, pad: 0 }, // k = 0: C = beta C
  ];
  for (const c of cases) {
    const [ar, ac] = c.ta ? [c.k, c.m] : [c.m, c.k];
    const [br, bc] = c.tb ? [c.n, c.k] : [c.k, c.n];
    const lda = ac + c.pad, ldb = bc + c.pad, ldc = c.n + c.pad;
    const sa = ar * lda, sb = br * ldb, sc = c.m * ldc;
    const A = randn(Math.max(1, c.batch * sa), 31), B = randn(Math.max(1, c.batch * sb), 32), C = randn(c.batch * sc, 33);
    const call = (be: Backend, hh: H) => be.gemm(h(hh, 'c'), h(hh, 'a'), h(hh, 'b'), c.ta, c.tb, c.m, c.n, c.k, c.alpha,
      c.beta, lda, ldb, ldc, c.batch, sa, sb, sc);
    const r = both({ c: C, a: A, b: B }, call);
    const scale = runOn(cpu, { c: abs(C), a: abs(A), b: abs(B) }, (hh) => {
      cpu.gemm(h(hh, 'c'), h(hh, 'a'), h(hh, 'b'), c.ta, c.tb, c.m, c.n, c.k, Math.abs(c.alpha), Math.abs(c.beta),
        lda, ldb, ldc, c.batch, sa, sb, sc);
    }).c;
    close(t, r.gpu.c, r.cpu.c, `gemm m${c.m} n${c.n} k${c.k} ta${+c.ta} tb${+c.tb} batch${c.batch}`, { scale });
  }
});

// ------------------------------------------------------------------ softmax and losses

gpuTest('softmax and log-softmax, forward and backward', (t) => {
  for (const [rows, cols] of [[64, 10], [8, 5000], [3, 1], [1000, 1024], [5, 1025]] as [number, number][]) {
    const x = randn(rows * cols, rows + cols, 0, 3);
    const dy = randn(rows * cols, rows * cols);
    for (const log of [false, true]) {
      const f = both({ out: { n: rows * cols }, x }, (b, hh) => b.softmax(h(hh, 'out'), h(hh, 'x'), rows, cols, log));
      // The row sum s (positive terms) is summed in float on the GPU (double on the CPU): its
      // relative error is at most (terms per lane + tree depth) float roundings, gamma.
      const gamma = (Math.ceil(cols / 32) + 8) * 2 ** -24;
      const y = f.cpu.out as Float32Array;
      if (log) {
        // (x - m) - log(s): gamma absolutely, plus an ulp of log(s) <= |x - m| + |out|
        const terms = new Float32Array(rows * cols);
        for (let r = 0; r < rows; r++) {
          let m = -Infinity;
          for (let c = 0; c < cols; c++) m = Math.max(m, x[r * cols + c]!);
          for (let c = 0; c < cols; c++) terms[r * cols + c] = Math.abs(x[r * cols + c]! - m) + Math.abs(y[r * cols + c]!);
        }
        close(t, f.gpu.out, y, `logsoftmax ${rows}x${cols}`, { rtol: 2e-7, atol: gamma, scale: terms, rtolScale: 2 ** -22 });
      } else {
        // exp(x - m) / s: gamma and a few ulps (expf, the division), relative to the output
        close(t, f.gpu.out, y, `softmax ${rows}x${cols}`, { rtol: gamma + 2 ** -21, atol: 1e-12 });
      }
      const bw = both({ dx: { n: rows * cols }, dy, y }, (b, hh) =>
        b.softmaxBackward(h(hh, 'dx'), h(hh, 'dy'), h(hh, 'y'), rows, cols, log));
      // dx = y * (dy - sum(dy y)) or dy - exp(y) sum(dy): the row sum cancels, bound by sum |dy| (|y| <= 1)
      const rowAbs = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) {
        let s = 0;
        for (let c = 0; c < cols; c++) s += Math.abs(dy[r * cols + c]!);
        for (let c = 0; c < cols; c++) rowAbs[r * cols + c] = s * (log ? Math.exp(y[r * cols + c]!) : Math.abs(y[r * cols + c]!)) + Math.abs(dy[r * cols + c]!);
      }
      close(t, bw.gpu.dx, bw.cpu.dx, `${log ? 'log' : ''}softmax backward ${rows}x${cols}`, { rtol: 1e-6, scale: rowAbs });
    }
  }
});

gpuTest('nll loss forward and backward; an out-of-range target is reported on read', (t) => {
  const rows = 777, cols = 13;
  const logp = randn(rows * cols, 41);
  const target = randint(rows, 42, 0, cols);
  const dout = randn(rows, 43);
  const f = both({ out: { n: rows }, logp, target }, (b, hh) => b.nllLoss(h(hh, 'out'), h(hh, 'logp'), h(hh, 'target'), rows, cols));
  exact(t, f.gpu.out, f.cpu.out, 'nllLoss');
  const bw = both({ dlogp: { n: rows * cols }, dout, target }, (b, hh) =>
    b.nllLossBackward(h(hh, 'dlogp'), h(hh, 'dout'), h(hh, 'target'), rows, cols));
  exact(t, bw.gpu.dlogp, bw.cpu.dlogp, 'nllLossBackward');
  const bad = Int32Array.from(target);
  bad[500] = cols + 3;
  const err = t.throws(() => runOn(gpu(), { out: { n: rows }, logp, target: bad }, (hh) =>
    gpu().nllLoss(h(hh, 'out'), h(hh, 'logp'), h(hh, 'target'), rows, cols)));
  t.regex(err?.message ?? '', /target 16 .*row 500|row 500.*16|16 out of range/, 'the message names the target and row');
  // the error is reported once: the device is usable afterwards
  const again = both({ out: { n: rows }, logp, target }, (b, hh) => b.nllLoss(h(hh, 'out'), h(hh, 'logp'), h(hh, 'target'), rows, cols));
  exact(t, again.gpu.out, again.cpu.out, 'nllLoss after the error');
});

// ------------------------------------------------------------------ convolution

function convGeom(n: number, c: number, hgt: number, wid: number, k: number, r: number, s: number,
  o: { stride?: number; pad?: number; dil?: number; groups?: number } = {}): Conv2dGeometry {
  const st = o.stride ?? 1, pd = o.pad ?? 0, dl = o.dil ?? 1;
  const oh = Math.floor((hgt + 2 * pd - dl * (r - 1) - 1) / st) + 1;
  const ow = Math.floor((wid + 2 * pd - dl * (s - 1) - 1) / st) + 1;
  return { n, c, h: hgt, w: wid, k, r, s, oh, ow, strideH: st, strideW: st, padH: pd, padW: pd, dilH: dl, dilW: dl,
    groups: o.groups ?? 1 };
}

gpuTest('conv2d forward, input and weight gradients (3x3, stem 7x7/2, 1x1, grouped, depthwise, dilated)', (t) => {
  const geoms: [string, Conv2dGeometry][] = [
    ['3x3 pad 1', convGeom(3, 8, 12, 10, 16, 3, 3, { pad: 1 })],
    ['7x7 stride 2 pad 3', convGeom(2, 3, 32, 32, 8, 7, 7, { stride: 2, pad: 3 })],
    ['1x1 pointwise', convGeom(4, 16, 7, 9, 12, 1, 1)],
    ['1x1 stride 2', convGeom(2, 16, 8, 8, 12, 1, 1, { stride: 2 })],
    ['grouped 3x3 g2', convGeom(2, 8, 9, 9, 6, 3, 3, { pad: 1, groups: 2 })],
    ['depthwise 3x3', convGeom(3, 12, 10, 10, 12, 3, 3, { pad: 1, groups: 12 })],
    ['dilated 3x3 d2', convGeom(2, 4, 15, 13, 5, 3, 3, { pad: 2, dil: 2 })],
    ['rectangular 2x5 stride 3', convGeom(2, 3, 11, 17, 4, 2, 5, { stride: 3, pad: 1 })],
  ];
  for (const [label, g] of geoms) {
    const cg = g.c / g.groups;
    const nx = g.n * g.c * g.h * g.w, nw = g.k * cg * g.r * g.s, ny = g.n * g.k * g.oh * g.ow;
    const x = randn(nx, nx), w = randn(nw, nw), bias = randn(g.k, 7), dy = randn(ny, ny);
    for (const withBias of [false, true]) {
      const ops: Record<string, Operand> = { y: { n: ny }, x, w, bias: withBias ? bias : null };
      const f = both(ops, (b, hh) => b.conv2d(h(hh, 'y'), h(hh, 'x'), h(hh, 'w'), hh.bias ?? null, g));
      const sf = runOn(cpu, { y: { n: ny }, x: abs(x), w: abs(w), bias: withBias ? abs(bias) : null }, (hh) =>
        cpu.conv2d(h(hh, 'y'), h(hh, 'x'), h(hh, 'w'), hh.bias ?? null, g)).y;
      close(t, f.gpu.y, f.cpu.y, `conv2d ${label}${withBias ? ' +bias' : ''}`, { scale: sf });
    }
    const bi = both({ dx: { n: nx }, dy, w }, (b, hh) => b.conv2dBackwardInput(h(hh, 'dx'), h(hh, 'dy'), h(hh, 'w'), g));
    const si = runOn(cpu, { dx: { n: nx }, dy: abs(dy), w: abs(w) }, (hh) =>
      cpu.conv2dBackwardInput(h(hh, 'dx'), h(hh, 'dy'), h(hh, 'w'), g)).dx;
    close(t, bi.gpu.dx, bi.cpu.dx, `conv2d input grad ${label}`, { scale: si });
    const bw = both({ dw: { n: nw }, dy, x }, (b, hh) => b.conv2dBackwardWeight(h(hh, 'dw'), h(hh, 'dy'), h(hh, 'x'), g));
    const sw = runOn(cpu, { dw: { n: nw }, dy: abs(dy), x: abs(x) }, (hh) =>
      cpu.conv2dBackwardWeight(h(hh, 'dw'), h(hh, 'dy'), h(hh, 'x'), g)).dw;
    close(t, bw.gpu.dw, bw.cpu.dw, `conv2d weight grad ${label}`, { scale: sw });
  }
});

// ------------------------------------------------------------------ pooling

function poolGeom(planes: number, hgt: number, wid: number, k: number,
  o: { stride?: number; pad?: number; dil?: number; includePad?: boolean } = {}): Pool2dGeometry {
  const st = o.stride ?? k, pd = o.pad ?? 0, dl = o.dil ?? 1;
  const oh = Math.floor((hgt + 2 * pd - dl * (k - 1) - 1) / st) + 1;
  const ow = Math.floor((wid + 2 * pd - dl * (k - 1) - 1) / st) + 1;
  return { planes, h: hgt, w: wid, oh, ow, kh: k, kw: k, strideH: st, strideW: st, padH: pd, padW: pd, dilH: dl,
    dilW: dl, countIncludePad: o.includePad ?? true };
}

gpuTest('max pooling: values, indices and gradient (overlapping windows, padding, dilation)', (t) => {
  const geoms: [string, Pool2dGeometry][] = [
    ['3x3/2 pad 1', poolGeom(6, 15, 14, 3, { stride: 2, pad: 1 })],
    ['2x2/2', poolGeom(5, 8, 8, 2)],
    ['3x3/1 dil 2 pad 2', poolGeom(4, 11, 9, 3, { stride: 1, pad: 2, dil: 2 })],
  ];
  for (const [label, g] of geoms) {
    const nx = g.planes * g.h * g.w, ny = g.planes * g.oh * g.ow;
    const x = randn(nx, nx);
    x[3] = NaN; // NaN wins its windows, on both
    const f = both({ y: { n: ny }, ind: { n: ny, dtype: 'int32' }, x }, (b, hh) =>
      b.maxPool2d(h(hh, 'y'), h(hh, 'ind'), h(hh, 'x'), g));
    exact(t, f.gpu.y, f.cpu.y, `maxPool2d ${label}`);
    exact(t, f.gpu.ind, f.cpu.ind, `maxPool2d indices ${label}`);
    const dy = randn(ny, 3);
    const bw = both({ dx: { n: nx }, dy, ind: f.cpu.ind as Int32Array }, (b, hh) =>
      b.maxPool2dBackward(h(hh, 'dx'), h(hh, 'dy'), h(hh, 'ind'), g));
    // an input that is the max of several windows sums their gradients, in another order
    close(t, bw.gpu.dx, bw.cpu.dx, `maxPool2d backward ${label}`, { rtol: 1e-6, atol: 1e-6 });
  }
});

gpuTest('average pooling with and without count_include_pad; adaptive average pooling', (t) => {
  const geoms: [string, Pool2dGeometry][] = [
    ['3x3/2 pad 1 include', poolGeom(6, 15, 14, 3, { stride: 2, pad: 1, includePad: true })],
    ['3x3/2 pad 1 exclude', poolGeom(6, 15, 14, 3, { stride: 2, pad: 1, includePad: false })],
    ['2x2/2', poolGeom(5, 8, 8, 2)],
    ['3x3/1 dil 2 pad 1', poolGeom(3, 9, 9, 3, { stride: 1, pad: 1, dil: 2, includePad: false })],
  ];
  for (const [label, g] of geoms) {
    const nx = g.planes * g.h * g.w, ny = g.planes * g.oh * g.ow;
    const x = randn(nx, 17), dy = randn(ny, 18);
    const f = both({ y: { n: ny }, x }, (b, hh) => b.avgPool2d(h(hh, 'y'), h(hh, 'x'), g));
    const sf = runOn(cpu, { y: { n: ny }, x: abs(x) }, (hh) => cpu.avgPool2d(h(hh, 'y'), h(hh, 'x'), g)).y;
    close(t, f.gpu.y, f.cpu.y, `avgPool2d ${label}`, { rtol: 1e-6, scale: sf });
    const bw = both({ dx: { n: nx }, dy }, (b, hh) => b.avgPool2dBackward(h(hh, 'dx'), h(hh, 'dy'), g));
    const sb = runOn(cpu, { dx: { n: nx }, dy: abs(dy) }, (hh) => cpu.avgPool2dBackward(h(hh, 'dx'), h(hh, 'dy'), g)).dx;
    close(t, bw.gpu.dx, bw.cpu.dx, `avgPool2d backward ${label}`, { rtol: 1e-6, scale: sb });
  }
  for (const [hgt, wid, oh, ow] of [[7, 7, 3, 3], [56, 56, 1, 1], [10, 13, 4, 5], [5, 5, 7, 7]] as [number, number, number, number][]) {
    const g: Pool2dGeometry = { planes: 6, h: hgt, w: wid, oh, ow, kh: 1, kw: 1, strideH: 1, strideW: 1, padH: 0, padW: 0,
      dilH: 1, dilW: 1, countIncludePad: true };
    const nx = 6 * hgt * wid, ny = 6 * oh * ow;
    const x = randn(nx, 19), dy = randn(ny, 20);
    const f = both({ y: { n: ny }, x }, (b, hh) => b.adaptiveAvgPool2d(h(hh, 'y'), h(hh, 'x'), g));
    close(t, f.gpu.y, f.cpu.y, `adaptiveAvgPool2d ${hgt}x${wid} -> ${oh}x${ow}`, { rtol: 1e-6, atol: 1e-7 }); // double sums on both
    const bw = both({ dx: { n: nx }, dy }, (b, hh) => b.adaptiveAvgPool2dBackward(h(hh, 'dx'), h(hh, 'dy'), g));
    const sb = runOn(cpu, { dx: { n: nx }, dy: abs(dy) }, (hh) =>
      cpu.adaptiveAvgPool2dBackward(h(hh, 'dx'), h(hh, 'dy'), g)).dx;
    close(t, bw.gpu.dx, bw.cpu.dx, `adaptiveAvgPool2d backward ${hgt}x${wid} -> ${oh}x${ow}`, { rtol: 1e-6, scale: sb });
  }
});

// ------------------------------------------------------------------ optimiser

gpuTest('sgd: plain, momentum (first and later steps), dampening, nesterov, weight decay', (t) => {
  const n = 10_007;
  const p = randn(n, 1), g = randn(n, 2), buf = randn(n, 3);
  const cfgs = [
    { momentum: 0, dampening: 0, wd: 0, nesterov: false, first: false },
    { momentum: 0.9, dampening: 0, wd: 0, nesterov: false, first: true },
    { momentum: 0.9, dampening: 0.1, wd: 1e-4, nesterov: false, first: false },
    { momentum: 0.9, dampening: 0, wd: 5e-4, nesterov: true, first: false },
  ];
  for (const c of cfgs) {
    const r = both({ p, buf: c.momentum ? buf : null, g }, (b, hh) =>
      b.sgd(h(hh, 'p'), hh.buf ?? null, h(hh, 'g'), n, 0.05, c.momentum, c.dampening, c.wd, c.nesterov, c.first));
    // a few multiply-adds per element: fma contraction on the GPU
    close(t, r.gpu.p, r.cpu.p, `sgd param ${JSON.stringify(c)}`, { rtol: 1e-6, atol: 1e-7 });
    if (c.momentum) close(t, r.gpu.buf, r.cpu.buf, `sgd momentum buffer ${JSON.stringify(c)}`, { rtol: 1e-6, atol: 1e-7 });
  }
});

// ------------------------------------------------------------------ storage

gpuTest('storage: upload/download round trip, int32, empty, freed-handle and wrong-device errors', (t) => {
  const b = gpu();
  const x = randn(12345, 77);
  const hx = b.alloc('float32', x.length, 0);
  b.upload(hx, x);
  exact(t, b.download(hx, 'float32', x.length) as Float32Array, x, 'float32 round trip');
  const xi = randint(999, 78, -1000, 1000);
  const hi = b.alloc('int32', xi.length, 0);
  b.upload(hi, xi);
  exact(t, b.download(hi, 'int32', xi.length) as Int32Array, xi, 'int32 round trip');
  const he = b.alloc('float32', 0, 0);
  t.is((b.download(he, 'float32', 0) as Float32Array).length, 0);
  b.free(he);
  b.free(hi);
  b.synchronize();
  b.free(hx);
  if (!STAND_IN) {
    t.throws(() => b.download(hx, 'float32', 1), { message: /already freed/ });
    t.throws(() => b.alloc('float32', 4, 99), { message: /cuda:99 does not exist/ });
  }
});

gpuTest('errors: a failed library call throws a KernelError carrying its bk_status', (t) => {
  if (STAND_IN) return t.pass();
  const b = gpu();
  const hx = b.alloc('float32', 4, 0);
  const err = t.throws(() => b.fill(hx, -1, 0), { instanceOf: KernelError });
  t.is(err!.status, BK_STATUS.BK_ERR_INVALID_ARGUMENT);
  t.regex(err!.message, /^fill \(cuda\): fill: negative size -1/);
  b.free(hx);
  // a CUDA runtime failure: selecting a device that does not exist
  const rt = cudaBackend.native.rt;
  const current = [0];
  t.is(rt.bk_cuda_get_device(current), BK_STATUS.BK_OK);
  t.is(rt.bk_cuda_set_device(cudaBackend.deviceCount() + 7), BK_STATUS.BK_ERR_DEVICE);
  t.regex(cudaBackend.native.library.lastError(), /cudaSetDevice/);
  t.is(rt.bk_cuda_set_device(current[0]!), BK_STATUS.BK_OK); // as the backend believes it is
});
