/**
 * CPU batch-norm benchmark (single thread): training forward (stats + merge of one
 * rank + elemt) and forward + backward (+ backward reduce + backward elemt), against
 * a memory copy measured in the same run and against PyTorch's
 * torch.nn.functional.batch_norm (torch.set_num_threads(1)) when /usr/bin/python3
 * can import torch.
 *
 * Bytes that must move: forward = 3 passes over the input (read for stats, read +
 * write for elemt); forward + backward adds 5 (read dy and x for the reduce, read dy
 * and x and write dx for elemt). The bandwidth bound is those bytes at copy speed,
 * copy GB/s counting its read and its write.
 *
 * The machine may be shared: each quantity is the median of its repetitions, the
 * whole set (ours, copy, PyTorch, shape by shape) is measured in BENCH_ROUNDS rounds,
 * and the best round of each quantity is kept, so a burst of load elsewhere does
 * not land on one side of a ratio only.
 *
 *   pnpm bench:cpu    (env BENCH_SECONDS: time per measurement, default 0.5;
 *                      BENCH_ROUNDS: rounds, default 3)
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpuBackend as be } from '../src/index.js';

const SHAPES: number[][] = [[32, 64, 56, 56], [64, 256, 14, 14], [256, 1024]];
const SECONDS = Number(process.env.BENCH_SECONDS ?? 0.5);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const PYTHON = '/usr/bin/python3';

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
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

function randomArray(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

interface Row {
  shape: number[];
  copyGBs: number; setGBs: number;
  fwd: number; fwdBwd: number;
  torchFwd: number | null; torchFwdBwd: number | null;
}

function benchShape(shape: number[]): Omit<Row, 'torchFwd' | 'torchFwdBwd'> {
  const [n, c] = shape as [number, number];
  const hw = shape.slice(2).reduce((a, b) => a * b, 1);
  const total = n * c * hw;
  const x = randomArray(total, 1), dy = randomArray(total, 2);
  const y = new Float32Array(total), dx = new Float32Array(total), tmp = new Float32Array(total);
  const w = randomArray(c, 3), b = randomArray(c, 4);
  const rm = new Float32Array(c), rv = new Float32Array(c).fill(1);
  const stats = new Float32Array(2 * c + 1), mean = new Float32Array(c), invstd = new Float32Array(c);
  const count = new Float32Array(1), sums = new Float32Array(2 * c), gw = new Float32Array(c), gb = new Float32Array(c);

  const bytes = total * 4;
  const tCopy = timeIt(() => be.copy(tmp, x, total));
  const tSet = timeIt(() => tmp.set(x));
  const forward = () => {
    be.bnStats(stats, x, n, c, hw);
    be.bnMergeStats(mean, invstd, count, stats, 1, c, 1e-5, rm, rv, 0.1);
    be.bnElemt(y, x, mean, invstd, w, b, n, c, hw);
  };
  const fwd = timeIt(forward);
  const fwdBwd = timeIt(() => {
    forward();
    be.bnBackwardReduce(sums, gw, gb, dy, x, mean, invstd, n, c, hw);
    be.bnBackwardElemt(dx, dy, x, mean, invstd, w, sums, count, n, c, hw);
  });
  return { shape, copyGBs: (2 * bytes) / tCopy / 1e9, setGBs: (2 * bytes) / tSet / 1e9, fwd, fwdBwd };
}

const TORCH_SCRIPT = `
import json, sys, time, statistics
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
shapes = json.loads(sys.argv[1]); seconds = float(sys.argv[2])
def time_it(fn):
    fn(); fn()
    times = []; start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < seconds and len(times) < 1000):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return statistics.median(times)
out = []
for shape in shapes:
    c = shape[1]
    x = torch.rand(shape) - 0.5; dy = torch.rand(shape) - 0.5
    w = torch.rand(c); b = torch.rand(c); rm = torch.zeros(c); rv = torch.ones(c)
    with torch.no_grad():
        fwd = time_it(lambda: F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5))
    xg = x.clone().requires_grad_(); wg = w.clone().requires_grad_(); bg = b.clone().requires_grad_()
    def fb():
        xg.grad = None; wg.grad = None; bg.grad = None
        F.batch_norm(xg, rm, rv, wg, bg, training=True, momentum=0.1, eps=1e-5).backward(dy)
    out.append({"fwd": fwd, "fwdBwd": time_it(fb)})
print(json.dumps({"version": torch.__version__, "threads": torch.get_num_threads(), "results": out}))
`;

interface TorchResult { version: string; threads: number; results: { fwd: number; fwdBwd: number }[] }

/** Why PyTorch cannot be measured here, or null when it can. */
function torchUnavailable(): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const probe = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0) return `${PYTHON} cannot import torch (${(probe.stderr || '').trim().split('\n').pop()})`;
  return null;
}

function benchTorch(shapes: number[][]): TorchResult | string {
  const r = spawnSync(PYTHON, ['-c', TORCH_SCRIPT, JSON.stringify(shapes), String(SECONDS)], {
    encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1' },
  });
  if (r.status !== 0) return `the PyTorch benchmark failed: ${r.stderr.trim()}`;
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as TorchResult;
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : ' '.repeat(n - s.length) + s;
}

function main(): void {
  console.log(`bagua-ts CPU batch-norm benchmark: single thread, median of repetitions over ~${SECONDS}s each, best of ${ROUNDS} rounds, ` +
    `library ${be.native.library.path}`);
  const noTorch = torchUnavailable();
  let torchVersion = '';
  const best = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.min(a, b));
  const rows: Row[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    SHAPES.forEach((shape, i) => {
      const r = benchShape(shape);
      let tf: number | null = null, tfb: number | null = null;
      if (noTorch === null) {
        const t = benchTorch([shape]);
        if (typeof t === 'string') throw new Error(t);
        torchVersion = `PyTorch ${t.version}, ${t.threads} thread(s)`;
        tf = t.results[0]!.fwd;
        tfb = t.results[0]!.fwdBwd;
      }
      const prev = rows[i];
      rows[i] = prev === undefined ? { ...r, torchFwd: tf, torchFwdBwd: tfb } : {
        shape,
        copyGBs: Math.max(prev.copyGBs, r.copyGBs), setGBs: Math.max(prev.setGBs, r.setGBs),
        fwd: Math.min(prev.fwd, r.fwd), fwdBwd: Math.min(prev.fwdBwd, r.fwdBwd),
        torchFwd: best(prev.torchFwd, tf), torchFwdBwd: best(prev.torchFwdBwd, tfb),
      };
    });
  }
  if (noTorch !== null) {
    console.log('');
    console.log('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
    console.log(`!!! PyTorch NOT measured: ${noTorch}`);
    console.log('!!! (install Debian\'s python3-torch to compare against torch.nn.functional.batch_norm)');
    console.log('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
  } else {
    console.log(`${torchVersion}: F.batch_norm(training=True), and its autograd backward`);
  }
  const header = ['shape', 'pass', 'ms', 'GB/s', 'copy GB/s', 'of bound', 'torch ms', 'vs torch'];
  const widths = [18, 9, 9, 8, 10, 9, 9, 9];
  console.log('');
  console.log(header.map((h, i) => pad(h, widths[i]!)).join(' '));
  console.log(widths.map((w) => '-'.repeat(w)).join(' '));
  for (const r of rows) {
    const total = r.shape.reduce((a, b) => a * b, 1);
    const copy = Math.max(r.copyGBs, r.setGBs); // the faster of bk_copy_f32 and TypedArray.set
    for (const [pass, t, passes, tt] of [['fwd', r.fwd, 3, r.torchFwd], ['fwd+bwd', r.fwdBwd, 8, r.torchFwdBwd]] as const) {
      const gbs = (passes * total * 4) / t / 1e9;
      const cells = [
        `[${r.shape.join(',')}]`, pass, (t * 1e3).toFixed(3), gbs.toFixed(2), copy.toFixed(2),
        `${((gbs / copy) * 100).toFixed(0)}%`, tt === null ? 'n/a' : (tt * 1e3).toFixed(3),
        tt === null ? 'n/a' : `${(tt / t).toFixed(2)}x`,
      ];
      console.log(cells.map((cell, i) => pad(cell, widths[i]!)).join(' '));
    }
  }
  console.log('');
  console.log('copy GB/s: max(bk_copy_f32, TypedArray.set), read + write; per shape: ' +
    rows.map((r) => `[${r.shape.join(',')}] ${r.copyGBs.toFixed(1)} / ${r.setGBs.toFixed(1)}`).join(', '));
  console.log('of bound: achieved GB/s over copy GB/s (forward moves 3x the input, forward+backward 8x); ' +
    'vs torch: PyTorch time / ours');
}

main();
