/**
 * GPU batch-norm benchmark on cuda:0: training forward (stats + merge of one rank +
 * elemt) and forward + backward (+ backward reduce + backward elemt), each kernel
 * alone, a device-to-device copy of the same size (the bandwidth bound), and
 * PyTorch on the same card in the same run (tools/bench_gpu_torch.py, spawned):
 * F.batch_norm with autograd, and the SyncBatchNorm primitives
 * (batch_norm_stats, batch_norm_gather_stats_with_counts, batch_norm_elemt,
 * batch_norm_backward_reduce, batch_norm_backward_elemt).
 *
 * Times come from CUDA events around a loop of back-to-back iterations (so the
 * host's launch cost counts when it is the bottleneck, as it does in training);
 * the median of 5 such loops is reported.
 *
 * Bytes that must move: forward 3 passes over the input (read for stats, read +
 * write for elemt), forward + backward 8 (+ read dy, x; read dy, x, write dx).
 * GB/s = those bytes / time; "of copy" = that over the copy's GB/s (read + write).
 *
 * Shapes: every default shape is several times the L2 cache (H200/H100: 50-60 MB), so the
 * GB/s figures are HBM bandwidth, not cache bandwidth: [64,256,56,56] 205 MB,
 * [128,64,112,112] 411 MB, [16384,4096] 268 MB (BatchNorm1d's rows layout). A shape counts
 * for the copy-bound goal only when its tensor is at least 2x BENCH_L2_MB.
 *
 * Goals (printed at the end, and in BENCH_JSON's `goals`): forward and forward+backward
 * each >= 1.0x the faster PyTorch path on every shape, and >= 80% of the copy's bandwidth
 * on every shape above the cache; each is met, NOT met, or n/a (PyTorch not measured,
 * no shape above the cache), never met by default.
 *
 *   node dist/bench/bench-gpu.js          env: BENCH_SECONDS (per loop, default 0.2),
 *                                         BENCH_JSON=<file> (results as JSON), BENCH_SHAPES
 *                                         (e.g. tiny ones to rehearse on the CUDA emulator),
 *                                         BENCH_L2_MB (default 60), BAGUA_PYTHON (default
 *                                         python3), BENCH_NO_TORCH=1
 */
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Handle } from '@bagua/core';
import { cudaBackend as be } from '../src/index.js';
import { bnDims, randomArray, tableHeader, tableRow } from './common.js';

// BENCH_SHAPES='[[4,8,8,8]]': other shapes (tiny ones rehearse the script on the CUDA emulator)
const SHAPES: number[][] = process.env.BENCH_SHAPES
  ? JSON.parse(process.env.BENCH_SHAPES) as number[][]
  : [[64, 256, 56, 56], [128, 64, 112, 112], [16384, 4096]];
const SECONDS = Number(process.env.BENCH_SECONDS ?? 0.2);
const L2_BYTES = Number(process.env.BENCH_L2_MB ?? 60) * 1e6;
/** A tensor at least this large streams from HBM: the copy-bound goal applies. */
const ABOVE_L2_BYTES = 2 * L2_BYTES;
const TORCH_GOAL = 1.0;
const COPY_GOAL = 0.8;
const DEV = 0;

interface Timing { ms: number; gbs: number }
interface ShapeResult {
  shape: number[];
  bytes: number;
  copy: Timing;
  ours: Record<string, Timing>;
  torch: Record<string, Timing> | null;
}

/** Milliseconds per call of fn: CUDA events around `iters` calls, median of 5 loops. */
function timeIt(fn: () => void): number {
  const start = be.eventCreate(DEV), end = be.eventCreate(DEV);
  try {
    for (let i = 0; i < 3; i++) fn();
    // size the loop from one timed call
    be.eventRecord(start, DEV);
    fn();
    be.eventRecord(end, DEV);
    const one = Math.max(be.eventElapsed(start, end), 1e-3);
    const iters = Math.max(10, Math.min(5000, Math.ceil((SECONDS * 1e3) / one)));
    const loops: number[] = [];
    for (let l = 0; l < 5; l++) {
      be.eventRecord(start, DEV);
      for (let i = 0; i < iters; i++) fn();
      be.eventRecord(end, DEV);
      loops.push(be.eventElapsed(start, end) / iters);
    }
    loops.sort((a, b) => a - b);
    return loops[2]!;
  } finally {
    be.eventDestroy(start);
    be.eventDestroy(end);
  }
}

function benchShape(shape: number[]): ShapeResult {
  const { n, c, hw, total } = bnDims(shape);
  const bytes = total * 4;
  const up = (a: Float32Array): Handle => {
    const h = be.alloc('float32', a.length, DEV);
    be.upload(h, a);
    return h;
  };
  const buf = (len: number): Handle => be.alloc('float32', len, DEV);
  const x = up(randomArray(total, 1)), dy = up(randomArray(total, 2));
  const y = buf(total), dx = buf(total), tmp = buf(total);
  const w = up(randomArray(c, 3)), b = up(randomArray(c, 4));
  const rm = up(new Float32Array(c)), rv = up(new Float32Array(c).fill(1));
  const stats = buf(2 * c + 2), mean = buf(c), invstd = buf(c), count = buf(1);
  const sums = buf(2 * c), gw = buf(c), gb = buf(c);
  const all = [x, dy, y, dx, tmp, w, b, rm, rv, stats, mean, invstd, count, sums, gw, gb];
  try {
    const stat = () => be.bnStats(stats, x, n, c, hw, 0);
    const merge = () => be.bnMergeStats(mean, invstd, count, stats, 1, c, 2 * c + 2, 1e-5, rm, rv, 0.1);
    const elemt = () => be.bnElemt(y, x, mean, invstd, w, b, n, c, hw);
    const bred = () => be.bnBackwardReduce(sums, gw, gb, dy, x, mean, invstd, n, c, hw);
    const belemt = () => be.bnBackwardElemt(dx, dy, x, mean, invstd, w, sums, count, n, c, hw);
    const t = (fn: () => void, passes: number): Timing => {
      const ms = timeIt(fn);
      return { ms, gbs: (passes * bytes) / (ms * 1e-3) / 1e9 };
    };
    const copyMs = timeIt(() => be.copy(tmp, x, total));
    const copy = { ms: copyMs, gbs: (2 * bytes) / (copyMs * 1e-3) / 1e9 };
    const ours: Record<string, Timing> = {
      'fwd': t(() => { stat(); merge(); elemt(); }, 3),
      'fwd+bwd': t(() => { stat(); merge(); elemt(); bred(); belemt(); }, 8),
      'stats': t(stat, 1),
      'elemt': t(elemt, 2),
      'bwd reduce': t(bred, 2),
      'bwd elemt': t(belemt, 3),
    };
    be.synchronize();
    return { shape, bytes, copy, ours, torch: null };
  } finally {
    for (const h of all) be.free(h);
  }
}

interface TorchOut {
  version: string; cuda: string; device: string;
  results: { shape: number[]; copy_ms: number; times: Record<string, number> }[];
}

const TORCH_PASSES: Record<string, number> = {
  'F.batch_norm fwd': 3, 'F.batch_norm fwd+bwd': 8, 'syncbn fwd': 3, 'syncbn fwd+bwd': 8,
  'batch_norm_stats': 1, 'batch_norm_elemt': 2, 'batch_norm_backward_reduce': 2, 'batch_norm_backward_elemt': 3,
};

function benchTorch(): TorchOut | string {
  if (process.env.BENCH_NO_TORCH === '1') return 'BENCH_NO_TORCH=1';
  const script = fileURLToPath(new URL('../../../../tools/bench_gpu_torch.py', import.meta.url));
  if (!existsSync(script)) return `${script} not found`;
  const python = process.env.BAGUA_PYTHON ?? 'python3';
  const r = spawnSync(python, [script, '--shapes', JSON.stringify(SHAPES), '--seconds', String(SECONDS)], {
    encoding: 'utf8', timeout: 600_000,
  });
  if (r.error) return `${python}: ${r.error.message}`;
  if (r.status !== 0) return `${python} ${script} failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`;
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as TorchOut;
}

interface Goal {
  goal: string;
  /** 'met' | 'NOT met' | 'n/a': never 'met' without a measurement behind it. */
  status: 'met' | 'NOT met' | 'n/a';
  /** The worst value over the shapes it applies to (ratio, or fraction of the copy), or null. */
  worst: number | null;
  detail: string;
}

/**
 * Forward and forward+backward against the two goals. A goal with nothing to judge it
 * by (PyTorch not measured, no shape above the cache) is n/a, with the reason.
 */
function evaluateGoals(
  summary: readonly { shape: number[]; pass: string; ratioVsTorch: number | null; ofCopy: number; aboveL2: boolean }[],
  torchError: string | null,
): Goal[] {
  const goals: Goal[] = [];
  for (const pass of ['fwd', 'fwd+bwd']) {
    const rows = summary.filter((s) => s.pass === pass);
    const fmtShape = (s: { shape: number[] }) => `[${s.shape.join(',')}]`;
    // vs PyTorch: every shape must have been measured
    const measured = rows.filter((s) => s.ratioVsTorch !== null);
    if (rows.length === 0 || measured.length < rows.length) {
      goals.push({ goal: `${pass} >= ${TORCH_GOAL.toFixed(1)}x PyTorch`, status: 'n/a', worst: null,
        detail: `PyTorch not measured${torchError ? ` (${torchError})` : ''}` });
    } else {
      const w = measured.reduce((a, b) => (b.ratioVsTorch! < a.ratioVsTorch! ? b : a));
      goals.push({ goal: `${pass} >= ${TORCH_GOAL.toFixed(1)}x PyTorch`, status: w.ratioVsTorch! >= TORCH_GOAL ? 'met' : 'NOT met',
        worst: w.ratioVsTorch, detail: `worst ${w.ratioVsTorch!.toFixed(2)}x on ${fmtShape(w)}; ` +
          measured.map((s) => `${fmtShape(s)} ${s.ratioVsTorch!.toFixed(2)}x`).join(', ') });
    }
    const big = rows.filter((s) => s.aboveL2);
    if (big.length === 0) {
      goals.push({ goal: `${pass} >= ${(COPY_GOAL * 100).toFixed(0)}% of copy bound`, status: 'n/a', worst: null,
        detail: `no shape of >= ${(ABOVE_L2_BYTES / 1e6).toFixed(0)} MB (above the L2 cache) was measured` });
    } else {
      const w = big.reduce((a, b) => (b.ofCopy < a.ofCopy ? b : a));
      goals.push({ goal: `${pass} >= ${(COPY_GOAL * 100).toFixed(0)}% of copy bound`, status: w.ofCopy >= COPY_GOAL ? 'met' : 'NOT met',
        worst: w.ofCopy, detail: `worst ${(w.ofCopy * 100).toFixed(0)}% on ${fmtShape(w)}; ` +
          big.map((s) => `${fmtShape(s)} ${(s.ofCopy * 100).toFixed(0)}%`).join(', ') });
    }
  }
  return goals;
}

function main(): void {
  const info = be.deviceInfo(DEV);
  const v = be.versions();
  console.log(`bagua-ts GPU batch-norm benchmark on cuda:${DEV}: ${info.name} (sm_${info.computeCapability.replace('.', '')}, ` +
    `${info.smCount} SMs), driver CUDA ${v.driver}, runtime ${v.runtime}, library ${be.native.library.path}`);
  const results = SHAPES.map(benchShape);
  be.emptyCache();
  const torch = benchTorch();
  if (typeof torch === 'string') {
    console.log(`!!! PyTorch NOT measured: ${torch}`);
  } else {
    console.log(`PyTorch ${torch.version} (CUDA ${torch.cuda}) on ${torch.device}`);
    torch.results.forEach((r, i) => {
      const res = results[i]!;
      res.torch = {};
      for (const [k, ms] of Object.entries(r.times)) {
        res.torch[k] = { ms, gbs: ((TORCH_PASSES[k] ?? 0) * res.bytes) / (ms * 1e-3) / 1e9 };
      }
      res.torch['copy'] = { ms: r.copy_ms, gbs: (2 * res.bytes) / (r.copy_ms * 1e-3) / 1e9 };
    });
  }
  const header = ['shape', 'pass', 'ours ms', 'GB/s', 'of copy', 'torch F ms', 'syncbn ms', 'vs best torch'];
  const widths = [18, 12, 9, 8, 8, 11, 10, 13];
  console.log('');
  console.log(tableHeader(header, widths));
  const summary: { shape: number[]; pass: string; ratioVsTorch: number | null; ofCopy: number; aboveL2: boolean }[] = [];
  for (const r of results) {
    const rows: [string, string, string | null, string | null][] = [
      ['fwd', 'fwd', 'F.batch_norm fwd', 'syncbn fwd'],
      ['fwd+bwd', 'fwd+bwd', 'F.batch_norm fwd+bwd', 'syncbn fwd+bwd'],
      ['stats', 'stats', null, 'batch_norm_stats'],
      ['elemt', 'elemt', null, 'batch_norm_elemt'],
      ['bwd reduce', 'bwd reduce', null, 'batch_norm_backward_reduce'],
      ['bwd elemt', 'bwd elemt', null, 'batch_norm_backward_elemt'],
    ];
    for (const [label, key, tf, ts] of rows) {
      const o = r.ours[key]!;
      const f = tf && r.torch ? r.torch[tf] ?? null : null;
      const s = ts && r.torch ? r.torch[ts] ?? null : null;
      const best = [f, s].filter((z): z is Timing => z !== null).reduce<number | null>((m, z) => (m === null ? z.ms : Math.min(m, z.ms)), null);
      const ofCopy = o.gbs / r.copy.gbs;
      summary.push({ shape: r.shape, pass: label, ratioVsTorch: best === null ? null : best / o.ms, ofCopy,
        aboveL2: r.bytes >= ABOVE_L2_BYTES });
      console.log(tableRow([
        `[${r.shape.join(',')}]`, label, o.ms.toFixed(4), o.gbs.toFixed(0), `${(ofCopy * 100).toFixed(0)}%`,
        f ? f.ms.toFixed(4) : '-', s ? s.ms.toFixed(4) : '-', best === null ? 'n/a' : `${(best / o.ms).toFixed(2)}x`,
      ], widths));
    }
  }
  console.log('');
  console.log('copy (device to device, read + write): ' + results.map((r) =>
    `[${r.shape.join(',')}] ours ${r.copy.gbs.toFixed(0)} GB/s${r.torch?.copy ? `, torch ${r.torch.copy.gbs.toFixed(0)} GB/s` : ''}`).join('; '));
  console.log('vs best torch: the faster of F.batch_norm and the SyncBN primitives, over ours (> 1: ours is faster)');
  const goals = evaluateGoals(summary, typeof torch === 'string' ? torch : null);
  console.log('');
  console.log(`goals (copy bound on shapes >= ${(ABOVE_L2_BYTES / 1e6).toFixed(0)} MB, 2x an L2 of ${(L2_BYTES / 1e6).toFixed(0)} MB):`);
  for (const g of goals) console.log(`  ${g.goal.padEnd(32)} ${g.status.padEnd(8)} ${g.detail}`);
  if (process.env.BENCH_JSON) {
    writeFileSync(process.env.BENCH_JSON, JSON.stringify({ device: info, versions: v, results, summary, goals,
      l2Bytes: L2_BYTES, aboveL2Bytes: ABOVE_L2_BYTES,
      torch: typeof torch === 'string' ? { error: torch } : { version: torch.version, cuda: torch.cuda } }, null, 1));
  }
}

main();
