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
 * Variants (issue 13): each shape in float32, bfloat16 and float16 (x, y, dy, dx in that
 * dtype; weight, bias, statistics float32: PyTorch's mixed rule), and the 4D / 5D shapes
 * also channels-last (NHWC storage: our kernels see the rows [N*H*W, C], as core runs
 * them), against PyTorch in the same dtype and memory format. Bytes are counted in the
 * storage dtype (a half pass moves 2 bytes an element), and each variant's copy moves
 * the same bytes (a float32 copy of bytes / 4 elements), timed next to it. The goals
 * below are judged per variant.
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
 *                                         python3), BENCH_NO_TORCH=1, BENCH_VARIANTS (e.g.
 *                                         '[["float32","contiguous"],["bfloat16","channelsLast"]]';
 *                                         default: every dtype x format)
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
/** A variant: the storage dtype of x, y, dy, dx, and its memory format. */
type BenchDtype = 'float32' | 'bfloat16' | 'float16';
type BenchFormat = 'contiguous' | 'channelsLast';
const DTYPES: readonly BenchDtype[] = ['float32', 'bfloat16', 'float16'];
const FORMATS: readonly BenchFormat[] = ['contiguous', 'channelsLast'];
const VARIANTS: [BenchDtype, BenchFormat][] = process.env.BENCH_VARIANTS
  ? parseVariants(process.env.BENCH_VARIANTS)
  : FORMATS.flatMap((f) => DTYPES.map((d): [BenchDtype, BenchFormat] => [d, f]));
const ELEMENT_BYTES: Record<BenchDtype, number> = { float32: 4, bfloat16: 2, float16: 2 };

function parseVariants(text: string): [BenchDtype, BenchFormat][] {
  const v = JSON.parse(text) as unknown;
  if (!Array.isArray(v) || v.length === 0 || !v.every((p) => Array.isArray(p) && p.length === 2 &&
      DTYPES.includes(p[0] as BenchDtype) && FORMATS.includes(p[1] as BenchFormat))) {
    throw new Error(`BENCH_VARIANTS: expected [[dtype, format], ...] with dtype in ${DTYPES.join('|')} and format in ` +
      `${FORMATS.join('|')}, got ${text}`);
  }
  return v as [BenchDtype, BenchFormat][];
}

/** 'float32', 'bfloat16 channels-last', ...: the variant's name in tables, JSON and goals. */
function variantName(dtype: BenchDtype, format: BenchFormat): string {
  return format === 'channelsLast' ? `${dtype} channels-last` : dtype;
}

/** float32 NCHW: the variant every kernel is also timed alone in. */
function isBase(dtype: BenchDtype, format: BenchFormat): boolean {
  return dtype === 'float32' && format === 'contiguous';
}

/** The (shape, variant) pairs measured: channels-last only where it exists (4D and 5D). */
const CASES = SHAPES.flatMap((shape) => VARIANTS
  .filter(([, f]) => f === 'contiguous' || shape.length === 4 || shape.length === 5)
  .map(([dtype, format]) => ({ shape, dtype, format })));

const TORCH_GOAL = 1.0;
const COPY_GOAL = 0.8;
const DEV = 0;

interface Timing { ms: number; gbs: number }
interface ShapeResult {
  shape: number[];
  dtype: BenchDtype;
  format: BenchFormat;
  variant: string;
  /** one pass over the tensor in its storage dtype */
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

/** The five batch-norm kernels for x's storage dtype (statistics and per-channel operands float32). */
function bnKernels(dtype: BenchDtype) {
  const sfx = dtype === 'bfloat16' ? 'Bf16' : dtype === 'float16' ? 'F16' : '';
  const pick = <K extends string>(name: K) => {
    const fn = (be as unknown as Record<string, unknown>)[`${name}${sfx}`];
    if (typeof fn !== 'function') throw new Error(`bench-gpu: the CUDA backend has no ${name}${sfx} (${dtype} batch norm)`);
    return (fn as (...a: unknown[]) => void).bind(be);
  };
  return { stats: pick('bnStats'), elemt: pick('bnElemt'), bwdReduce: pick('bnBackwardReduce'), bwdElemt: pick('bnBackwardElemt') };
}

function benchShape(shape: number[], dtype: BenchDtype, format: BenchFormat): ShapeResult {
  const dims = bnDims(shape);
  const { c, total } = dims;
  // channels-last storage is the row-major matrix [N*H*W, C]: the same kernels with hw = 1
  const [n, hw] = format === 'channelsLast' ? [dims.n * dims.hw, 1] : [dims.n, dims.hw];
  const bytes = total * ELEMENT_BYTES[dtype];
  const k = bnKernels(dtype);
  const up = (a: Float32Array): Handle => {
    const h = be.alloc('float32', a.length, DEV);
    be.upload(h, a);
    return h;
  };
  const buf = (len: number): Handle => be.alloc('float32', len, DEV);
  const all: Handle[] = [];
  const keep = (h: Handle): Handle => (all.push(h), h);
  /** x or dy in the variant's dtype: float32 values rounded on the device */
  const big = (seed: number): Handle => {
    const f = keep(up(randomArray(total, seed)));
    if (dtype === 'float32') return f;
    const h = keep(be.alloc(dtype, total, DEV));
    if (dtype === 'bfloat16') be.castF32ToBf16!(h, f, total);
    else be.castF32ToF16!(h, f, total);
    return h;
  };
  try {
    const x = big(1), dy = big(2);
    const y = keep(be.alloc(dtype, total, DEV)), dx = keep(be.alloc(dtype, total, DEV));
    // the copy bound: a float32 copy moving the same bytes as one pass over x
    const copyN = Math.floor(bytes / 4);
    const src = keep(buf(copyN)), tmp = keep(buf(copyN));
    const w = keep(up(randomArray(c, 3))), b = keep(up(randomArray(c, 4)));
    const rm = keep(up(new Float32Array(c))), rv = keep(up(new Float32Array(c).fill(1)));
    const stats = keep(buf(2 * c + 2)), mean = keep(buf(c)), invstd = keep(buf(c)), count = keep(buf(1));
    const sums = keep(buf(2 * c)), gw = keep(buf(c)), gb = keep(buf(c));
    const stat = () => k.stats(stats, x, n, c, hw, 0);
    const merge = () => be.bnMergeStats(mean, invstd, count, stats, 1, c, 2 * c + 2, 1e-5, rm, rv, 0.1);
    const elemt = () => k.elemt(y, x, mean, invstd, w, b, n, c, hw);
    const bred = () => k.bwdReduce(sums, gw, gb, dy, x, mean, invstd, n, c, hw);
    const belemt = () => k.bwdElemt(dx, dy, x, mean, invstd, w, sums, count, n, c, hw);
    const t = (fn: () => void, passes: number): Timing => {
      const ms = timeIt(fn);
      return { ms, gbs: (passes * bytes) / (ms * 1e-3) / 1e9 };
    };
    const copyMs = timeIt(() => be.copy(tmp, src, copyN));
    const copy = { ms: copyMs, gbs: (2 * copyN * 4) / (copyMs * 1e-3) / 1e9 };
    const ours: Record<string, Timing> = {
      'fwd': t(() => { stat(); merge(); elemt(); }, 3),
      'fwd+bwd': t(() => { stat(); merge(); elemt(); bred(); belemt(); }, 8),
    };
    // each kernel alone: float32 NCHW only (the other variants' passes are the same kernels'
    // loops on other loads and strides; the step's time on the GPU machine is short)
    if (isBase(dtype, format)) {
      ours['stats'] = t(stat, 1);
      ours['elemt'] = t(elemt, 2);
      ours['bwd reduce'] = t(bred, 2);
      ours['bwd elemt'] = t(belemt, 3);
    }
    be.synchronize();
    return { shape, dtype, format, variant: variantName(dtype, format), bytes, copy, ours, torch: null };
  } finally {
    for (const h of all) be.free(h);
  }
}

interface TorchOut {
  version: string; cuda: string; device: string;
  results: { shape: number[]; dtype: BenchDtype; format: BenchFormat; copy_ms: number; times: Record<string, number>;
    errors?: Record<string, string> }[];
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
  const cases = CASES.map(({ shape, dtype, format }) => [shape, dtype, format]);
  const r = spawnSync(python, [script, '--cases', JSON.stringify(cases), '--seconds', String(SECONDS)], {
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
  /** the variant judged ('float32', 'bfloat16 channels-last', ...) */
  variant?: string;
}

/**
 * Forward and forward+backward against the two goals. A goal with nothing to judge it
 * by (PyTorch not measured, no shape above the cache) is n/a, with the reason.
 */
interface SummaryRow {
  shape: number[]; variant: string; dtype: BenchDtype; format: BenchFormat; pass: string;
  ratioVsTorch: number | null; ofCopy: number; aboveL2: boolean;
}

function evaluateGoals(summary: readonly SummaryRow[], torchError: string | null): Goal[] {
  const goals: Goal[] = [];
  const variants = [...new Set(summary.map((s) => s.variant))];
  for (const variant of variants) {
    // the float32 goals keep their names; every other variant's are prefixed with it
    const prefix = variant === 'float32' ? '' : `${variant} `;
    for (const g of evaluateVariant(summary.filter((s) => s.variant === variant), torchError)) {
      goals.push({ ...g, goal: prefix + g.goal, variant });
    }
  }
  return goals;
}

function evaluateVariant(summary: readonly SummaryRow[], torchError: string | null): Goal[] {
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
  const results = CASES.map(({ shape, dtype, format }) => benchShape(shape, dtype, format));
  be.emptyCache();
  const torch = benchTorch();
  if (typeof torch === 'string') {
    console.log(`!!! PyTorch NOT measured: ${torch}`);
  } else {
    console.log(`PyTorch ${torch.version} (CUDA ${torch.cuda}) on ${torch.device}`);
    for (const r of torch.results) {
      const res = results.find((x) => x.dtype === r.dtype && x.format === r.format && x.shape.join() === r.shape.join());
      if (!res) throw new Error(`bench_gpu_torch.py returned a case not asked for: [${r.shape}] ${r.dtype} ${r.format}`);
      res.torch = {};
      for (const [k, ms] of Object.entries(r.times)) {
        res.torch[k] = { ms, gbs: ((TORCH_PASSES[k] ?? 0) * res.bytes) / (ms * 1e-3) / 1e9 };
      }
      res.torch['copy'] = { ms: r.copy_ms, gbs: (2 * res.bytes) / (r.copy_ms * 1e-3) / 1e9 };
      // a PyTorch path that refused this dtype / format is reported, not hidden: its cell reads '-'
      for (const [k, e] of Object.entries(r.errors ?? {})) console.log(`!!! PyTorch ${k} on [${r.shape}] ${res.variant}: ${e}`);
    }
  }
  const header = ['shape', 'variant', 'pass', 'ours ms', 'GB/s', 'of copy', 'torch F ms', 'syncbn ms', 'vs best torch'];
  const widths = [18, 24, 12, 9, 8, 8, 11, 10, 13];
  console.log('');
  console.log(tableHeader(header, widths));
  const summary: SummaryRow[] = [];
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
      const o = r.ours[key];
      if (!o) continue; // a kernel alone: float32 NCHW only
      const f = tf && r.torch ? r.torch[tf] ?? null : null;
      const s = ts && r.torch ? r.torch[ts] ?? null : null;
      const best = [f, s].filter((z): z is Timing => z !== null).reduce<number | null>((m, z) => (m === null ? z.ms : Math.min(m, z.ms)), null);
      const ofCopy = o.gbs / r.copy.gbs;
      summary.push({ shape: r.shape, variant: r.variant, dtype: r.dtype, format: r.format, pass: label,
        ratioVsTorch: best === null ? null : best / o.ms, ofCopy, aboveL2: r.bytes >= ABOVE_L2_BYTES });
      console.log(tableRow([
        `[${r.shape.join(',')}]`, r.variant, label, o.ms.toFixed(4), o.gbs.toFixed(0), `${(ofCopy * 100).toFixed(0)}%`,
        f ? f.ms.toFixed(4) : '-', s ? s.ms.toFixed(4) : '-', best === null ? 'n/a' : `${(best / o.ms).toFixed(2)}x`,
      ], widths));
    }
  }
  console.log('');
  console.log('copy (device to device, read + write, the bytes of one pass in the variant\'s dtype): ' + results.map((r) =>
    `[${r.shape.join(',')}] ${r.variant} ours ${r.copy.gbs.toFixed(0)} GB/s${r.torch?.copy ? `, torch ${r.torch.copy.gbs.toFixed(0)} GB/s` : ''}`).join('; '));
  console.log('GB/s and "of copy" count bytes in the storage dtype (2 per bfloat16 / float16 element, 4 per float32)');
  console.log('vs best torch: the faster of F.batch_norm and the SyncBN primitives, over ours (> 1: ours is faster), same dtype and format');
  const goals = evaluateGoals(summary, typeof torch === 'string' ? torch : null);
  console.log('');
  console.log(`goals (copy bound on shapes >= ${(ABOVE_L2_BYTES / 1e6).toFixed(0)} MB, 2x an L2 of ${(L2_BYTES / 1e6).toFixed(0)} MB, ` +
    'in the storage dtype; judged per variant):');
  for (const g of goals) console.log(`  ${g.goal.padEnd(56)} ${g.status.padEnd(8)} ${g.detail}`);
  if (process.env.BENCH_JSON) {
    writeFileSync(process.env.BENCH_JSON, JSON.stringify({ device: info, versions: v, results, summary, goals,
      l2Bytes: L2_BYTES, aboveL2Bytes: ABOVE_L2_BYTES, variants: VARIANTS.map(([d, f]) => variantName(d, f)),
      torch: typeof torch === 'string' ? { error: torch } : { version: torch.version, cuda: torch.cuda } }, null, 1));
  }
}

main();
