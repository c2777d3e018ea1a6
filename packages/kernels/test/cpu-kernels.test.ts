/**
 * The CPU kernels, called through the Backend, against small plain-JS reference
 * implementations in double precision written here. Inputs are float32; the
 * references read the same float32 values, so the only differences are the
 * kernels' float32 rounding. Tolerance: 1e-5 relative (plus a tiny absolute
 * term for values near 0) unless a comment says why otherwise.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { convGeom, randn } from '@bagua/testing';
import {
  BK_ABI_VERSION, BK_STATUS, CPU_LIBRARY, CpuBackend, KERNEL_NAMES, KernelError, cpuBackend as be, libraryCandidates,
  loadCpuKernels, locateLibrary,
} from '../src/index.js';
import { packConv2d, packPool2d } from '../src/geometry.js';
import { close, closeScaled, F } from './cpu-helpers.js';

// ------------------------------------------------------------------ library

test('cpu: library loads, reports its name and ABI, declares every kernel', (t) => {
  const k = loadCpuKernels();
  t.is(k.backendName, 'cpu');
  t.is(k.library.lib.func('int32_t bk_abi_version(void)')(), BK_ABI_VERSION);
  t.is(KERNEL_NAMES.length, 48);
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
  // a geometry struct of another size (a caller built for another layout) is refused
  const cg = packConv2d(convGeom(1, 1, 3, 3, 1, 1, 1));
  cg[0] = 64;
  t.is(k.fn.bk_conv2d_f32(new Float32Array(9), new Float32Array(9), new Float32Array(1), null, cg, null),
    BK_STATUS.BK_ERR_INVALID_ARGUMENT);
  t.regex(k.library.lastError(), /bk_conv2d_f32: geom->size is 64, expected sizeof\(bk_conv2d_geom\) = 72/);
  const pg = packPool2d({ planes: 1, h: 2, w: 2, oh: 1, ow: 1, kh: 2, kw: 2, strideH: 2, strideW: 2, padH: 0, padW: 0,
    dilH: 1, dilW: 1, countIncludePad: false });
  t.is(k.fn.bk_avg_pool2d_f32(new Float32Array(1), new Float32Array(4), pg, null), BK_STATUS.BK_OK);
  pg[0] = 56;
  t.is(k.fn.bk_avg_pool2d_f32(new Float32Array(1), new Float32Array(4), pg, null), BK_STATUS.BK_ERR_INVALID_ARGUMENT);
  t.regex(k.library.lastError(), /bk_avg_pool2d_f32: geom->size is 56, expected sizeof\(bk_pool2d_geom\) = 68/);
  // pooling indexes a plane with int32: sizes whose positions or indices would not fit are refused
  const big = { planes: 1, h: 50_000, w: 50_000, oh: 25_000, ow: 25_000, kh: 2, kw: 2, strideH: 2, strideW: 2, padH: 0,
    padW: 0, dilH: 1, dilW: 1, countIncludePad: false };
  t.is(k.fn.bk_max_pool2d_f32(null, null, null, packPool2d(big), null), BK_STATUS.BK_ERR_INVALID_ARGUMENT);
  t.regex(k.library.lastError(), /bk_max_pool2d_f32: a plane of 50000x50000 or 25000x25000 elements is too large/);
  const far = { ...big, h: 4, w: 4, oh: 2, ow: 2, strideH: 2 ** 31 - 1 };
  t.is(k.fn.bk_avg_pool2d_backward_f32(null, null, packPool2d(far), null), BK_STATUS.BK_ERR_INVALID_ARGUMENT);
  t.regex(k.library.lastError(), /bk_avg_pool2d_backward_f32: the windows reach past 2\^31 - 1/);
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
