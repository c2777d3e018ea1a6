/**
 * The CPU library's two engines and its threads: conv2d and GEMM on oneDNN agree with
 * the built-in im2col + GEMM (which the other CPU suites check against naive
 * references and PyTorch); the built-in path is what runs when oneDNN cannot be
 * loaded; kernel thread counts are per JS thread, validated, and do not change results.
 *
 * Where oneDNN is missing the comparisons skip loudly, or fail when BAGUA_REQUIRE
 * contains 'dnnl'.
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import test, { type ExecutionContext } from 'ava';
import type { Conv2dGeometry } from '@bagua/core';
import { convGeom, randn, skipOrFail } from '@bagua/testing';
import {
  MAX_NUM_THREADS, cpuBackend as be, cpuInfo, useOneDnn,
} from '../src/index.js';
import { gemmCases, runGemmCase, type GemmRun } from './gemm-cases.js';

const getNumThreads = () => be.getNumThreads();
const setNumThreads = (n: number) => be.setNumThreads(n);

const INDEX_URL = new URL('../src/index.js', import.meta.url).href;

// ------------------------------------------------------------------ helpers

/** |got - want| <= rtol * scale per element, scale the same product on absolute values. */
function closeScaled(t: ExecutionContext, got: Float32Array, want: Float32Array, scale: Float32Array,
  what: string, rtol = 1e-5): boolean {
  if (got.length !== want.length) {
    t.fail(`${what}: length ${got.length}, expected ${want.length}`);
    return false;
  }
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    const tol = rtol * scale[i]! + 1e-30;
    if (!(err <= tol)) {
      t.fail(`${what}: element ${i}: ${got[i]} vs ${want[i]} (|diff| ${err.toExponential(3)} > ${tol.toExponential(3)})`);
      return false;
    }
  }
  t.pass(what);
  return true;
}

/** |got - want| <= atol + rtol * |want| everywhere. */
function close(t: ExecutionContext, got: ArrayLike<number>, want: ArrayLike<number>, what: string,
  rtol = 1e-6, atol = 1e-7): void {
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    if (!(err <= atol + rtol * Math.abs(want[i]!))) {
      t.fail(`${what}: element ${i}: ${got[i]} vs ${want[i]} (|diff| ${err.toExponential(3)})`);
      return;
    }
  }
  t.is(got.length, want.length, what);
}

const abs = (a: Float32Array) => a.map(Math.abs);

/** Runs f with oneDNN on or off in this thread, then turns it back on. */
function withDnnl<T>(on: boolean, f: () => T): T {
  useOneDnn(on);
  try {
    return f();
  } finally {
    useOneDnn(true);
  }
}

/** Runs f with this thread's kernel thread count set to n, then restores it. */
function withThreads<T>(n: number, f: () => T): T {
  const before = getNumThreads();
  setNumThreads(n);
  try {
    return f();
  } finally {
    setNumThreads(before);
  }
}

/** True when oneDNN runs here; otherwise ends the test (skip, or fail when required). */
function needDnnl(t: ExecutionContext): boolean {
  if (useOneDnn()) return true;
  skipOrFail(t, 'dnnl', cpuInfo());
  return false;
}


const convSizes = (g: Conv2dGeometry) => ({
  x: g.n * g.c * g.h * g.w, w: g.k * (g.c / g.groups) * g.r * g.s, y: g.n * g.k * g.oh * g.ow,
});

interface ConvResults { y: Float32Array; yb: Float32Array; dx: Float32Array; dw: Float32Array }

/** Forward (with and without bias) and both backward kernels on the given inputs. */
function convAll(g: Conv2dGeometry, x: Float32Array, w: Float32Array, bias: Float32Array, dy: Float32Array): ConvResults {
  const s = convSizes(g);
  const r = {
    y: new Float32Array(s.y).fill(NaN), yb: new Float32Array(s.y).fill(NaN),
    dx: new Float32Array(s.x).fill(NaN), dw: new Float32Array(s.w).fill(NaN),
  };
  be.conv2d(r.y, x, w, null, g);
  be.conv2d(r.yb, x, w, bias, g);
  be.conv2dBackwardInput(r.dx, dy, w, g);
  be.conv2dBackwardWeight(r.dw, dy, x, g);
  return r;
}

// ------------------------------------------------------------------ identity

test('cpu: cpuInfo names the ISA, the thread count and what runs conv2d and matmul', (t) => {
  const info = cpuInfo();
  t.log(info);
  t.regex(info, /^cpu \((avx512|avx2|sse2|generic), \d+ threads?( \(no OpenMP: .*\))?, (oneDNN \d+\.\d+\.\d+[^)]*|built-in GEMM: .+)\)$/);
  t.true(info.includes(`${getNumThreads()} thread`));
  if (!info.includes('oneDNN 2.')) {
    skipOrFail(t, 'dnnl', info);
    return;
  }
  // turned off in this thread only, and back on
  t.false(useOneDnn(false));
  t.regex(cpuInfo(), /built-in GEMM: oneDNN turned off in this thread/);
  t.true(useOneDnn(true));
  t.regex(cpuInfo(), /oneDNN 2\./);
});

test('cpu: the library links only libc, libm and libdl (oneDNN and OpenMP are loaded at run time), exports only bk_*', (t) => {
  const path = be.native.library.path;
  // declaring a function koffi cannot find throws
  for (const decl of ['int bk_set_num_threads(int32_t n)', 'int32_t bk_get_num_threads(void)',
    'int bk_cpu_info(uint8_t *buf, int64_t len)', 'int32_t bk_cpu_use_dnnl(int32_t enable)']) {
    t.notThrows(() => be.native.library.lib.func(decl), decl);
  }
  const dyn = spawnSync('readelf', ['-d', '--dyn-syms', '-W', path], { encoding: 'utf8' });
  if (dyn.status !== 0) {
    t.log(`readelf not available (${dyn.error?.message ?? dyn.stderr}): linkage not checked`);
    return;
  }
  const needed = [...dyn.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
  t.deepEqual(needed.filter((l) => !/^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|ld-linux[\w.-]*\.so\.\d)$/.test(l)), [],
    `NEEDED: ${needed.join(', ')}`);
  // defined global symbols: the C ABI only
  const defined = dyn.stdout.split('\n').filter((l) => /\s(FUNC|OBJECT)\s+GLOBAL\s+DEFAULT\s+\d+\s/.test(l))
    .map((l) => l.trim().split(/\s+/).pop()!.replace(/@.*$/, ''));
  t.true(defined.length > 30, `${defined.length} exported symbols`);
  t.deepEqual(defined.filter((n) => !n.startsWith('bk_')), []);
});

test('cpu: BAGUA_DNNL_LIB pointing nowhere runs the built-in GEMM and says why', (t) => {
  // oneDNN is looked for once per process: a child process with the override
  const script = `
    import { cpuBackend as be, cpuInfo, useOneDnn } from ${JSON.stringify(INDEX_URL)};
    const y = new Float32Array(4);
    be.conv2d(y, Float32Array.of(1, 2, 3, 4), Float32Array.of(2), null,
      { n: 1, c: 1, h: 2, w: 2, k: 1, r: 1, s: 1, oh: 2, ow: 2, strideH: 1, strideW: 1, padH: 0, padW: 0,
        dilH: 1, dilW: 1, groups: 1 });
    const c = new Float32Array(1);
    be.gemm(c, Float32Array.of(1, 2), Float32Array.of(3, 4), false, false, 1, 1, 2, 1, 0, 2, 1, 1, 1, 0, 0, 0);
    console.log(JSON.stringify({ info: cpuInfo(), on: useOneDnn(true), y: Array.from(y), c: c[0] }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8', env: { ...process.env, BAGUA_DNNL_LIB: '/nonexistent/libdnnl.so.2' },
  });
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { info: string; on: boolean; y: number[]; c: number };
  t.regex(out.info, /built-in GEMM: oneDNN not found: tried BAGUA_DNNL_LIB=\/nonexistent\/libdnnl\.so\.2 \(.*No such file/);
  t.false(out.on, 'useOneDnn(true) cannot turn on what did not load');
  t.deepEqual(out.y, [2, 4, 6, 8]);
  t.is(out.c, 11);
});

// ------------------------------------------------------------------ oneDNN vs built-in

const convCases: Array<[string, Conv2dGeometry]> = [
  ['3x3 pad 1', convGeom(2, 4, 8, 8, 6, 3, 3, { pad: [1, 1] })],
  ['stride 2, pad 1, odd sizes', convGeom(3, 5, 11, 9, 7, 3, 3, { stride: [2, 2], pad: [1, 1] })],
  ['dilation 2, pad 2', convGeom(2, 3, 10, 9, 4, 3, 3, { pad: [2, 2], dil: [2, 2] })],
  ['groups 2, stride 2 x 1', convGeom(2, 6, 9, 7, 4, 3, 3, { stride: [2, 1], pad: [1, 0], groups: 2 })],
  ['batch 1, odd 5x3 kernel, dilation 2 x 1', convGeom(1, 3, 13, 11, 5, 5, 3, { pad: [2, 1], dil: [2, 1] })],
  ['depthwise stride 2', convGeom(2, 8, 9, 9, 8, 3, 3, { stride: [2, 2], pad: [1, 1], groups: 8 })],
  ['stem 7x7 stride 2 pad 3', convGeom(2, 3, 23, 23, 8, 7, 7, { stride: [2, 2], pad: [3, 3] })],
  ['pointwise 1x1', convGeom(2, 16, 7, 7, 12, 1, 1)],
  ['1x1 stride 2 (unused right edge)', convGeom(1, 4, 6, 6, 3, 1, 1, { stride: [2, 2] })],
  ['input smaller than the kernel, large pad', convGeom(1, 2, 3, 3, 3, 5, 5, { pad: [3, 3] })],
  ['stride 3 leaving columns out', convGeom(2, 3, 10, 11, 4, 2, 2, { stride: [3, 3] })],
  ['1x1 with padding wider than the kernel', convGeom(2, 16, 3, 4, 8, 1, 1, { pad: [3, 2] })],
  ['dilation wider than the input', convGeom(1, 16, 5, 5, 16, 3, 3, { pad: [4, 4], dil: [4, 4], groups: 4 })],
  ['wide: [4,32,16,16] x [32,32,3,3]', convGeom(4, 32, 16, 16, 32, 3, 3, { pad: [1, 1] })],
];

for (const [name, g] of convCases) {
  test(`cpu: conv2d on oneDNN matches the built-in path: ${name}`, (t) => {
    if (!needDnnl(t)) return;
    const s = convSizes(g);
    const x = randn(s.x, 1), w = randn(s.w, 2), bias = randn(g.k, 3), dy = randn(s.y, 4);
    const dnnl = convAll(g, x, w, bias, dy);
    const ref = withDnnl(false, () => convAll(g, x, w, bias, dy));
    // the scale of each output: the same sums over absolute values
    const sc = withDnnl(false, () => convAll(g, abs(x), abs(w), abs(bias), abs(dy)));
    closeScaled(t, dnnl.y, ref.y, sc.y, 'forward');
    closeScaled(t, dnnl.yb, ref.yb, sc.yb, 'forward with bias');
    closeScaled(t, dnnl.dx, ref.dx, sc.dx, 'backward input');
    closeScaled(t, dnnl.dw, ref.dw, sc.dw, 'backward weight');
    // a second call runs the cached primitives on other data
    const x2 = randn(s.x, 5);
    const again = convAll(g, x2, w, bias, dy);
    const ref2 = withDnnl(false, () => convAll(g, x2, w, bias, dy));
    const sc2 = withDnnl(false, () => convAll(g, abs(x2), abs(w), abs(bias), abs(dy)));
    closeScaled(t, again.yb, ref2.yb, sc2.yb, 'forward again, cached primitive');
    closeScaled(t, again.dw, ref2.dw, sc2.dw, 'backward weight again, cached primitive');
  });
}

test('cpu: conv2d on oneDNN through more layers than the primitive cache holds', (t) => {
  if (!needDnnl(t)) return;
  // 70 geometries (the cache keeps 64 per thread) twice over: evicted ones are remade
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 70; i++) {
      const g = convGeom(1, 2, 4 + (i % 10), 5 + Math.floor(i / 10), 3, 3, 3, { pad: [1, 1] });
      const s = convSizes(g);
      const x = randn(s.x, i), w = randn(s.w, i + 100);
      const y = new Float32Array(s.y), want = new Float32Array(s.y), scale = new Float32Array(s.y);
      be.conv2d(y, x, w, null, g);
      withDnnl(false, () => {
        be.conv2d(want, x, w, null, g);
        be.conv2d(scale, abs(x), abs(w), null, g);
      });
      if (!closeScaled(t, y, want, scale, `round ${round}, geometry ${i}`)) return;
    }
  }
});

/** Where the padding of C (between rows and batch items) must come back unwritten, scale 1. */
const paddedScale = (r: GemmRun) => r.scale.map((v, j) => (v === 0 && r.got[j] === r.c0[j] ? 1 : v));

test('cpu: gemm on oneDNN (dnnl_sgemm) matches the built-in GEMM: transposes, leading dimensions, batches', (t) => {
  if (!needDnnl(t)) return;
  for (const [i, cs] of gemmCases.entries()) {
    const r = runGemmCase(be, i);
    const want = withDnnl(false, () => runGemmCase(be, i));
    closeScaled(t, r.got, want.got, paddedScale(want), `case ${i}: ${JSON.stringify(cs)}`);
  }
});

test('cpu: every built-in GEMM micro-kernel (BAGUA_CPU_ISA=avx2, sse2) agrees with the one this CPU picks', (t) => {
  // The ISA is picked once per process: each in a child process.
  const script = (isa: string) => `
    import { cpuBackend as be, cpuInfo, useOneDnn } from ${JSON.stringify(INDEX_URL)};
    import { gemmCases, runGemmCase } from ${JSON.stringify(new URL('./gemm-cases.js', import.meta.url).href)};
    useOneDnn(false);
    if (!cpuInfo().startsWith('cpu (${isa},')) throw new Error('BAGUA_CPU_ISA=${isa} ignored: ' + cpuInfo());
    console.log(JSON.stringify(gemmCases.map((_, i) => Array.from(runGemmCase(be, i).got))));
  `;
  const mine = withDnnl(false, () => gemmCases.map((_, i) => runGemmCase(be, i)));
  for (const isa of ['avx2', 'sse2']) {
    if (isa === 'avx2' && !/^cpu \((avx512|avx2),/.test(cpuInfo())) {
      t.log('no AVX2 on this CPU: the avx2 micro-kernel cannot run here');
      continue;
    }
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script(isa)], {
      encoding: 'utf8', env: { ...process.env, BAGUA_CPU_ISA: isa }, maxBuffer: 64 << 20,
    });
    t.is(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as number[][];
    for (const [i, want] of mine.entries()) {
      closeScaled(t, Float32Array.from(got[i]!), want.got, paddedScale(want), `${isa}, case ${i}: ${JSON.stringify(gemmCases[i])}`);
    }
  }
});

// ------------------------------------------------------------------ threads

test('cpu: setNumThreads validates its argument with a clear message', (t) => {
  for (const bad of [0, -1, 1.5, Number.NaN, Infinity, MAX_NUM_THREADS + 1]) {
    const err = t.throws(() => setNumThreads(bad));
    t.is(err!.message, `setNumThreads: n must be an integer from 1 to ${MAX_NUM_THREADS}, got ${bad}`);
  }
  t.throws(() => setNumThreads('2' as unknown as number), { message: /must be an integer/ });
  withThreads(3, () => {
    t.is(getNumThreads(), 3);
    t.regex(cpuInfo(), /, 3 threads, /);
  });
  withThreads(1, () => t.regex(cpuInfo(), /, 1 thread, /));
  // the C function checks too
  const set = be.native.library.lib.func('int bk_set_num_threads(int32_t n)') as (n: number) => number;
  t.not(set(0), 0);
  t.regex(be.native.library.lastError(), /bk_set_num_threads: n must be an integer in \[1, 1024\] \(got 0\)/);
});

test('cpu: the default thread count is cores / LOCAL_WORLD_SIZE, or BAGUA_NUM_THREADS', (t) => {
  const cores = availableParallelism();
  const script = `import { cpuBackend } from ${JSON.stringify(INDEX_URL)}; console.log(cpuBackend.getNumThreads());`;
  const run = (env: Record<string, string>) => {
    const base = { ...process.env };
    delete base['BAGUA_NUM_THREADS'];
    delete base['LOCAL_WORLD_SIZE'];
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...base, ...env } });
    t.is(r.status, 0, r.stderr);
    return Number(r.stdout.trim().split('\n').pop());
  };
  t.is(run({}), cores);
  t.is(run({ LOCAL_WORLD_SIZE: '2' }), Math.max(1, Math.floor(cores / 2)));
  t.is(run({ LOCAL_WORLD_SIZE: String(cores * 4) }), 1);
  t.is(run({ LOCAL_WORLD_SIZE: '2', BAGUA_NUM_THREADS: '3' }), 3);
  t.is(run({ BAGUA_NUM_THREADS: 'lots' }), cores, 'an invalid override is ignored');
});

test('cpu: the thread count belongs to the calling thread (a worker starts from the default)', async (t) => {
  const code = `
    import { parentPort } from 'node:worker_threads';
    const k = await import(${JSON.stringify(INDEX_URL)});
    const before = k.cpuBackend.getNumThreads();
    k.cpuBackend.setNumThreads(5);
    // make (and at exit release) this thread's oneDNN primitives
    const y = new Float32Array(2 * 4 * 6 * 6);
    k.cpuBackend.conv2d(y, new Float32Array(2 * 3 * 6 * 6).fill(1), new Float32Array(4 * 3 * 9).fill(1), null,
      { n: 2, c: 3, h: 6, w: 6, k: 4, r: 3, s: 3, oh: 6, ow: 6, strideH: 1, strideW: 1, padH: 1, padW: 1,
        dilH: 1, dilW: 1, groups: 1 });
    parentPort.postMessage({ before, after: k.cpuBackend.getNumThreads(), centre: y[2 * 6 + 2] });
  `;
  const mine = getNumThreads();
  const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`));
  // listeners first: a worker that ends before this thread looks delivers both events at once
  const exited = new Promise((resolve) => w.once('exit', resolve));
  const msg = await new Promise<{ before: number; after: number; centre: number }>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  t.is(await exited, 0);
  t.is(msg.before, defaultThreads(), 'a new thread starts from the default, not from its parent');
  t.is(msg.after, 5);
  t.is(msg.centre, 27);
  t.is(getNumThreads(), mine, 'the worker did not change this thread');
});

function defaultThreads(): number {
  const env = Number(process.env['BAGUA_NUM_THREADS']);
  if (Number.isInteger(env) && env >= 1 && env <= MAX_NUM_THREADS) return env;
  const local = Number(process.env['LOCAL_WORLD_SIZE']);
  return Math.max(1, Math.floor(availableParallelism() / (Number.isInteger(local) && local >= 1 ? local : 1)));
}

/** Every BN primitive on one layout; the outputs, concatenated per kernel. */
function bnAll(n: number, c: number, hw: number, seed: number): Record<string, Float32Array> {
  const total = n * c * hw;
  const x = randn(total, seed, 0.5, 2), dy = randn(total, seed + 1);
  const weight = randn(c, seed + 2), bias = randn(c, seed + 3);
  const stats = new Float32Array(2 * c + 2);
  be.bnStats(stats, x, n, c, hw, 0);
  const mean = stats.slice(0, c), invstd = new Float32Array(c);
  be.bnInvstd(invstd, stats.slice(c, 2 * c), c, 1e-5);
  const y = new Float32Array(total);
  be.bnElemt(y, x, mean, invstd, weight, bias, n, c, hw);
  const sums = new Float32Array(2 * c), gw = new Float32Array(c), gb = new Float32Array(c);
  be.bnBackwardReduce(sums, gw, gb, dy, x, mean, invstd, n, c, hw);
  const dx = new Float32Array(total);
  be.bnBackwardElemt(dx, dy, x, mean, invstd, weight, sums, Float32Array.of(n * hw), n, c, hw);
  return { stats, y, sums, gw, gb, dx };
}

test('cpu: batch-norm kernels give the same results on 1, 2 and 3 threads', (t) => {
  // planes (hw >= 64), with a plane length that is not a multiple of 16, and rows (hw < 64)
  for (const [n, c, hw] of [[8, 16, 32 * 32], [5, 7, 1000], [4096, 24, 1], [300, 10, 9]] as const) {
    const one = withThreads(1, () => bnAll(n, c, hw, n + c));
    for (const nt of [2, 3]) {
      const more = withThreads(nt, () => bnAll(n, c, hw, n + c));
      for (const key of Object.keys(one)) close(t, more[key]!, one[key]!, `[${n}, ${c}, ${hw}] ${key}, ${nt} threads`);
      // the reductions split by channel or column: each is computed exactly as on one thread
      t.deepEqual(more['stats'], one['stats'], `[${n}, ${c}, ${hw}] stats are identical on ${nt} threads`);
      t.deepEqual(more['sums'], one['sums'], `[${n}, ${c}, ${hw}] sums are identical on ${nt} threads`);
    }
  }
});

test('cpu: elementwise, sum, softmax, pooling and the built-in conv2d / gemm give the same results on 1, 2 and 3 threads', (t) => {
  const run = () => {
    const out: Record<string, Float32Array> = {};
    const n = 100_003;
    const a = randn(n, 1), b = randn(n, 2);
    out['add'] = new Float32Array(n);
    be.binary('add', out['add'], a, [1], b, [1], [n]);
    out['mulBroadcast'] = new Float32Array(300 * 317);
    be.binary('mul', out['mulBroadcast'], a, [317, 1], b, [0, 1], [300, 317]);
    out['subTransposed'] = new Float32Array(317 * 300);
    be.binary('sub', out['subTransposed'], a, [1, 317], b, [300, 1], [317, 300]);
    out['exp'] = new Float32Array(n);
    be.unary('exp', out['exp'], a, n);
    out['sumRows'] = new Float32Array(3);
    be.sum(out['sumRows'], randn(3 * 200_000, 3), 3, 200_000, 1);
    out['sumCols'] = new Float32Array(7 * 300);
    be.sum(out['sumCols'], randn(7 * 50 * 300, 4), 7, 50, 300);
    out['softmax'] = new Float32Array(400 * 250);
    be.softmax(out['softmax'], randn(400 * 250, 5), 400, 250, true);
    out['softmaxBackward'] = new Float32Array(400 * 250);
    be.softmaxBackward(out['softmaxBackward'], randn(400 * 250, 14), out['softmax'], 400, 250, true);
    const pg = { planes: 64, h: 33, w: 31, oh: 17, ow: 16, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1,
      dilH: 1, dilW: 1, countIncludePad: false };
    const px = randn(64 * 33 * 31, 12), pdy = randn(64 * 17 * 16, 13);
    out['maxPool'] = new Float32Array(64 * 17 * 16);
    const idx = new Int32Array(64 * 17 * 16);
    be.maxPool2d(out['maxPool'], idx, px, pg);
    out['maxPoolBackward'] = new Float32Array(px.length);
    be.maxPool2dBackward(out['maxPoolBackward'], pdy, idx, pg);
    out['avgPoolBackward'] = new Float32Array(px.length);
    be.avgPool2dBackward(out['avgPoolBackward'], pdy, pg);
    // the built-in conv2d splits images (batch 3) or, for one image, each im2col and GEMM
    for (const [name, g] of [
      ['conv', convGeom(3, 8, 20, 20, 16, 3, 3, { pad: [1, 1], stride: [2, 1] })],
      ['convBatch1Grouped', convGeom(1, 8, 24, 24, 32, 3, 3, { pad: [1, 1], groups: 2 })],
    ] as const) {
      const s = convSizes(g);
      const r = withDnnl(false, () => convAll(g, randn(s.x, 6), randn(s.w, 7), randn(g.k, 9), randn(s.y, 8)));
      for (const [key, v] of Object.entries(r)) out[`${name}.${key}`] = v;
    }
    out['gemm'] = new Float32Array(150 * 170);
    withDnnl(false, () => be.gemm(out['gemm']!, randn(150 * 190, 10), randn(190 * 170, 11), false, false,
      150, 170, 190, 1, 0, 190, 170, 170, 1, 0, 0, 0));
    return out;
  };
  const one = withThreads(1, run);
  for (const nt of [2, 3]) {
    const more = withThreads(nt, run);
    for (const key of Object.keys(one)) t.deepEqual(more[key], one[key], `${key}, ${nt} threads`);
  }
});

test('cpu: a thread rank takes its default from its worker\'s env (LOCAL_WORLD_SIZE of the threads launcher)', async (t) => {
  const code = `
    import { parentPort } from 'node:worker_threads';
    const k = await import(${JSON.stringify(INDEX_URL)});
    parentPort.postMessage(k.cpuBackend.getNumThreads());
  `;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'BAGUA_NUM_THREADS') env[k] = v;
  env['LOCAL_WORLD_SIZE'] = String(availableParallelism() * 2);
  const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), { env });
  const n = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  t.is(n, 1, 'twice as many local ranks as cores: one thread each');
});
