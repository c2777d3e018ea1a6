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
 * copy GB/s counting its read and its write (the faster of bk_copy_f32 and
 * TypedArray.set).
 *
 * The machine may be shared, so measurements are interleaved: each round measures,
 * shape by shape and back to back, the copy, ours and PyTorch (kept running in one
 * child process), each for about BENCH_SECONDS as the median of its repetitions.
 * Times reported are medians over rounds; ratios are medians of the per-round
 * ratios, so a burst of load elsewhere does not land on one side of a ratio only.
 *
 *   pnpm bench:cpu    (env BENCH_SECONDS: time per measurement, default 0.3;
 *                      BENCH_ROUNDS: rounds, default 5)
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { cpuBackend as be } from '../src/index.js';
import { bnDims, randomArray, tableHeader, tableRow } from './common.js';

const SHAPES: number[][] = [[32, 64, 56, 56], [64, 256, 14, 14], [256, 1024]];
const SECONDS = Number(process.env.BENCH_SECONDS ?? 0.3);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 5));
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
  return median(times);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The buffers of one shape, allocated once, and its three measurements. */
function makeCase(shape: number[]) {
  const { n, c, hw, total } = bnDims(shape);
  const x = randomArray(total, 1), dy = randomArray(total, 2);
  const y = new Float32Array(total), dx = new Float32Array(total), tmp = new Float32Array(total);
  const w = randomArray(c, 3), b = randomArray(c, 4);
  const rm = new Float32Array(c), rv = new Float32Array(c).fill(1);
  const stats = new Float32Array(2 * c + 1), mean = new Float32Array(c), invstd = new Float32Array(c);
  const count = new Float32Array(1), sums = new Float32Array(2 * c), gw = new Float32Array(c), gb = new Float32Array(c);
  const forward = () => {
    be.bnStats(stats, x, n, c, hw);
    be.bnMergeStats(mean, invstd, count, stats, 1, c, 1e-5, rm, rv, 0.1);
    be.bnElemt(y, x, mean, invstd, w, b, n, c, hw);
  };
  return {
    total,
    /** copy GB/s (read + write): the faster of bk_copy_f32 and TypedArray.set */
    copyGBs: () => (2 * total * 4) / Math.min(timeIt(() => be.copy(tmp, x, total)), timeIt(() => tmp.set(x))) / 1e9,
    fwd: () => timeIt(forward),
    fwdBwd: () => timeIt(() => {
      forward();
      be.bnBackwardReduce(sums, gw, gb, dy, x, mean, invstd, n, c, hw);
      be.bnBackwardElemt(dx, dy, x, mean, invstd, w, sums, count, n, c, hw);
    }),
  };
}

// One request per line on stdin ({"shape": [...]}), one JSON result per line on stdout.
const TORCH_SCRIPT = `
import json, sys, time, statistics
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
seconds = float(sys.argv[1])
def time_it(fn):
    fn(); fn()
    times = []; start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < seconds and len(times) < 1000):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return statistics.median(times)
cases = {}
print(json.dumps({"version": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    shape = json.loads(line)["shape"]
    key = tuple(shape)
    if key not in cases:
        c = shape[1]
        x = torch.rand(shape) - 0.5; dy = torch.rand(shape) - 0.5
        w = torch.rand(c); b = torch.rand(c); rm = torch.zeros(c); rv = torch.ones(c)
        xg = x.clone().requires_grad_(); wg = w.clone().requires_grad_(); bg = b.clone().requires_grad_()
        cases[key] = (x, dy, w, b, rm, rv, xg, wg, bg)
    x, dy, w, b, rm, rv, xg, wg, bg = cases[key]
    with torch.no_grad():
        fwd = time_it(lambda: F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5))
    def fb():
        xg.grad = None; wg.grad = None; bg.grad = None
        F.batch_norm(xg, rm, rv, wg, bg, training=True, momentum=0.1, eps=1e-5).backward(dy)
    print(json.dumps({"fwd": fwd, "fwdBwd": time_it(fb)}), flush=True)
`;

/** PyTorch in a child process that stays up for the whole run. */
class TorchBench {
  private readonly lines: AsyncIterator<string>;
  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    this.lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  }

  /** Why PyTorch cannot be measured here, or a running bench and its description. */
  static async start(): Promise<{ bench: TorchBench; info: string } | string> {
    if (!existsSync(PYTHON)) return `${PYTHON} not found`;
    const probe = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
    if (probe.status !== 0) return `${PYTHON} cannot import torch (${(probe.stderr || '').trim().split('\n').pop()})`;
    const child = spawn(PYTHON, ['-c', TORCH_SCRIPT, String(SECONDS)], {
      env: { ...process.env, OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1' },
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const bench = new TorchBench(child);
    const first = await bench.lines.next();
    if (first.done) return `the PyTorch benchmark did not start: ${stderr.trim()}`;
    const v = JSON.parse(first.value) as { version: string; threads: number };
    return { bench, info: `PyTorch ${v.version}, ${v.threads} thread(s)` };
  }

  async measure(shape: number[]): Promise<{ fwd: number; fwdBwd: number }> {
    this.child.stdin.write(`${JSON.stringify({ shape })}\n`);
    const r = await this.lines.next();
    if (r.done) throw new Error('the PyTorch benchmark process exited');
    return JSON.parse(r.value) as { fwd: number; fwdBwd: number };
  }

  stop(): void {
    this.child.stdin.end();
  }
}

interface Sample { copy: number; fwd: number; fwdBwd: number; tFwd: number | null; tFwdBwd: number | null }

async function main(): Promise<void> {
  console.log(`bagua-ts CPU batch-norm benchmark: single thread, ${ROUNDS} interleaved rounds of ~${SECONDS}s per ` +
    `measurement; library ${be.native.library.path}`);
  const torch = await TorchBench.start();
  if (typeof torch === 'string') {
    console.log('');
    console.log('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
    console.log(`!!! PyTorch NOT measured: ${torch}`);
    console.log('!!! (install Debian\'s python3-torch to compare against torch.nn.functional.batch_norm)');
    console.log('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
  } else {
    console.log(`${torch.info}: F.batch_norm(training=True), and its autograd backward`);
  }
  const cases = SHAPES.map(makeCase);
  const samples: Sample[][] = SHAPES.map(() => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < SHAPES.length; i++) {
      const k = cases[i]!;
      const copy = k.copyGBs(), fwd = k.fwd(), fwdBwd = k.fwdBwd();
      const t = typeof torch === 'string' ? null : await torch.bench.measure(SHAPES[i]!);
      samples[i]!.push({ copy, fwd, fwdBwd, tFwd: t?.fwd ?? null, tFwdBwd: t?.fwdBwd ?? null });
    }
  }
  if (typeof torch !== 'string') torch.bench.stop();

  const header = ['shape', 'pass', 'ms', 'GB/s', 'copy GB/s', 'of bound', 'torch ms', 'vs torch'];
  const widths = [18, 9, 9, 8, 10, 9, 9, 9];
  console.log('');
  console.log(tableHeader(header, widths));
  SHAPES.forEach((shape, i) => {
    const ss = samples[i]!, total = cases[i]!.total;
    const copy = median(ss.map((s) => s.copy));
    for (const [pass, passes, ours, theirs] of [
      ['fwd', 3, (s: Sample) => s.fwd, (s: Sample) => s.tFwd],
      ['fwd+bwd', 8, (s: Sample) => s.fwdBwd, (s: Sample) => s.tFwdBwd],
    ] as const) {
      const t = median(ss.map(ours));
      const gbs = (passes * total * 4) / t / 1e9;
      // per-round ratios: achieved bandwidth over that round's copy, PyTorch time over ours
      const ofBound = median(ss.map((s) => (passes * total * 4) / ours(s) / 1e9 / s.copy));
      const tt = ss[0]!.tFwd === null ? null : median(ss.map((s) => theirs(s)!));
      const vs = tt === null ? null : median(ss.map((s) => theirs(s)! / ours(s)));
      const cells = [
        `[${shape.join(',')}]`, pass, (t * 1e3).toFixed(3), gbs.toFixed(2), copy.toFixed(2),
        `${(ofBound * 100).toFixed(0)}%`, tt === null ? 'n/a' : (tt * 1e3).toFixed(3),
        vs === null ? 'n/a' : `${vs.toFixed(2)}x`,
      ];
      console.log(tableRow(cells, widths));
    }
  });
  console.log('');
  console.log('ms, GB/s, copy GB/s, torch ms: medians over rounds; of bound (achieved GB/s over copy GB/s, forward ' +
    'moving 3x the input and forward+backward 8x) and vs torch (PyTorch time / ours): medians of per-round ratios');
}

await main();
