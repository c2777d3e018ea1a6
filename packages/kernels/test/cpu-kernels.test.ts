/**
 * The CPU kernels, called through the Backend, against small plain-JS reference
 * implementations in double precision written here. Inputs are float32; the
 * references read the same float32 values, so the only differences are the
 * kernels' float32 rounding. Tolerance: 1e-5 relative (plus a tiny absolute
 * term for values near 0) unless a comment says why otherwise.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import type { Conv2dGeometry, Pool2dGeometry } from '@bagua/core';
import { convGeom, randn } from '@bagua/testing';
import {
  BK_ABI_VERSION, BK_STATUS, CPU_LIBRARY, CpuBackend, KERNEL_NAMES, KernelError, cpuBackend as be, libraryCandidates,
  loadCpuKernels, locateLibrary,
} from '../src/index.js';

// ------------------------------------------------------------------ helpers

/** |got - want| <= atol + rtol * |want| everywhere (NaN fails). */
function close(t: ExecutionContext, got: ArrayLike<number>, want: ArrayLike<number>, what: string,
  rtol = 1e-5, atol = 1e-6): void {
  if (got.length !== want.length) {
    t.fail(`${what}: length ${got.length}, expected ${want.length}`);
    return;
  }
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    const tol = atol + rtol * Math.abs(want[i]!);
    if (!(err <= tol)) {
      t.fail(`${what}: element ${i}: got ${got[i]}, expected ${want[i]} (|diff| ${err.toExponential(3)} > ${tol.toExponential(3)})`);
      return;
    }
  }
  t.pass(what);
}

/**
 * For sums of products (GEMM, conv): |got - want| <= rtol * scale, scale = sum of |terms|
 * per element, the natural bound for float32 accumulation (cancellation can make the
 * result itself small while every term is large).
 */
function closeScaled(t: ExecutionContext, got: ArrayLike<number>, want: ArrayLike<number>, scale: ArrayLike<number>,
  what: string, rtol = 1e-5): void {
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    const tol = rtol * scale[i]! + 1e-30;
    if (!(err <= tol)) {
      t.fail(`${what}: element ${i}: got ${got[i]}, expected ${want[i]} (|diff| ${err.toExponential(3)} > ${tol.toExponential(3)})`);
      return;
    }
  }
  t.is(got.length, want.length, `${what}: length`);
}

const F = (xs: ArrayLike<number>) => Float32Array.from(xs);

// ------------------------------------------------------------------ library

test('cpu: library loads, reports its name and ABI, declares every kernel', (t) => {
  const k = loadCpuKernels();
  t.is(k.backendName, 'cpu');
  t.is(k.library.lib.func('int32_t bk_abi_version(void)')(), BK_ABI_VERSION);
  t.is(KERNEL_NAMES.length, 29);
  for (const name of KERNEL_NAMES) t.is(typeof k.fn[name], 'function', name);
  t.regex(k.library.path, /libbagua_kernels_cpu\.so$/);
});

test('cpu: library not found lists every path tried and how to build it', (t) => {
  const tried = ['/nonexistent/one/libbagua_kernels_cpu.so', '/nonexistent/two/libbagua_kernels_cpu.so'];
  const err = t.throws(() => locateLibrary(CPU_LIBRARY, tried));
  t.regex(err!.message, /not found/);
  for (const p of tried) t.true(err!.message.includes(p), p);
  t.true(err!.message.includes('pnpm --filter @bagua/kernels native'));
  // the backend reports it on first use, not at import
  const lonely = new CpuBackend(['/nonexistent/libbagua_kernels_cpu.so']);
  const e2 = t.throws(() => lonely.fill(new Float32Array(2), 2, 1));
  t.regex(e2!.message, /not found[\s\S]*\/nonexistent\/libbagua_kernels_cpu\.so/);
  // the environment variable, when set, is the only candidate
  t.deepEqual(libraryCandidates(CPU_LIBRARY, { BAGUA_KERNELS_CPU_LIB: '/x/y.so' }), ['/x/y.so']);
});

test('cpu: BAGUA_KERNELS_CPU_LIB pointing at a missing file fails clearly (child process)', (t) => {
  const index = fileURLToPath(new URL('../src/index.js', import.meta.url));
  const script = `import(${JSON.stringify(index)}).then((m) => { m.cpuBackend.fill(new Float32Array(1), 1, 0); })` +
    `.catch((e) => { console.error(e.message); process.exit(3); });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, BAGUA_KERNELS_CPU_LIB: '/definitely/missing/libbagua_kernels_cpu.so' },
    encoding: 'utf8',
  });
  t.is(r.status, 3, r.stderr);
  t.regex(r.stderr, /was not found/);
  t.regex(r.stderr, /\/definitely\/missing\/libbagua_kernels_cpu\.so/);
  t.regex(r.stderr, /BAGUA_KERNELS_CPU_LIB/);
});

// ------------------------------------------------------------------ memory movement

test('cpu: fill, copy (also onto itself)', (t) => {
  const a = new Float32Array(37);
  be.fill(a, 35, 2.5);
  t.deepEqual([...a.slice(33)], [2.5, 2.5, 0, 0]);
  const b = new Float32Array(37);
  be.copy(b, a, 37);
  t.deepEqual(b, a);
  be.copy(a, a, 37);
  t.deepEqual(b, a);
  be.fill(a, 0, 7); // n = 0 is a no-op
  t.is(a[0], 2.5);
});

test('cpu: stridedCopy transposes, broadcasts, handles 0-d and reports ndim > 8', (t) => {
  const x = F([...Array(12).keys()]); // [3, 4]
  const out = new Float32Array(12);
  be.stridedCopy(out, x, [4, 3], [1, 4]); // transpose
  const want: number[] = [];
  for (let i = 0; i < 4; i++) for (let j = 0; j < 3; j++) want.push(x[j * 4 + i]!);
  t.deepEqual([...out], want);
  const bc = new Float32Array(8);
  be.stridedCopy(bc, F([1, 2]), [2, 2, 2], [0, 1, 0]);
  t.deepEqual([...bc], [1, 1, 2, 2, 1, 1, 2, 2]);
  const scalar = new Float32Array(1);
  be.stridedCopy(scalar, F([9]), [], []);
  t.is(scalar[0], 9);
  const nine = Array(9).fill(1);
  t.throws(() => be.stridedCopy(new Float32Array(1), F([1]), nine, nine), { message: /stridedCopy: at most 8 dimensions/ });
  // the C check too, called directly
  const k = loadCpuKernels();
  const s64 = new BigInt64Array(9).fill(1n);
  t.not(k.fn.bk_strided_copy_f32(new Float32Array(1), F([1]), s64, s64, 9, null), 0);
  t.regex(k.library.lastError(), /bk_strided_copy_f32: ndim must be in \[0, 8\] \(got 9\)/);
});

// ------------------------------------------------------------------ elementwise

const binaryRef: Record<string, (a: number, b: number) => number> = {
  add: (a, b) => a + b, sub: (a, b) => a - b, mul: (a, b) => a * b, div: (a, b) => a / b,
};

function stridesOf(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d]!;
  }
  return s;
}

/** out[idx] = a[sum idx*aStr] op b[sum idx*bStr] over `shape`. */
function binaryReference(op: string, a: Float32Array, aStr: number[], b: Float32Array, bStr: number[], shape: number[]): number[] {
  const n = shape.reduce((p, q) => p * q, 1);
  const out: number[] = [];
  const idx = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let oa = 0, ob = 0;
    for (let d = 0; d < shape.length; d++) {
      oa += idx[d]! * aStr[d]!;
      ob += idx[d]! * bStr[d]!;
    }
    out.push(binaryRef[op]!(a[oa]!, b[ob]!));
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}

for (const op of ['add', 'sub', 'mul', 'div'] as const) {
  test(`cpu: binary ${op} with broadcasting and non-contiguous strides`, (t) => {
    const shape = [2, 3, 5, 4];
    const a = randn(120, 1), b = randn(3 * 4, 2, 3); // b is [3, 1, 4], broadcast over dims 0 and 2
    const aStr = stridesOf(shape), bStr = [0, 4, 0, 1];
    const out = new Float32Array(120);
    be.binary(op, out, a, aStr, b, bStr, shape);
    close(t, out, binaryReference(op, a, aStr, b, bStr, shape), `${op} broadcast`);
    // a transposed view: a stored as [4, 5, 3, 2] read with reversed strides
    const at = randn(120, 3);
    const atStr = [1, 2, 6, 30].slice(); // strides of the stored [4,5,3,2] permuted to [2,3,5,4]
    be.binary(op, out, at, atStr, b, bStr, shape);
    close(t, out, binaryReference(op, at, atStr, b, bStr, shape), `${op} transposed`);
    // scalar on either side, and out aliasing a
    const s = F([1.75]);
    be.binary(op, out, s, [0, 0, 0, 0], a, aStr, shape);
    close(t, out, binaryReference(op, s, [0, 0, 0, 0], a, aStr, shape), `${op} scalar-left`);
    const inplace = a.slice();
    be.binary(op, inplace, inplace, aStr, s, [0, 0, 0, 0], shape);
    close(t, inplace, binaryReference(op, a, aStr, s, [0, 0, 0, 0], shape), `${op} in place`);
    // 0-d
    const o0 = new Float32Array(1);
    be.binary(op, o0, F([3]), [], F([2]), [], []);
    t.is(o0[0], Math.fround(binaryRef[op]!(3, 2)));
  });
}

test('cpu: binary rejects an unknown op (TS and C) and short storages', (t) => {
  const o = new Float32Array(2);
  t.throws(() => be.binary('pow' as 'add', o, o, [1], o, [1], [2]), { message: /binary: unknown op 'pow'/ });
  const k = loadCpuKernels();
  const s = BigInt64Array.of(1n);
  t.is(k.fn.bk_binary_f32(7, o, o, s, o, s, BigInt64Array.of(2n), 1, null), BK_STATUS.BK_ERR_INVALID_ARGUMENT);
  t.regex(k.library.lastError(), /bk_binary_f32: unknown binary op 7/);
  t.throws(() => be.binary('add', o, F([1]), [1], o, [1], [2]), { message: /binary: a has 1 elements, the sizes given need 2/ });
  t.throws(() => be.binary('add', o, new Int32Array(2), [1], o, [1], [2]), { message: /binary: a must be a float32 CPU storage/ });
  t.throws(() => be.binary('add', o, o, [-1], o, [1], [2]), { message: /binary: aStrides\[0\] = -1 is not a valid stride/ });
  t.throws(() => be.binary('add', o, o, [1], o, [1], [-2]), { message: /binary: shape\[0\] = -2 is not a valid size/ });
  t.throws(() => be.stridedCopy(o, o, [2], [0.5]), { message: /stridedCopy: xStrides\[0\] = 0.5 is not a valid stride/ });
});

test('cpu: unary ops, affine, reluBackward', (t) => {
  const x = randn(1001, 4);
  const pos = F(Array.from(x, (v) => Math.abs(v) + 0.01));
  const out = new Float32Array(1001);
  const refs: [string, Float32Array, (v: number) => number][] = [
    ['neg', x, (v) => -v], ['relu', x, (v) => Math.max(v, 0)], ['exp', x, Math.exp],
    ['log', pos, Math.log], ['sqrt', pos, Math.sqrt],
  ];
  for (const [op, input, f] of refs) {
    be.unary(op as 'neg', out, input, 1001);
    close(t, out, Array.from(input, f), op);
  }
  const nan = new Float32Array(1);
  be.unary('relu', nan, F([NaN]), 1);
  t.true(Number.isNaN(nan[0]), 'relu passes NaN through, as torch.relu');
  t.throws(() => be.unary('tanh' as 'neg', out, x, 1), { message: /unary: unknown op 'tanh'/ });
  const k = loadCpuKernels();
  t.not(k.fn.bk_unary_f32(9, out, x, 1, null), 0);
  t.regex(k.library.lastError(), /bk_unary_f32: unknown unary op 9/);

  be.affine(out, x, 1001, -1.5, 0.25);
  close(t, out, Array.from(x, (v) => -1.5 * v + 0.25), 'affine');
  const dy = randn(1001, 5);
  be.reluBackward(out, dy, x, 1001);
  close(t, out, Array.from(x, (v, i) => (v > 0 ? dy[i]! : 0)), 'reluBackward');
});

// ------------------------------------------------------------------ sums

test('cpu: sum over [outer, reduce, inner], accurate on long reductions', (t) => {
  for (const [outer, reduce, inner] of [[3, 5000, 1], [2, 7, 33], [1, 1, 10], [4, 0, 3], [5, 300, 2]] as const) {
    const x = randn(outer * reduce * inner, outer + reduce + inner, 0.5, 2);
    const out = new Float32Array(outer * inner).fill(NaN);
    be.sum(out, x, outer, reduce, inner);
    const want: number[] = [];
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        let s = 0;
        for (let r = 0; r < reduce; r++) s += x[(o * reduce + r) * inner + i]!;
        want.push(s);
      }
    }
    // the sum is computed in double and rounded once: well within 1e-6 of the magnitude
    const scale = Math.sqrt(reduce) * 2 + 1;
    close(t, out, want, `sum [${outer},${reduce},${inner}]`, 1e-6, 1e-6 * scale);
  }
  // cancellation: 1e4 + noise minus a matching negative block
  const x = new Float32Array(20000);
  const noise = randn(10000, 9, 0, 1e-2);
  for (let i = 0; i < 10000; i++) {
    x[i] = 1e4 + noise[i]!;
    x[10000 + i] = -1e4;
  }
  const out = new Float32Array(1);
  be.sum(out, x, 1, 20000, 1);
  let ref = 0;
  for (const v of x) ref += v;
  t.true(Math.abs(out[0]! - ref) <= 1e-6 * Math.abs(ref) + 1e-3, `sum with cancellation: ${out[0]} vs ${ref}`);
});

// ------------------------------------------------------------------ gemm

function gemmReference(a: Float32Array, b: Float32Array, c0: Float32Array, transA: boolean, transB: boolean,
  m: number, n: number, k: number, alpha: number, beta: number, lda: number, ldb: number, ldc: number,
  batch: number, sA: number, sB: number, sC: number): { want: Float64Array; scale: Float64Array } {
  const want = Float64Array.from(c0), scale = new Float64Array(c0.length);
  for (let q = 0; q < batch; q++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0, sa = 0;
        for (let p = 0; p < k; p++) {
          const av = transA ? a[q * sA + p * lda + i]! : a[q * sA + i * lda + p]!;
          const bv = transB ? b[q * sB + j * ldb + p]! : b[q * sB + p * ldb + j]!;
          s += av * bv;
          sa += Math.abs(av * bv);
        }
        const ci = q * sC + i * ldc + j;
        const prev = beta === 0 ? 0 : beta * c0[ci]!;
        want[ci] = alpha * s + prev;
        scale[ci] = Math.abs(alpha) * sa + Math.abs(prev) + 1e-30;
      }
    }
  }
  return { want, scale };
}

for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
  test(`cpu: gemm transA=${transA} transB=${transB}: batched, ld > width, alpha and beta, odd and blocked sizes`, (t) => {
    const shapes: [number, number, number][] = [[1, 1, 1], [5, 7, 3], [37, 45, 29], [130, 70, 400], [13, 300, 9]];
    for (const [m, n, k] of shapes) {
      const batch = m * n * k > 100000 ? 1 : 3;
      const lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 2, ldc = n + 5;
      const rowsA = transA ? k : m, rowsB = transB ? n : k;
      const sA = rowsA * lda + 7, sB = rowsB * ldb + 1, sC = m * ldc + 4;
      const a = randn(batch * sA, m + 11 * n), b = randn(batch * sB, k + 7);
      const c = randn(batch * sC, 3);
      const c0 = c.slice();
      const alpha = 0.75, beta = 0.5;
      be.gemm(c, a, b, transA, transB, m, n, k, alpha, beta, lda, ldb, ldc, batch, sA, sB, sC);
      const { want, scale } = gemmReference(a, b, c0, transA, transB, m, n, k, alpha, beta, lda, ldb, ldc, batch, sA, sB, sC);
      closeScaled(t, c, want, scale, `gemm ${m}x${n}x${k} batch ${batch}`);
    }
  });
}

test('cpu: gemm beta = 0 ignores NaN in C; k = 0 only scales C', (t) => {
  const a = randn(6, 1), b = randn(6, 2);
  const c = new Float32Array(4).fill(NaN);
  be.gemm(c, a, b, false, false, 2, 2, 3, 1, 0, 3, 2, 2, 1, 0, 0, 0);
  const { want, scale } = gemmReference(a, b, new Float32Array(4), false, false, 2, 2, 3, 1, 0, 3, 2, 2, 1, 0, 0, 0);
  closeScaled(t, c, want, scale, 'beta 0');
  const c2 = F([1, 2, 3, 4]);
  be.gemm(c2, a, b, false, false, 2, 2, 0, 1, 2, 1, 2, 2, 1, 0, 0, 0);
  t.deepEqual([...c2], [2, 4, 6, 8]);
  t.throws(() => be.gemm(c2, a, b, false, false, 2, 2, 3, 1, 0, 2, 2, 2, 1, 0, 0, 0), { message: /gemm: .*lda \(2\) must be >= k \(3\)/ });
});

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

// ------------------------------------------------------------------ softmax and nll

test('cpu: softmax and log-softmax are stable for large logits; backward formulas', (t) => {
  const rows = 4, cols = 37;
  const x = randn(rows * cols, 31, 0, 3);
  x[0] = 1000; x[1] = 1001; x[cols] = -1000; // would overflow / underflow exp without the max shift
  for (const log of [false, true]) {
    const out = new Float32Array(rows * cols);
    be.softmax(out, x, rows, cols, log);
    const want: number[] = [];
    for (let r = 0; r < rows; r++) {
      const row = Array.from(x.subarray(r * cols, (r + 1) * cols));
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
      for (const v of row) want.push(log ? v - lse : Math.exp(v - lse));
    }
    close(t, out, want, log ? 'logSoftmax' : 'softmax', 1e-5, 1e-7);
    const dy = randn(rows * cols, 32);
    const dx = new Float32Array(rows * cols);
    be.softmaxBackward(dx, dy, out, rows, cols, log);
    const wantDx: number[] = [];
    for (let r = 0; r < rows; r++) {
      const yr = Array.from(out.subarray(r * cols, (r + 1) * cols)), g = Array.from(dy.subarray(r * cols, (r + 1) * cols));
      if (log) {
        const s = g.reduce((a, b) => a + b, 0);
        yr.forEach((v, i) => wantDx.push(g[i]! - Math.exp(v) * s));
      } else {
        const s = g.reduce((a, b, i) => a + b * yr[i]!, 0);
        yr.forEach((v, i) => wantDx.push(v * (g[i]! - s)));
      }
    }
    close(t, dx, wantDx, `${log ? 'logSoftmax' : 'softmax'} backward`, 1e-5, 1e-6);
  }
});

test('cpu: nll loss and its backward; a bad target names itself and its row', (t) => {
  const rows = 5, cols = 4;
  const logp = randn(rows * cols, 41);
  const target = Int32Array.of(0, 3, 2, 1, 3);
  const out = new Float32Array(rows);
  be.nllLoss(out, logp, target, rows, cols);
  t.deepEqual([...out], Array.from(target, (c, r) => -logp[r * cols + c]!));
  const dout = randn(rows, 42);
  const dl = new Float32Array(rows * cols).fill(NaN);
  be.nllLossBackward(dl, dout, target, rows, cols);
  const want = new Array<number>(rows * cols).fill(0);
  target.forEach((c, r) => { want[r * cols + c] = -dout[r]!; });
  t.deepEqual([...dl], want.map((v) => (v === 0 ? 0 : Math.fround(v))));
  for (const [bad, row] of [[4, 2], [-1, 0]] as const) {
    const tg = target.slice();
    tg[row] = bad;
    const before = out.slice();
    const err = t.throws(() => be.nllLoss(out, logp, tg, rows, cols));
    t.is(err!.message, `nllLoss: bk_nll_loss_f32: target ${bad} out of range [0, ${cols}) at row ${row}`);
    t.deepEqual(out, before, 'nothing written on error');
    t.throws(() => be.nllLossBackward(dl, dout, tg, rows, cols), { message: new RegExp(`target ${bad} out of range .* at row ${row}`) });
  }
  t.throws(() => be.nllLoss(out, logp, F([0, 1, 2, 3, 0]), rows, cols), { message: /nllLoss: target must be an int32 CPU storage/ });
});

// ------------------------------------------------------------------ batch norm

/** Two-pass double reference of per-channel mean and biased variance over [n, c, hw]. */
function bnRef(x: Float32Array, n: number, c: number, hw: number): { mean: number[]; var: number[]; count: number } {
  const mean: number[] = [], vr: number[] = [];
  for (let ch = 0; ch < c; ch++) {
    let s = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < hw; j++) s += x[(i * c + ch) * hw + j]!;
    const m = n * hw > 0 ? s / (n * hw) : 0;
    let q = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < hw; j++) q += (x[(i * c + ch) * hw + j]! - m) ** 2;
    mean.push(m);
    vr.push(n * hw > 0 ? q / (n * hw) : 0);
  }
  return { mean, var: vr, count: n * hw };
}

/** Input whose channel 1 is 1e4 + N(0, 0.1): E[x^2] - E[x]^2 in float32 would return garbage. */
function bnInput(n: number, c: number, hw: number, seed: number): Float32Array {
  const x = randn(n * c * hw, seed, 0.3, 1.7);
  if (c > 1) {
    const noise = randn(n * hw, seed + 1, 0, 0.1);
    for (let i = 0; i < n; i++) for (let j = 0; j < hw; j++) x[(i * c + 1) * hw + j] = 1e4 + noise[i * hw + j]!;
  }
  return x;
}

// plane layout (hw >= 64, one and several 2048-chunks), and row layout (hw < 64, hw = 1,
// row counts that are not multiples of the 32-row block, more than 256 columns)
const bnShapes: [number, number, number][] = [[4, 3, 70], [2, 5, 3000], [3, 2, 4100], [33, 6, 5], [70, 300, 1], [2, 4, 63], [1, 3, 2]];

for (const [n, c, hw] of bnShapes) {
  test(`cpu: bnStats [${n},${c},${hw}] matches the two-pass double reference (incl. a 1e4 + noise channel)`, (t) => {
    const x = bnInput(n, c, hw, n * 1000 + c * 10 + hw);
    const stats = new Float32Array(2 * c + 2).fill(NaN);
    be.bnStats(stats, x, n, c, hw, 0xabcdef);
    const ref = bnRef(x, n, c, hw);
    close(t, stats.subarray(0, c), ref.mean, 'mean', 1e-6, 1e-6);
    close(t, stats.subarray(c, 2 * c), ref.var, 'var', 1e-5, 0);
    t.is(stats[2 * c], n * hw);
    t.is(stats[2 * c + 1], 0xabcdef, 'the tag column');
  });
}

test('cpu: bnStats of an empty batch is mean 0, var 0, count 0', (t) => {
  const stats = new Float32Array(8).fill(NaN);
  be.bnStats(stats, new Float32Array(0), 0, 3, 16, 9);
  t.deepEqual([...stats], [0, 0, 0, 0, 0, 0, 0, 9]);
  be.bnStats(stats, new Float32Array(0), 5, 3, 0, 0);
  t.deepEqual([...stats], [0, 0, 0, 0, 0, 0, 0, 0]);
});

test('cpu: bnMergeStats of 3 ranks (one empty) equals the stats of the concatenated batch; running stats', (t) => {
  const c = 4, hw = 9, eps = 1e-5, factor = 0.1;
  const sizes = [3, 0, 5];
  const parts = sizes.map((n, r) => bnInput(n, c, hw, 100 + r));
  const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) { all.set(p, off); off += p.length; }
  const N = 8;
  // tagged records [mean, var, count, tag], read by the merge with stride 2C+2
  const W = 2 * c + 2;
  const records = new Float32Array(3 * W);
  parts.forEach((p, r) => {
    const rec = new Float32Array(W);
    be.bnStats(rec, p, sizes[r]!, c, hw, 77);
    records.set(rec, r * W);
  });
  t.is(records[W + 2 * c], 0, 'the empty rank has count 0');
  t.is(records[W + 2 * c + 1], 77, 'the empty rank has its tag');
  const mean = new Float32Array(c), invstd = new Float32Array(c), count = new Float32Array(1);
  const rm0 = randn(c, 7), rv0 = F(Array.from(randn(c, 8), (v) => Math.abs(v) + 0.5));
  const rm = rm0.slice(), rv = rv0.slice();
  be.bnMergeStats(mean, invstd, count, records, 3, c, W, eps, rm, rv, factor);
  const ref = bnRef(all, N, c, hw);
  t.is(count[0], N * hw);
  // 1. the merge itself, against Chan's formula in double over the same float32 records
  const fromRecords = { mean: [] as number[], var: [] as number[] };
  for (let ch = 0; ch < c; ch++) {
    let cnt = 0, m = 0, m2 = 0;
    for (let r = 0; r < 3; r++) {
      const rec = records.subarray(r * W, (r + 1) * W);
      const nb = rec[2 * c]!;
      if (nb === 0) continue;
      const d = rec[ch]! - m, tot = cnt + nb;
      m += (d * nb) / tot;
      m2 += rec[c + ch]! * nb + (d * d * cnt * nb) / tot;
      cnt = tot;
    }
    fromRecords.mean.push(m);
    fromRecords.var.push(m2 / cnt);
  }
  close(t, mean, fromRecords.mean, 'merged mean vs records', 1e-7, 1e-7);
  close(t, invstd, fromRecords.var.map((v) => 1 / Math.sqrt(v + eps)), 'merged invstd vs records', 1e-6, 0);
  // 2. against the concatenated batch. Each rank's record holds its mean in float32
  //    (PyTorch's SyncBatchNorm gathers float32 too), which moves the between-rank term of
  //    the variance: by up to sum_r w_r (2 |m_r - M| u_r + u_r^2), u_r = |m_r| 2^-24. For
  //    channel 1 (1e4 + N(0, 0.1)) that is ~1e-3 relative; the tolerance is that bound.
  const G0 = N * hw;
  const roundingBound = (ch: number) => parts.reduce((b, p, r) => {
    if (!sizes[r]) return b;
    const m = bnRef(p, sizes[r]!, c, hw).mean[ch]!;
    const u = Math.abs(m) * 2 ** -24;
    return b + ((sizes[r]! * hw) / G0) * (2 * Math.abs(m - ref.mean[ch]!) * u + u * u);
  }, 0) / ref.var[ch]!;
  for (let ch = 0; ch < c; ch++) {
    const rtol = 1e-5 + roundingBound(ch);
    close(t, [mean[ch]!], [ref.mean[ch]!], `merged mean, channel ${ch}`, 1e-6, 1e-6);
    close(t, [invstd[ch]!], [1 / Math.sqrt(ref.var[ch]! + eps)], `merged invstd, channel ${ch}`, rtol, 0);
  }
  close(t, rm, ref.mean.map((m, i) => (1 - factor) * rm0[i]! + factor * m), 'running mean', 1e-6, 1e-6);
  const G = N * hw;
  close(t, rv, ref.var.map((v, i) => (1 - factor) * rv0[i]! + factor * v * G / (G - 1)), 'running var (unbiased by the global count)');
  // the same, single rank over the concatenation
  const one = new Float32Array(W);
  be.bnStats(one, all, N, c, hw, 0);
  const mean1 = new Float32Array(c), invstd1 = new Float32Array(c), count1 = new Float32Array(1);
  be.bnMergeStats(mean1, invstd1, count1, one, 1, c, W, eps, null, null, factor);
  close(t, mean, mean1, 'merge == concatenation (mean)', 1e-6, 1e-6);
  for (let ch = 0; ch < c; ch++) {
    // the float32-record bound above
    close(t, [invstd[ch]!], [invstd1[ch]!], `merge == concatenation (invstd), channel ${ch}`, 1e-5 + roundingBound(ch), 0);
  }
  t.is(count1[0], count[0]);
});

test('cpu: bnMergeStats with a global count of 0 gives mean 0, invstd 1/sqrt(eps), running stats untouched', (t) => {
  const c = 2;
  const records = new Float32Array(2 * (2 * c + 1)); // two empty ranks
  const mean = F([9, 9]), invstd = new Float32Array(c), count = F([9]);
  const rm = F([1, 2]), rv = F([3, 4]);
  be.bnMergeStats(mean, invstd, count, records, 2, c, 2 * c + 1, 1e-3, rm, rv, 0.5);
  t.deepEqual([...mean], [0, 0]);
  close(t, invstd, [1 / Math.sqrt(1e-3), 1 / Math.sqrt(1e-3)], 'invstd');
  t.is(count[0], 0);
  t.deepEqual([...rm, ...rv], [1, 2, 3, 4]);
  const err = t.throws(() => be.bnMergeStats(mean, invstd, count, F([0, 0, 0, 0, -1]), 1, c, 2 * c + 1, 1e-3, null, null, 0));
  t.regex(err!.message, /bnMergeStats: .*rank 0 has a negative or NaN count/);
});

test('cpu: bnInvstd', (t) => {
  const v = F([0, 0.5, 4, 1e4]);
  const out = new Float32Array(4);
  be.bnInvstd(out, v, 4, 1e-5);
  close(t, out, Array.from(v, (x) => 1 / Math.sqrt(x + 1e-5)), 'invstd');
});

function bnBackwardRef(dy: Float32Array, x: Float32Array, mean: Float32Array, invstd: Float32Array,
  w: Float32Array | null, n: number, c: number, hw: number, N: number, sumsIn?: Float32Array) {
  const sdy = new Array<number>(c).fill(0), sdx = new Array<number>(c).fill(0);
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < c; ch++) {
      for (let j = 0; j < hw; j++) {
        const q = (i * c + ch) * hw + j;
        sdy[ch] += dy[q]!;
        sdx[ch] += dy[q]! * (x[q]! - mean[ch]!);
      }
    }
  }
  const S = sumsIn ? Array.from(sumsIn) : [...sdy, ...sdx];
  const dx = new Float64Array(x.length);
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < c; ch++) {
      const is = invstd[ch]!, wt = w ? w[ch]! : 1;
      for (let j = 0; j < hw; j++) {
        const q = (i * c + ch) * hw + j;
        dx[q] = (dy[q]! - S[ch]! / N - (x[q]! - mean[ch]!) * is * is * S[c + ch]! / N) * is * wt;
      }
    }
  }
  return { sdy, sdx, dx };
}

for (const [n, c, hw] of bnShapes) {
  test(`cpu: bnElemt, bnBackwardReduce, bnBackwardElemt [${n},${c},${hw}] vs reference`, (t) => {
    const x = bnInput(n, c, hw, 7 + n + c + hw);
    const stats = new Float32Array(2 * c + 2);
    be.bnStats(stats, x, n, c, hw, 0);
    const mean = stats.slice(0, c), invstd = new Float32Array(c);
    be.bnInvstd(invstd, stats.subarray(c, 2 * c), c, 1e-5);
    const w = randn(c, 1, 1, 0.5), b = randn(c, 2);
    const total = n * c * hw;
    for (const [weight, bias] of [[w, b], [null, null]] as const) {
      const y = new Float32Array(total);
      be.bnElemt(y, x, mean, invstd, weight, bias, n, c, hw);
      const want = new Float64Array(total);
      for (let q = 0; q < total; q++) {
        const ch = Math.floor(q / hw) % c;
        want[q] = (x[q]! - mean[ch]!) * invstd[ch]! * (weight ? weight[ch]! : 1) + (bias ? bias[ch]! : 0);
      }
      // y is O(1) after normalisation: 1e-5 relative with a 1e-5 floor for values near 0
      close(t, y, want, `elemt ${weight ? 'affine' : 'plain'}`, 1e-5, 1e-5);
      if (!weight) {
        const inplace = x.slice();
        be.bnElemt(inplace, inplace, mean, invstd, null, null, n, c, hw);
        t.deepEqual(inplace, y, 'y may alias x');
      }
    }
    const dy = randn(total, 99, 0.1, 1);
    const sums = new Float32Array(2 * c), gw = new Float32Array(c), gb = new Float32Array(c);
    be.bnBackwardReduce(sums, gw, gb, dy, x, mean, invstd, n, c, hw);
    const ref = bnBackwardRef(dy, x, mean, invstd, w, n, c, hw, n * hw);
    // sums of n*hw products of O(1) values: absolute floor scaled by sqrt(count)
    const floor = 1e-6 * Math.sqrt(n * hw) * 4;
    close(t, sums.subarray(0, c), ref.sdy, 'sum_dy', 1e-5, floor);
    close(t, sums.subarray(c), ref.sdx, 'sum_dy_xmu', 1e-5, floor * 2);
    close(t, gw, ref.sdx.map((v, i) => v * invstd[i]!), 'grad weight', 1e-5, floor * 2);
    close(t, gb, ref.sdy, 'grad bias', 1e-5, floor);
    const sums2 = new Float32Array(2 * c);
    be.bnBackwardReduce(sums2, null, null, dy, x, mean, invstd, n, c, hw);
    t.deepEqual(sums2, sums);
    // elemt with a global count larger than the local one (as after an all-reduce)
    const N = n * hw * 3;
    const dx = new Float32Array(total);
    be.bnBackwardElemt(dx, dy, x, mean, invstd, w, sums, F([N]), n, c, hw);
    const refN = bnBackwardRef(dy, x, mean, invstd, w, n, c, hw, N, sums);
    close(t, dx, refN.dx, 'backward elemt', 1e-5, 1e-5);
  });
}

test('cpu: bn kernels accept an empty batch and reject short storages', (t) => {
  const c = 3, e = new Float32Array(0);
  const sums = new Float32Array(2 * c).fill(NaN);
  be.bnBackwardReduce(sums, null, null, e, e, new Float32Array(c), F([1, 1, 1]), 0, c, 4);
  t.deepEqual([...sums], [0, 0, 0, 0, 0, 0]);
  be.bnElemt(e, e, new Float32Array(c), new Float32Array(c), null, null, 0, c, 4);
  be.bnBackwardElemt(e, e, e, new Float32Array(c), new Float32Array(c), null, sums, F([0]), 0, c, 4);
  t.throws(() => be.bnStats(new Float32Array(2 * c + 1), new Float32Array(24), 2, c, 4, 0), {
    message: /bnStats: stats has 7 elements, the sizes given need 8/,
  });
  // the merge reads (ranks - 1) * stride + 2c + 1 elements, and no stride below a record
  const mean = new Float32Array(c), invstd = new Float32Array(c), count = new Float32Array(1);
  t.throws(() => be.bnMergeStats(mean, invstd, count, new Float32Array(2 * 8 + 6), 3, c, 8, 1e-5, null, null, 0), {
    message: /bnMergeStats: stats has 22 elements, the sizes given need 23/,
  });
  t.throws(() => be.bnMergeStats(mean, invstd, count, new Float32Array(16), 2, c, 6, 1e-5, null, null, 0), {
    message: /bnMergeStats: .*stride 6 is below a record's 2c \+ 1 = 7/,
  });
  t.throws(() => be.bnElemt(new Float32Array(24), new Float32Array(23), F([0, 0, 0]), F([1, 1, 1]), null, null, 2, c, 4), {
    message: /bnElemt: x has 23 elements, the sizes given need 24/,
  });
});

// ------------------------------------------------------------------ sgd

/** torch.optim.SGD (foreach=False) for one parameter over several steps, in double. */
function sgdRef(p0: Float32Array, grads: Float32Array[], o: { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean }) {
  const p = Array.from(p0);
  let buf: number[] | null = null;
  for (const g of grads) {
    const d = p.map((v, i) => g[i]! + o.weightDecay * v);
    let upd = d;
    if (o.momentum !== 0) {
      buf = buf === null ? d.slice() : buf.map((b, i) => o.momentum * b + (1 - o.dampening) * d[i]!);
      upd = o.nesterov ? d.map((v, i) => v + o.momentum * buf![i]!) : buf;
    }
    for (let i = 0; i < p.length; i++) p[i] -= o.lr * upd[i]!;
  }
  return { p, buf };
}

for (const o of [
  { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false },
  { lr: 0.05, momentum: 0, dampening: 0, weightDecay: 0.01, nesterov: false },
  { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false },
  { lr: 0.1, momentum: 0.9, dampening: 0.3, weightDecay: 1e-3, nesterov: false },
  { lr: 0.02, momentum: 0.8, dampening: 0, weightDecay: 5e-3, nesterov: true },
]) {
  test(`cpu: sgd ${JSON.stringify(o)} over 4 steps matches PyTorch's formula`, (t) => {
    const n = 103;
    const p0 = randn(n, 1), grads = [2, 3, 4, 5].map((s) => randn(n, s));
    const p = p0.slice(), buf = o.momentum !== 0 ? new Float32Array(n).fill(NaN) : null;
    grads.forEach((g, step) => {
      be.sgd(p, buf, g, n, o.lr, o.momentum, o.dampening, o.weightDecay, o.nesterov, step === 0);
    });
    const ref = sgdRef(p0, grads, o);
    close(t, p, ref.p, 'param', 1e-5, 1e-6);
    if (buf) close(t, buf, ref.buf!, 'momentum buffer', 1e-5, 1e-6);
  });
}

test('cpu: sgd rejects nesterov with dampening, and a missing momentum buffer', (t) => {
  const p = new Float32Array(4), g = new Float32Array(4);
  t.throws(() => be.sgd(p, new Float32Array(4), g, 4, 0.1, 0.9, 0.1, 0, true, true), { message: /sgd: .*nesterov/ });
  const k = loadCpuKernels();
  t.not(k.fn.bk_sgd_f32(p, null, g, 4, 0.1, 0.9, 0, 0, 0, 1, null), 0);
  t.regex(k.library.lastError(), /bk_sgd_f32: momentum_buf is NULL/);
});

// ------------------------------------------------------------------ argument checks

test('cpu: negative sizes, NULL pointers and wrong storages are errors, not crashes', (t) => {
  const k = loadCpuKernels();
  t.is(k.fn.bk_fill_f32(new Float32Array(1), -1, 0, null), BK_STATUS.BK_ERR_INVALID_ARGUMENT);
  t.regex(k.library.lastError(), /bk_fill_f32: n must be >= 0 \(got -1\)/);
  t.is(k.fn.bk_fill_f32(new Float32Array(1), 1, 0, null), BK_STATUS.BK_OK);
  t.is(k.fn.bk_copy_f32(null, new Float32Array(2), 2, null), BK_STATUS.BK_ERR_INVALID_ARGUMENT);
  t.regex(k.library.lastError(), /bk_copy_f32: out is NULL/);
  t.not(k.fn.bk_gemm_f32(new Float32Array(4), null, new Float32Array(4), 0, 0, 2, 2, 2, 1, 0, 2, 2, 2, 1, 0, 0, 0, null), 0);
  t.regex(k.library.lastError(), /bk_gemm_f32: a is NULL/);
  t.not(k.fn.bk_bn_stats_f32(new Float32Array(4), new Float32Array(4), 2, 1, -2, 0, null), 0);
  t.regex(k.library.lastError(), /bk_bn_stats_f32: hw must be >= 0/);
  t.not(k.fn.bk_conv2d_f32(null, null, null, null, null, null), 0);
  t.regex(k.library.lastError(), /bk_conv2d_f32: geom is NULL/);
  t.throws(() => be.fill(new Float32Array(2), 3, 0), { message: /fill: out has 2 elements, the sizes given need 3/ });
  t.throws(() => be.copy(new Int32Array(2), new Float32Array(2), 2), { message: /copy: out must be a float32 CPU storage \(Float32Array\), got Int32Array\(2\)/ });
  t.throws(() => be.sum(new Float32Array(1), new Float32Array(5), 1, 6, 1), { message: /sum: x has 5 elements/ });
  // what the library rejects comes back as a KernelError carrying the bk_status
  const err = t.throws(() => be.fill(new Float32Array(1), -1, 0), { instanceOf: KernelError });
  t.is(err!.status, BK_STATUS.BK_ERR_INVALID_ARGUMENT);
  t.is(err!.code, 'BK_ERR_INVALID_ARGUMENT');
  t.regex(err!.message, /^fill: bk_fill_f32: n must be >= 0/);
});

test('cpu: storage: alloc, upload, download, free', (t) => {
  const h = be.alloc('float32', 4, 0) as Float32Array;
  t.true(h instanceof Float32Array);
  be.upload(h, F([1, 2, 3]));
  const d = be.download(h, 'float32', 4);
  t.deepEqual([...d], [1, 2, 3, 0]);
  d[0] = 7;
  t.is(h[0], 1, 'download is a copy');
  t.true(be.alloc('int32', 2, 0) instanceof Int32Array);
  t.true(be.alloc('int64', 2, 0) instanceof BigInt64Array);
  t.throws(() => be.alloc('float32', 2, 1), { message: /device index 0/ });
  t.throws(() => be.upload(h, F([1, 2, 3, 4, 5])), { message: /do not fit/ });
  be.free(h);
  be.synchronize();
});
