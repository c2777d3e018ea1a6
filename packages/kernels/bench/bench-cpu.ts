/**
 * CPU batch-norm benchmark (single thread), two paths on the same shapes:
 *
 *   kernel  the C ABI called directly on preallocated buffers: training forward (stats +
 *           merge of one rank + elemt) and forward + backward (+ backward reduce +
 *           backward elemt), against a memory copy measured in the same run and against
 *           PyTorch's torch.nn.functional.batch_norm (and its autograd backward);
 *   module  what a user runs: nn.BatchNorm2d (nn.BatchNorm1d for the 2D shape) in training,
 *           `y = bn.forward(x)` and `y = bn.forward(x); y.backward(dy)` through autograd with
 *           a fixed dy (x requires grad, as inside a network), gradients zeroed before every
 *           repetition as a user would (bn.zeroGrad(), x.grad = null, and endStep() where
 *           @bagua/core has it, as in a loop without an optimizer), against PyTorch's
 *           nn.BatchNorm2d / nn.BatchNorm1d module doing the same (zero_grad(set_to_none=True)).
 *
 * Both sides on 1 thread: setNumThreads(1), torch.set_num_threads(1).
 * Goals (issue 9): module forward >= 2x PyTorch, module forward + backward >= 1.5x PyTorch,
 * on every shape; the end of the output says met / NOT met per shape.
 *
 * Bytes that must move (kernel path): forward = 3 passes over the input (read for stats,
 * read + write for elemt); forward + backward adds 5 (read dy and x for the reduce, read dy
 * and x and write dx for elemt). The bandwidth bound is those bytes at copy speed, copy GB/s
 * counting its read and its write (the faster of bk_copy_f32 and TypedArray.set).
 *
 * The machine may be shared, so measurements are interleaved: each round measures, shape by
 * shape and back to back, the copy, our four passes and PyTorch's four (kept running in one
 * child process), each for about BENCH_SECONDS as the median of its repetitions. Times
 * reported are medians over rounds; ratios are medians of the per-round ratios (PyTorch time
 * over ours: above 1 means ours is faster), so a burst of load elsewhere does not land on one
 * side of a ratio only. Module repetitions are timed one by one, with the gradient zeroing
 * (and endStep) and one turn of the event loop between them, outside the timed region.
 *
 *   pnpm bench:cpu    (env BENCH_SECONDS: time per measurement, default 0.3;
 *                      BENCH_ROUNDS: rounds, default 5;
 *                      BENCH_SHAPES: e.g. "8x64x28x28,64x256" (default the three below);
 *                      BENCH_PATHS: "kernel,module" (default both);
 *                      BENCH_MAIN=0: skip this PyTorch table, keep the issue-13 rows below)
 */
import { endStep, F, nn, tensor, type Tensor } from '@bagua/core';
import { cpuBackend as be, cpuInfo } from '../src/index.js';
import {
  bnDims, busyWarning, JsonLineChild, loud, median, randomArray, tableHeader, tableRow, turnEventLoop,
  useKernelThreads,
} from './common.js';

const DEFAULT_SHAPES = '32x64x56x56,64x256x14x14,256x1024';
const SHAPES: number[][] = (process.env.BENCH_SHAPES || DEFAULT_SHAPES).split(',').map((s) => s.trim().split('x').map(Number));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 0.3);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 5));
const PATHS = new Set((process.env.BENCH_PATHS ?? 'kernel,module').split(',').map((s) => s.trim()));
const GOAL_FWD = 2;
const GOAL_FWD_BWD = 1.5;

for (const s of SHAPES) {
  if (s.length < 2 || s.length > 5 || s.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new Error(`BENCH_SHAPES: shapes are NxC[xHxW...] (2D to 5D), got '${s.join('x')}'`);
  }
}
for (const p of PATHS) if (p !== 'kernel' && p !== 'module') throw new Error(`BENCH_PATHS: unknown path '${p}' (kernel, module)`);

/** Median seconds of fn over repetitions filling about SECONDS (at least 5, after 2 warm-ups). */
function timeIt(fn: () => void): number {
  fn();
  fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < 5 || (performance.now() - start < SECONDS * 1000 && times.length < 1000)) {
    const t0 = performance.now();
    fn();
    times.push((performance.now() - t0) / 1000);
  }
  return median(times);
}

/**
 * timeIt for the module path: `between` (the gradient zeroing) and one turn of the event loop
 * run before every repetition, untimed; each repetition is timed alone.
 */
async function timeModule(fn: () => void, between: () => void): Promise<number> {
  const times: number[] = [];
  const start = performance.now();
  for (let i = 0; i < 2 || times.length < 5 || (performance.now() - start < SECONDS * 1000 && times.length < 1000); i++) {
    between();
    await turnEventLoop();
    const t0 = performance.now();
    fn();
    const t = (performance.now() - t0) / 1000;
    if (i >= 2) times.push(t);
  }
  return median(times);
}

/** The buffers of one shape, allocated once, and its measurements. */
function makeCase(shape: number[]) {
  const { n, c, hw, total } = bnDims(shape);
  const x = randomArray(total, 1), dy = randomArray(total, 2);
  const y = new Float32Array(total), dx = new Float32Array(total), tmp = new Float32Array(total);
  const w = randomArray(c, 3), b = randomArray(c, 4);
  const rm = new Float32Array(c), rv = new Float32Array(c).fill(1);
  const stats = new Float32Array(2 * c + 2), mean = new Float32Array(c), invstd = new Float32Array(c);
  const count = new Float32Array(1), sums = new Float32Array(2 * c), gw = new Float32Array(c), gb = new Float32Array(c);
  const forward = () => {
    be.bnStats(stats, x, n, c, hw, 0);
    be.bnMergeStats(mean, invstd, count, stats, 1, c, 2 * c + 2, 1e-5, rm, rv, 0.1);
    be.bnElemt(y, x, mean, invstd, w, b, n, c, hw);
  };
  // The module path: a fresh layer (weight 1, bias 0, as PyTorch's), x requiring grad, a fixed dy.
  const bn = shape.length === 2 || shape.length === 3 ? new nn.BatchNorm1d(c)
    : shape.length === 4 ? new nn.BatchNorm2d(c) : new nn.BatchNorm3d(c);
  bn.train();
  const xt: Tensor = tensor(x, { shape });
  xt.requiresGrad = true;
  const dyt: Tensor = tensor(dy, { shape });
  // Between repetitions, as a user's loop without an optimizer: gradients zeroed and the step
  // ended (what the step before made is then released).
  const zeroGrads = () => {
    bn.zeroGrad();
    xt.grad = null;
    endStep();
  };
  return {
    total,
    layer: bn.constructor.name,
    /** copy GB/s (read + write): the faster of bk_copy_f32 and TypedArray.set */
    copyGBs: () => (2 * total * 4) / Math.min(timeIt(() => be.copy(tmp, x, total)), timeIt(() => tmp.set(x))) / 1e9,
    fwd: () => timeIt(forward),
    fwdBwd: () => timeIt(() => {
      forward();
      be.bnBackwardReduce(sums, gw, gb, dy, x, mean, invstd, n, c, hw);
      be.bnBackwardElemt(dx, dy, x, mean, invstd, w, sums, count, n, c, hw);
    }),
    modFwd: () => timeModule(() => { bn.forward(xt); }, zeroGrads),
    modFwdBwd: () => timeModule(() => { bn.forward(xt).backward(dyt); }, zeroGrads),
  };
}

// One request per line on stdin ({"shape": [...], "paths": [...]}), one JSON result per line on stdout.
const TORCH_SCRIPT = `
import json, sys, time, statistics
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
seconds = float(sys.argv[1])
def time_it(fn, between=None):
    times = []; start = time.perf_counter(); i = 0
    while i < 2 or len(times) < 5 or (time.perf_counter() - start < seconds and len(times) < 1000):
        if between is not None: between()
        t0 = time.perf_counter(); fn(); t = time.perf_counter() - t0
        if i >= 2: times.append(t)
        i += 1
    return statistics.median(times)
cases = {}
print(json.dumps({"version": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    shape = req["shape"]; paths = req["paths"]
    key = tuple(shape)
    if key not in cases:
        c = shape[1]
        x = torch.rand(shape) - 0.5; dy = torch.rand(shape) - 0.5
        w = torch.rand(c); b = torch.rand(c); rm = torch.zeros(c); rv = torch.ones(c)
        xg = x.clone().requires_grad_(); wg = w.clone().requires_grad_(); bg = b.clone().requires_grad_()
        layer = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}[len(shape)]
        bn = layer(c); bn.train()
        xm = x.clone().requires_grad_()
        cases[key] = (x, dy, w, b, rm, rv, xg, wg, bg, bn, xm)
    x, dy, w, b, rm, rv, xg, wg, bg, bn, xm = cases[key]
    out = {}
    c0 = time.process_time(); w0 = time.perf_counter()
    if "kernel" in paths:
        with torch.no_grad():
            out["fwd"] = time_it(lambda: F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5))
        def fb():
            xg.grad = None; wg.grad = None; bg.grad = None
            F.batch_norm(xg, rm, rv, wg, bg, training=True, momentum=0.1, eps=1e-5).backward(dy)
        out["fwdBwd"] = time_it(fb)
    if "module" in paths:
        def zero_grads():
            bn.zero_grad(set_to_none=True); xm.grad = None
        out["modFwd"] = time_it(lambda: bn(xm), zero_grads)
        out["modFwdBwd"] = time_it(lambda: bn(xm).backward(dy), zero_grads)
    out["cpu"] = time.process_time() - c0; out["wall"] = time.perf_counter() - w0
    print(json.dumps(out), flush=True)
`;

type Pass = 'fwd' | 'fwdBwd' | 'modFwd' | 'modFwdBwd';
type TorchAnswer = Partial<Record<Pass, number>> & { cpu: number; wall: number };

interface Sample {
  copy: number;
  ours: Partial<Record<Pass, number>>;
  torch: Partial<Record<Pass, number>> | null;
}

const ROWS: { path: 'kernel' | 'module'; pass: string; key: Pass; passes: number }[] = [
  { path: 'kernel', pass: 'fwd', key: 'fwd', passes: 3 },
  { path: 'kernel', pass: 'fwd+bwd', key: 'fwdBwd', passes: 8 },
  { path: 'module', pass: 'fwd', key: 'modFwd', passes: 3 },
  { path: 'module', pass: 'fwd+bwd', key: 'modFwdBwd', passes: 8 },
];

async function main(): Promise<void> {
  const threads = useKernelThreads(1);
  console.log(`bagua-ts CPU batch-norm benchmark: ${[...PATHS].join(' and ')} path(s), ${ROUNDS} interleaved rounds of ` +
    `~${SECONDS}s per measurement; ${threads.note}; library ${be.native.library.path}`);
  const busyStart = busyWarning('at start');
  if (busyStart) console.log(busyStart);
  const started = await JsonLineChild.start(['-c', TORCH_SCRIPT, String(SECONDS)], {
    OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1',
  });
  const torch = typeof started === 'string' ? null : started.child;
  if (typeof started === 'string') {
    console.log(loud([`PyTorch NOT measured: ${started}`,
      'install Debian\'s python3-torch (/usr/bin/python3) to compare; every ratio and goal below reads n/a']));
  } else {
    console.log(`PyTorch ${started.hello.version}, ${started.hello.threads} thread(s): kernel path F.batch_norm(training=True) ` +
      'and its autograd backward; module path nn.BatchNorm{1,2,3}d(c).train() forward, forward + autograd backward');
  }
  const cases = SHAPES.map(makeCase);
  const rows = ROWS.filter((r) => PATHS.has(r.path));
  const samples: Sample[][] = SHAPES.map(() => []);
  // Cores each side used while measuring (process CPU time / wall time): 1 when single-threaded.
  const cores = { oursCpu: 0, oursWall: 0, torchCpu: 0, torchWall: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < SHAPES.length; i++) {
      const k = cases[i]!;
      const sample: Sample = { copy: k.copyGBs(), ours: {}, torch: null };
      const c0 = process.cpuUsage(), w0 = performance.now();
      if (PATHS.has('kernel')) {
        sample.ours.fwd = k.fwd();
        sample.ours.fwdBwd = k.fwdBwd();
      }
      if (PATHS.has('module')) {
        sample.ours.modFwd = await k.modFwd();
        sample.ours.modFwdBwd = await k.modFwdBwd();
      }
      const c = process.cpuUsage(c0);
      cores.oursCpu += (c.user + c.system) / 1000;
      cores.oursWall += performance.now() - w0;
      if (torch) {
        const answer = await torch.request<TorchAnswer>({ shape: SHAPES[i], paths: [...PATHS] });
        cores.torchCpu += answer.cpu;
        cores.torchWall += answer.wall;
        sample.torch = answer;
      }
      samples[i]!.push(sample);
    }
  }
  torch?.stop();

  const header = ['shape', 'path', 'pass', 'ms ours', 'ms torch', 'ratio', 'GB/s', 'copy GB/s', 'of bound'];
  const widths = [18, 6, 8, 9, 9, 7, 7, 9, 8];
  console.log('');
  console.log(tableHeader(header, widths));
  const ratios: Map<string, number | null>[] = SHAPES.map(() => new Map());
  SHAPES.forEach((shape, i) => {
    const ss = samples[i]!, total = cases[i]!.total;
    const copy = median(ss.map((s) => s.copy));
    for (const row of rows) {
      const ours = (s: Sample) => s.ours[row.key]!;
      const t = median(ss.map(ours));
      const gbs = (row.passes * total * 4) / t / 1e9;
      // per-round ratios: achieved bandwidth over that round's copy, PyTorch time over ours
      const ofBound = median(ss.map((s) => (row.passes * total * 4) / ours(s) / 1e9 / s.copy));
      const measured = ss.every((s) => s.torch?.[row.key] !== undefined);
      const tt = measured ? median(ss.map((s) => s.torch![row.key]!)) : null;
      const ratio = measured ? median(ss.map((s) => s.torch![row.key]! / ours(s))) : null;
      ratios[i]!.set(row.key, ratio);
      console.log(tableRow([
        `[${shape.join(',')}]`, row.path, row.pass, (t * 1e3).toFixed(3), tt === null ? 'n/a' : (tt * 1e3).toFixed(3),
        ratio === null ? 'n/a' : `${ratio.toFixed(2)}x`, gbs.toFixed(2), copy.toFixed(2), `${(ofBound * 100).toFixed(0)}%`,
      ], widths));
    }
  });
  console.log('');
  console.log('ms ours, ms torch, copy GB/s: medians over rounds; ratio (PyTorch time / ours, above 1x: ours faster) and ' +
    'of bound (achieved GB/s over copy GB/s, forward moving 3x the input and forward+backward 8x): medians of ' +
    'per-round ratios. Module rows: layers ' + [...new Set(cases.map((k) => k.layer))].join(', ') + '.');
  const oursCores = cores.oursCpu / cores.oursWall;
  const torchCores = cores.torchWall > 0 ? cores.torchCpu / cores.torchWall : null;
  console.log(`cores used while measuring (process CPU time / wall time): ours ${oursCores.toFixed(2)}, PyTorch ` +
    `${torchCores === null ? 'n/a' : torchCores.toFixed(2)} (1 thread asked of both)`);
  // Node's own helper threads (garbage collection, compilation) add a little; half a core more is kernels threading.
  const overused = oursCores > 1.5;
  if (overused) {
    console.log(loud([`ours used ${oursCores.toFixed(2)} cores on average, not 1: kernels threading on their own ` +
      '(setNumThreads missing or refused?); the ratios below are NOT like for like']));
  }
  const busyEnd = busyWarning('at end');
  if (busyEnd) console.log(busyEnd);
  if (PATHS.has('module')) {
    console.log('');
    console.log(`goals (issue 9, 1 thread, same run): module forward >= ${GOAL_FWD}x PyTorch, module forward+backward ` +
      `>= ${GOAL_FWD_BWD}x PyTorch`);
    const verdict = (r: number | null | undefined, goal: number) =>
      r === null || r === undefined ? 'n/a (PyTorch not measured)'
        : `${r >= goal ? 'met' : 'NOT met'} (${r.toFixed(2)}x${overused ? ', ours on more than 1 core: not like for like' : ''})`;
    SHAPES.forEach((shape, i) => {
      console.log(`  [${shape.join(',')}]: module fwd ${verdict(ratios[i]!.get('modFwd'), GOAL_FWD)}; ` +
        `module fwd+bwd ${verdict(ratios[i]!.get('modFwdBwd'), GOAL_FWD_BWD)}`);
    });
  }
}

/**
 * Channels-last rows (issue 13): batch norm on the same data stored NCHW and NHWC, 1 thread.
 * Kernel path: the C ABI on [n, c, hw] and on the NHWC storage as [N*H*W, C, 1] (what core's
 * bnLayout passes); module path: nn.BatchNorm2d/3d forward (+ backward) on a row-major and a
 * channels-last tensor. Interleaved rounds; the ratio is the median of per-round NHWC / NCHW
 * times (above 1: channels-last slower). Goal: within 10%. BENCH_CHANNELS_LAST=0 skips it.
 */
async function channelsLastRows(): Promise<void> {
  const shapes = SHAPES.filter((s) => s.length === 4 || s.length === 5);
  if (process.env.BENCH_CHANNELS_LAST === '0' || shapes.length === 0) return;
  const GOAL = 1.1;
  const header = ['shape', 'path', 'pass', 'ms NCHW', 'ms NHWC', 'NHWC/NCHW', 'goal <= 1.10'];
  const widths = [18, 6, 8, 9, 9, 10, 12];
  console.log('');
  console.log(`channels-last batch norm against NCHW on the same data (1 thread, ${ROUNDS} interleaved rounds):`);
  console.log(tableHeader(header, widths));
  for (const shape of shapes) {
    const { n, c, hw, total } = bnDims(shape);
    // kept: the module rows end a step between repetitions
    const xt = tensor(randomArray(total, 1), { shape }).keep();
    const dyt = tensor(randomArray(total, 2), { shape }).keep();
    const xcl = xt.contiguous('channelsLast').detach().keep();
    const dycl = dyt.contiguous('channelsLast').detach().keep();
    const kernel = (x: Float32Array, dy: Float32Array, rows: number, inner: number) => {
      const y = new Float32Array(total), dx = new Float32Array(total);
      const w = randomArray(c, 3), b = randomArray(c, 4), rm = new Float32Array(c), rv = new Float32Array(c).fill(1);
      const stats = new Float32Array(2 * c + 2), mean = new Float32Array(c), invstd = new Float32Array(c);
      const count = new Float32Array(1), sums = new Float32Array(2 * c), gw = new Float32Array(c), gb = new Float32Array(c);
      const fwd = () => {
        be.bnStats(stats, x, rows, c, inner, 0);
        be.bnMergeStats(mean, invstd, count, stats, 1, c, 2 * c + 2, 1e-5, rm, rv, 0.1);
        be.bnElemt(y, x, mean, invstd, w, b, rows, c, inner);
      };
      return {
        fwd: () => timeIt(fwd),
        fwdBwd: () => timeIt(() => {
          fwd();
          be.bnBackwardReduce(sums, gw, gb, dy, x, mean, invstd, rows, c, inner);
          be.bnBackwardElemt(dx, dy, x, mean, invstd, w, sums, count, rows, c, inner);
        }),
      };
    };
    const host = (t: Tensor) => t.toArray({ order: 'storage' }) as Float32Array;
    const kNchw = kernel(host(xt), host(dyt), n, hw);
    const kNhwc = kernel(host(xcl), host(dycl), n * hw, 1);
    const module = (x: Tensor, dy: Tensor) => {
      const bn = shape.length === 4 ? new nn.BatchNorm2d(c) : new nn.BatchNorm3d(c);
      const leaf = x.detach().keep();
      leaf.requiresGrad = true;
      const zero = () => {
        bn.zeroGrad();
        leaf.grad = null;
        endStep();
      };
      return {
        fwd: () => timeModule(() => { bn.forward(leaf); }, zero),
        fwdBwd: () => timeModule(() => { bn.forward(leaf).backward(dy); }, zero),
      };
    };
    const mNchw = module(xt, dyt);
    const mNhwc = module(xcl, dycl);
    const rows: [string, string, () => number | Promise<number>, () => number | Promise<number>][] = [];
    if (PATHS.has('kernel')) rows.push(['kernel', 'fwd', kNchw.fwd, kNhwc.fwd], ['kernel', 'fwd+bwd', kNchw.fwdBwd, kNhwc.fwdBwd]);
    if (PATHS.has('module')) rows.push(['module', 'fwd', mNchw.fwd, mNhwc.fwd], ['module', 'fwd+bwd', mNchw.fwdBwd, mNhwc.fwdBwd]);
    const times = rows.map(() => ({ a: [] as number[], b: [] as number[], r: [] as number[] }));
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < rows.length; i++) {
        const a = await rows[i]![2]();
        const b = await rows[i]![3]();
        times[i]!.a.push(a);
        times[i]!.b.push(b);
        times[i]!.r.push(b / a);
      }
    }
    for (const t of [xt, dyt, xcl, dycl]) t.dispose();
    rows.forEach(([path, pass], i) => {
      const r = median(times[i]!.r);
      console.log(tableRow([`[${shape.join(',')}]`, path, pass, (median(times[i]!.a) * 1e3).toFixed(3),
        (median(times[i]!.b) * 1e3).toFixed(3), `${r.toFixed(2)}x`, r <= GOAL ? 'met' : 'NOT met'], widths));
    });
  }
}

// BENCH_MAIN=0 skips the PyTorch comparison table (e.g. to time only the issue-13 rows below)
if (process.env.BENCH_MAIN !== '0') await main();
else console.log(`PyTorch table skipped (BENCH_MAIN=0); ${useKernelThreads(1).note}`);
await channelsLastRows();
await convPoolLayoutRows();

/**
 * Channels-last conv2d and pooling rows (issue 13): F.conv2d (3x3, 64 -> 64, padding 1) and
 * F.maxPool2d (3x3, stride 2, padding 1) / F.avgPool2d (2x2) forward + backward through core on
 * the same data stored NCHW and NHWC, 1 thread, interleaved rounds; and the permutation itself
 * (contiguous('channelsLast') and back, one bk_strided_copy each). The CPU's convolution reads
 * NHWC itself where oneDNN runs, its pooling always; elsewhere core permutes (the rows then show
 * what that costs). Times: process CPU time (1 kernel thread) and wall time, medians; the ratio is
 * the median of per-round NHWC / NCHW CPU times. Goal: within 10%.
 * BENCH_CONV_LAYOUT_SHAPES (default 8x64x56x56,32x64x56x56) picks the shapes; BENCH_CONV_LAYOUT=0 skips.
 */
async function convPoolLayoutRows(): Promise<void> {
  if (process.env.BENCH_CONV_LAYOUT === '0') return;
  const shapes = (process.env.BENCH_CONV_LAYOUT_SHAPES || '8x64x56x56,32x64x56x56').split(',')
    .map((s) => s.trim().split('x').map(Number));
  for (const s of shapes) {
    if (s.length !== 4 || s.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new Error(`BENCH_CONV_LAYOUT_SHAPES: shapes are NxCxHxW, got '${s.join('x')}'`);
    }
  }
  useKernelThreads(1);
  const GOAL = 1.1;
  const header = ['shape', 'op', 'pass', 'cpu ms NCHW', 'cpu ms NHWC', 'NHWC/NCHW', 'goal <= 1.10', 'wall ms NCHW / NHWC'];
  const widths = [18, 10, 8, 11, 11, 10, 12, 28];
  console.log('');
  console.log(`channels-last conv2d / pooling against NCHW on the same data (1 thread, ${ROUNDS} interleaved rounds, ` +
    `${cpuInfo()}):`);
  console.log(tableHeader(header, widths));
  for (const shape of shapes) {
    const [n, c, h, w] = shape as [number, number, number, number];
    const total = n * c * h * w;
    const x = tensor(randomArray(total, 1), { shape }).keep();
    const xcl = x.contiguous('channelsLast').detach().keep();
    const wt = tensor(randomArray(c * c * 9, 3).map((v) => v * 0.05), { shape: [c, c, 3, 3] }).keep();
    const wleaf = wt.detach().keep();
    wleaf.requiresGrad = true;
    const dyConv = tensor(randomArray(total, 2), { shape }).keep();
    const dyConvCl = dyConv.contiguous('channelsLast').detach().keep();
    const ph = Math.floor((h - 1) / 2) + 1, pw = Math.floor((w - 1) / 2) + 1;
    const dyMax = tensor(randomArray(n * c * ph * pw, 4), { shape: [n, c, ph, pw] }).keep();
    const dyMaxCl = dyMax.contiguous('channelsLast').detach().keep();
    const ah = Math.floor(h / 2), aw = Math.floor(w / 2);
    const dyAvg = tensor(randomArray(n * c * ah * aw, 5), { shape: [n, c, ah, aw] }).keep();
    const dyAvgCl = dyAvg.contiguous('channelsLast').detach().keep();
    // Process CPU time per repetition (1 kernel thread): on a shared machine wall time also
    // counts other processes' time slices; both are reported, the ratio is the CPU time's.
    const timeCpu = async (fn: () => void, between: () => void): Promise<{ wall: number; cpu: number }> => {
      const wall: number[] = [], cpu: number[] = [];
      const start = performance.now();
      for (let i = 0; i < 2 || wall.length < 5 || (performance.now() - start < SECONDS * 1000 && wall.length < 1000); i++) {
        between();
        await turnEventLoop();
        const c0 = process.cpuUsage(), t0 = performance.now();
        fn();
        const t = (performance.now() - t0) / 1000, c = process.cpuUsage(c0);
        if (i >= 2) {
          wall.push(t);
          cpu.push((c.user + c.system) / 1e6);
        }
      }
      return { wall: median(wall), cpu: median(cpu) };
    };
    const run = (input: Tensor, body: (leaf: Tensor) => void) => {
      const leaf = input.detach().keep();
      leaf.requiresGrad = true;
      const zero = () => {
        leaf.grad = null;
        wleaf.grad = null;
        endStep();
      };
      return () => timeCpu(() => body(leaf), zero);
    };
    const conv = (input: Tensor, dy: Tensor) => run(input, (l) => { F.conv2d(l, wleaf, null, { padding: 1 }).backward(dy); });
    const maxp = (input: Tensor, dy: Tensor) =>
      run(input, (l) => { F.maxPool2d(l, 3, { stride: 2, padding: 1 }).backward(dy); });
    const avgp = (input: Tensor, dy: Tensor) => run(input, (l) => { F.avgPool2d(l, 2).backward(dy); });
    const permute = (from: Tensor) => () => timeCpu(() => {
      const t = from.contiguous(from.memoryFormat === 'channelsLast' ? 'contiguous' : 'channelsLast');
      t.dispose();
    }, () => endStep());
    type Timer = () => Promise<{ wall: number; cpu: number }>;
    const rows: [string, string, Timer, Timer][] = [
      ['conv3x3', 'fwd+bwd', conv(x, dyConv), conv(xcl, dyConvCl)],
      ['maxPool3s2', 'fwd+bwd', maxp(x, dyMax), maxp(xcl, dyMaxCl)],
      ['avgPool2', 'fwd+bwd', avgp(x, dyAvg), avgp(xcl, dyAvgCl)],
      // not a ratio to meet: NCHW -> NHWC in the first column, NHWC -> NCHW in the second
      ['permute', 'copy', permute(x), permute(xcl)],
    ];
    const times = rows.map(() => ({ a: [] as number[], b: [] as number[], r: [] as number[], wa: [] as number[],
      wb: [] as number[], wr: [] as number[] }));
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < rows.length; i++) {
        const a = await rows[i]![2]();
        const b = await rows[i]![3]();
        const ti = times[i]!;
        ti.a.push(a.cpu);
        ti.b.push(b.cpu);
        ti.r.push(b.cpu / a.cpu);
        ti.wa.push(a.wall);
        ti.wb.push(b.wall);
        ti.wr.push(b.wall / a.wall);
      }
    }
    for (const t of [x, xcl, wt, wleaf, dyConv, dyConvCl, dyMax, dyMaxCl, dyAvg, dyAvgCl]) t.dispose();
    rows.forEach(([op, pass], i) => {
      const ti = times[i]!;
      const r = median(ti.r);
      const ms = (v: number[]) => (median(v) * 1e3).toFixed(2);
      console.log(tableRow([`[${shape.join(',')}]`, op, pass, ms(ti.a), ms(ti.b), `${r.toFixed(2)}x`,
        op === 'permute' ? '-' : r <= GOAL ? 'met' : 'NOT met', `${ms(ti.wa)} / ${ms(ti.wb)} (${median(ti.wr).toFixed(2)}x)`],
      widths));
    });
  }
}

/**
 * float16 / bfloat16 rows (issue 13): the kernel path's training forward (stats + merge +
 * elemt) on the same values stored as float32, bfloat16 and float16, 1 thread. Bytes that
 * must move: 3 passes over the input (read for stats, read + write for elemt) in the storage
 * dtype (4 or 2 bytes an element); "of bound" is that traffic at the copy speed measured in
 * the same round (bk_copy_f32, read + write) over the time taken. Speed-up: float32 time over
 * the half type's, median of per-round ratios. Goals: bfloat16 >= 1.6x float32 and >= 70% of
 * the copy bound. BENCH_DTYPES=0 skips it.
 */
async function dtypeRows(): Promise<void> {
  if (process.env.BENCH_DTYPES === '0' || !PATHS.has('kernel')) return;
  const header = ['shape', 'dtype', 'ms fwd', 'GB/s', 'of bound', 'vs float32', 'goal'];
  const widths = [18, 9, 9, 8, 9, 11, 22];
  console.log('');
  console.log(`batch-norm forward (kernel path) by storage dtype, 1 thread, ${ROUNDS} interleaved rounds ` +
    '(bytes: 3 passes in the storage dtype; bound: copy speed of the same round):');
  console.log(tableHeader(header, widths));
  for (const shape of SHAPES) {
    const { n, c, hw, total } = bnDims(shape);
    const x32 = randomArray(total, 1), tmp = new Float32Array(total);
    const xb = new Uint16Array(total), xh = new Uint16Array(total);
    be.castF32ToBf16!(xb, x32, total);
    be.castF32ToF16!(xh, x32, total);
    const w = randomArray(c, 3), b = randomArray(c, 4), rm = new Float32Array(c), rv = new Float32Array(c).fill(1);
    const stats = new Float32Array(2 * c + 2), mean = new Float32Array(c), invstd = new Float32Array(c);
    const count = new Float32Array(1);
    const y32 = new Float32Array(total), yb = new Uint16Array(total), yh = new Uint16Array(total);
    const merge = () => be.bnMergeStats(mean, invstd, count, stats, 1, c, 2 * c + 2, 1e-5, rm, rv, 0.1);
    const runs = {
      float32: () => { be.bnStats(stats, x32, n, c, hw, 0); merge(); be.bnElemt(y32, x32, mean, invstd, w, b, n, c, hw); },
      bfloat16: () => { be.bnStatsBf16!(stats, xb, n, c, hw, 0); merge(); be.bnElemtBf16!(yb, xb, mean, invstd, w, b, n, c, hw); },
      float16: () => { be.bnStatsF16!(stats, xh, n, c, hw, 0); merge(); be.bnElemtF16!(yh, xh, mean, invstd, w, b, n, c, hw); },
    } as const;
    const names = Object.keys(runs) as (keyof typeof runs)[];
    const t = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<keyof typeof runs, number[]>;
    const bound = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<keyof typeof runs, number[]>;
    const speed = { bfloat16: [] as number[], float16: [] as number[] };
    const gbs: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const copy = (2 * total * 4) / timeIt(() => be.copy(tmp, x32, total)) / 1e9;
      gbs.push(copy);
      for (const k of names) {
        const s = timeIt(runs[k]);
        t[k].push(s);
        const bytes = 3 * total * (k === 'float32' ? 4 : 2);
        bound[k].push(bytes / (copy * 1e9) / s);
      }
      speed.bfloat16.push(t.float32.at(-1)! / t.bfloat16.at(-1)!);
      speed.float16.push(t.float32.at(-1)! / t.float16.at(-1)!);
    }
    for (const k of names) {
      const ms = median(t[k]) * 1e3;
      const gb = (3 * total * (k === 'float32' ? 4 : 2)) / (median(t[k])) / 1e9;
      const of = median(bound[k]);
      const sp = k === 'float32' ? null : median(speed[k]);
      const goal = k === 'bfloat16' ? `${sp! >= 1.6 ? 'met' : 'NOT met'} >=1.6x; ${of >= 0.7 ? 'met' : 'NOT met'} >=70%` : '';
      console.log(tableRow([`[${shape.join(',')}]`, k, ms.toFixed(3), gb.toFixed(1), `${(of * 100).toFixed(0)}%`,
        sp === null ? '1.00x' : `${sp.toFixed(2)}x`, goal], widths));
    }
    console.log(`  copy ${median(gbs).toFixed(1)} GB/s (read + write) in the same rounds`);
  }
}

await dtypeRows();

/**
 * The Adam row (issue 14): one Adam step (bk_adam_f32, lr 1e-3, weight decay 0, no amsgrad) over
 * BENCH_ADAM_PARAMS parameters (default 25M; 0 skips it) on 1 thread, against the copy bound of
 * the same run: the step reads param, grad, exp_avg and exp_avg_sq and writes three of them,
 * 7 x 4 bytes per parameter; GB/s counts those. Of bound can pass 100%: the copy's counted read
 * + write hide a third stream (its writes read each line first, write-allocate), while the
 * step writes lines it has just read. PyTorch's torch.optim.Adam (foreach=False, 1
 * thread, its default on the CPU) on the same count, in a child process. Interleaved rounds;
 * medians; of bound and ratio (PyTorch time over ours) are medians of per-round ratios.
 */
async function adamRow(): Promise<void> {
  const n = Number(process.env.BENCH_ADAM_PARAMS ?? 25_000_000);
  if (n === 0) return;
  if (!Number.isInteger(n) || n < 0) throw new Error(`BENCH_ADAM_PARAMS: a parameter count, got '${process.env.BENCH_ADAM_PARAMS}'`);
  useKernelThreads(1);
  const p = randomArray(n, 11), g = randomArray(n, 12), m = new Float32Array(n), v = new Float32Array(n);
  const tmp = new Float32Array(n);
  let step = 0;
  const adam = () => {
    step += 1;
    const b1 = 0.9, b2 = 0.999;
    be.adam(p, m, v, null, g, n, b1, b2, 1 - b1, 1 - b2, 1e-8, 0, 1, 1e-3 / (1 - b1 ** step), Math.sqrt(1 - b2 ** step),
      false, false);
  };
  const script = `
import json, sys, time, statistics
import torch
torch.set_num_threads(1)
seconds = float(sys.argv[1]); n = int(sys.argv[2])
p = torch.rand(n).requires_grad_(); p.grad = torch.rand(n)
opt = torch.optim.Adam([p], lr=1e-3, foreach=False)
print(json.dumps({"version": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    times = []; start = time.perf_counter(); i = 0
    while i < 2 or len(times) < 5 or (time.perf_counter() - start < seconds and len(times) < 1000):
        t0 = time.perf_counter(); opt.step(); t = time.perf_counter() - t0
        if i >= 2: times.append(t)
        i += 1
    print(json.dumps({"step": statistics.median(times)}), flush=True)
`;
  const started = await JsonLineChild.start(['-c', script, String(SECONDS), String(n)], {
    OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1',
  });
  const torch = typeof started === 'string' ? null : started.child;
  const rounds: { copy: number; ours: number; torch: number | null }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const copy = (2 * n * 4) / Math.min(timeIt(() => be.copy(tmp, p, n)), timeIt(() => tmp.set(p))) / 1e9;
    const ours = timeIt(adam);
    const t = torch ? (await torch.request<{ step: number }>({})).step : null;
    rounds.push({ copy, ours, torch: t });
  }
  torch?.stop();
  const bytes = 7 * n * 4;
  const header = ['params', 'step', 'ms ours', 'ms torch', 'ratio', 'GB/s', 'copy GB/s', 'of bound'];
  const widths = [10, 14, 9, 9, 7, 7, 9, 8];
  console.log('');
  console.log(`Adam step (bk_adam_f32, 1 thread, ${ROUNDS} interleaved rounds; 7 x 4 bytes per parameter): ` +
    (typeof started === 'string' ? `PyTorch NOT measured: ${started}`
      : `PyTorch ${String(started.hello.version)} torch.optim.Adam(foreach=False), 1 thread`));
  console.log(tableHeader(header, widths));
  const ours = median(rounds.map((x) => x.ours));
  const measured = rounds.every((x) => x.torch !== null);
  console.log(tableRow([
    `${(n / 1e6).toFixed(0)}M`, 'Adam', (ours * 1e3).toFixed(2),
    measured ? (median(rounds.map((x) => x.torch!)) * 1e3).toFixed(2) : 'n/a',
    measured ? `${median(rounds.map((x) => x.torch! / x.ours)).toFixed(2)}x` : 'n/a',
    (bytes / ours / 1e9).toFixed(2), median(rounds.map((x) => x.copy)).toFixed(2),
    `${(median(rounds.map((x) => bytes / x.ours / 1e9 / x.copy)) * 100).toFixed(0)}%`,
  ], widths));
}

await adamRow();
