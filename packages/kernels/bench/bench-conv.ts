/**
 * CPU conv2d benchmark: one layer's forward and backward (input, weight and bias
 * gradients), as a training step runs it, on 1 and 2 kernel threads, three ways in the
 * same run:
 *
 *   built-in  the library's im2col + GEMM (the fallback where oneDNN cannot be loaded;
 *             forced here with useOneDnn(false));
 *   oneDNN    the library on oneDNN (Debian's libdnnl2), what runs by default;
 *   PyTorch   F.conv2d + autograd backward (tools/bench_conv_torch.py, /usr/bin/python3,
 *             torch.set_num_threads(n)), kept running in one child process.
 *
 * Ours per step: bk_conv2d_f32 with bias, bk_conv2d_backward_input_f32,
 * bk_conv2d_backward_weight_f32 and the bias gradient (two bk_sum_f32), called through
 * the CPU backend on preallocated buffers.
 *
 * The machine may be shared, so measurements are interleaved: each round measures every
 * shape, thread count and engine back to back, each for about BENCH_SECONDS as the median
 * of its repetitions; times reported are medians over rounds, ratios medians of the
 * per-round ratios. No thread count above the cores is meaningful, and 2 threads measure
 * nothing useful while other processes keep the cores busy: the load average is printed.
 *
 *   pnpm bench:conv    (env BENCH_SECONDS: time per measurement, default 0.3;
 *                       BENCH_ROUNDS: rounds, default 5; BENCH_THREADS: e.g. "1,2,4")
 */
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { getNumThreads, setNumThreads, type Conv2dGeometry } from '@bagua/core';
import { cpuBackend as be, cpuInfo, useOneDnn } from '../src/index.js';
import { JsonLineChild, loud, median, randomArray, tableHeader, tableRow } from './common.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 0.3);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 5));
const THREADS = (process.env.BENCH_THREADS ?? '1,2').split(',').map(Number);
for (const t of THREADS) if (!Number.isInteger(t) || t < 1) throw new Error(`BENCH_THREADS: not a thread count: ${t}`);
const TORCH_SCRIPT = fileURLToPath(new URL('../../../../tools/bench_conv_torch.py', import.meta.url));

interface Shape { x: [number, number, number, number]; w: [number, number, number, number]; pad: number }

const SHAPES: Shape[] = [
  { x: [32, 32, 32, 32], w: [64, 32, 3, 3], pad: 1 },
  { x: [32, 3, 32, 32], w: [32, 3, 3, 3], pad: 1 },
];

const label = (s: Shape) => `[${s.x.join(',')}]x[${s.w.join(',')}] p${s.pad}`;

function geometry(s: Shape): Conv2dGeometry {
  const [n, c, h, w] = s.x, [k, , r, sw] = s.w;
  const oh = h + 2 * s.pad - r + 1, ow = w + 2 * s.pad - sw + 1;
  return { n, c, h, w, k, r, s: sw, oh, ow, strideH: 1, strideW: 1, padH: s.pad, padW: s.pad, dilH: 1, dilW: 1, groups: 1 };
}

/** Median milliseconds of fn over repetitions filling about SECONDS (at least 5, after 2 warm-ups). */
function timeIt(fn: () => void): number {
  fn();
  fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < 5 || performance.now() - start < SECONDS * 1000) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** One layer's forward + backward on preallocated buffers. */
function makeStep(s: Shape): () => void {
  const g = geometry(s);
  const ohw = g.oh * g.ow;
  const x = randomArray(g.n * g.c * g.h * g.w, 1), w = randomArray(g.k * g.c * g.r * g.s, 2), b = randomArray(g.k, 3);
  const dy = randomArray(g.n * g.k * ohw, 4);
  const y = new Float32Array(dy.length), dx = new Float32Array(x.length), dw = new Float32Array(w.length);
  const db = new Float32Array(g.k), partial = new Float32Array(g.n * g.k);
  return () => {
    be.conv2d(y, x, w, b, g);
    be.conv2dBackwardInput(dx, dy, w, g);
    be.conv2dBackwardWeight(dw, dy, x, g);
    be.sum(partial, dy, g.n * g.k, ohw, 1);
    be.sum(db, partial, 1, g.n, g.k);
  };
}

type Engine = 'builtin' | 'onednn' | 'torch';
const ENGINES: Engine[] = ['builtin', 'onednn', 'torch'];

async function main(): Promise<void> {
  const load0 = loadavg()[0]!;
  const started = await JsonLineChild.start([TORCH_SCRIPT]);
  const torch = typeof started === 'string' ? null : started.child;
  const haveDnnl = useOneDnn(true);
  console.log(`bagua-ts CPU conv2d benchmark: forward + backward (input, weight, bias gradients), ${ROUNDS} interleaved ` +
    `rounds of ~${SECONDS}s per measurement; threads ${THREADS.join(', ')}`);
  console.log(`library: ${cpuInfo()} (${be.native.library.path})`);
  if (typeof started === 'string') {
    console.log(loud([`PyTorch NOT measured: ${started}`, 'install Debian\'s python3-torch (/usr/bin/python3) to compare']));
  } else {
    console.log(`PyTorch ${started.hello.version} (mkldnn ${started.hello.mkldnn ? 'on' : 'off'}): F.conv2d + autograd backward`);
  }
  if (!haveDnnl) console.log(loud(['oneDNN NOT loaded: its column reads n/a', cpuInfo()]));

  const before = getNumThreads();
  const steps = SHAPES.map(makeStep);
  // samples[shape][threads][engine] = ms per round
  const samples = SHAPES.map(() => THREADS.map(() => ({ builtin: [] as number[], onednn: [] as number[], torch: [] as number[] })));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, s] of SHAPES.entries()) {
      for (const [j, nt] of THREADS.entries()) {
        setNumThreads(nt);
        const cell = samples[i]![j]!;
        useOneDnn(false);
        cell.builtin.push(timeIt(steps[i]!));
        if (haveDnnl) {
          useOneDnn(true);
          cell.onednn.push(timeIt(steps[i]!));
        }
        if (torch) cell.torch.push((await torch.request<{ ms: number }>({ ...s, threads: nt, seconds: SECONDS })).ms);
      }
    }
  }
  useOneDnn(true);
  setNumThreads(before);
  torch?.stop();

  const ms = (xs: number[]) => (xs.length ? median(xs).toFixed(2) : 'n/a');
  // median over rounds of a / b, each round's pair measured back to back
  const ratio = (a: number[], b: number[]) =>
    a.length && b.length ? `${median(a.map((v, r) => v / b[r]!)).toFixed(2)}x` : 'n/a';
  const widths = [30, 7, 11, 10, 10, 17, 16];
  console.log('');
  console.log(tableHeader(['shape', 'threads', 'built-in ms', 'oneDNN ms', 'torch ms', 'oneDNN vs built-in', 'torch / oneDNN'], widths));
  for (const [i, s] of SHAPES.entries()) {
    for (const [j, nt] of THREADS.entries()) {
      const c = samples[i]![j]!;
      console.log(tableRow([label(s), String(nt), ms(c.builtin), ms(c.onednn), ms(c.torch),
        ratio(c.builtin, c.onednn), ratio(c.torch, c.onednn)], widths));
    }
  }
  console.log('');
  for (const [i, s] of SHAPES.entries()) {
    const scale = ENGINES.map((e) => {
      const one = samples[i]![THREADS.indexOf(1)]?.[e], two = samples[i]![THREADS.indexOf(2)]?.[e];
      return one && two ? `${e} ${ratio(one, two)}` : null;
    }).filter(Boolean);
    if (scale.length) console.log(`${label(s)}: 2 threads vs 1: ${scale.join(', ')}`);
  }
  const cores = availableParallelism(), load1 = loadavg()[0]!;
  console.log('ms: medians over rounds; ratios: medians of per-round ratios (above 1x: the second faster). ' +
    `Load average (1 min, this run included): ${load0.toFixed(2)} at start, ${load1.toFixed(2)} at end, on ${cores} cores.`);
  if (Math.max(load0, load1) > 0.75 * cores) {
    console.log(loud(['the machine was busy with other work during this run: multi-thread times in particular are not',
      'representative (a thread waiting for a preempted one waits a whole time slice)']));
  }
}

await main();
