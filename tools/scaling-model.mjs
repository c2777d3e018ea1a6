#!/usr/bin/env node
/**
 * The alpha-beta cost model of docs/scaling.md: one data-parallel training step of a
 * ResNet-50-like net with SyncBatchNorm, at P = 8 to 1,024 ranks, ring and tree
 * collectives. Prints every table of the doc (markdown), so its numbers are reproducible.
 *
 *   node tools/scaling-model.mjs [--comm-json bench-comm.json] [--batch 32]
 *
 * --comm-json: refit alpha and beta from another `pnpm bench:comm -- --json FILE` run;
 * without it, the run of 2026-11-30 recorded below is used.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: { 'comm-json': { type: 'string' }, batch: { type: 'string', default: '32' } },
});

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

// ------------------------------------------------------------------ measured here
// `pnpm bench:comm -- --repeat 2 --json` on 2026-11-30 (2-core VM, AMD EPYC with AVX-512; load
// average 7.8 at the start and 14.5 at the end from other jobs), each figure the median of the 2
// runs. Keyed by float count (2C+1 for C = 64, 256, 1024): all-reduce(sum) and all-gather latency;
// then all-reduce time by size in bytes, 1 KiB..64 MiB; rank 0's median per call, us.
const RECORDED = [
  { backend: 'threads', world_size: 2,
    latency: { 129: [8.1, 15.6], 513: [15.6, 15.4], 2049: [19.5, 17.0] },
    sizes: { 1024: 14.5, 65536: 29.8, 1048576: 219.2, 16777216: 3923.4, 67108864: 18911.7 } },
  { backend: 'gloo', world_size: 2,
    latency: { 129: [16.3, 16.0], 513: [15.2, 15.5], 2049: [16.0, 16.1] },
    sizes: { 1024: 15.2, 65536: 53.5, 1048576: 577.8, 16777216: 20764.0, 67108864: 70861.7 } },
  { backend: 'threads', world_size: 4,
    latency: { 129: [24.5, 24.3], 513: [27.1, 23.9], 2049: [42.1, 30.6] },
    sizes: { 1024: 24.4, 65536: 65.7, 1048576: 382.8, 16777216: 7067.7, 67108864: 27745.2 } },
  { backend: 'gloo', world_size: 4,
    latency: { 129: [79.6, 79.2], 513: [78.7, 79.1], 2049: [88.8, 90.9] },
    sizes: { 1024: 82.8, 65536: 289.4, 1048576: 4916.6, 16777216: 47174.6, 67108864: 133942.0 } },
];

/**
 * bench:comm's JSON (a list of results, one per run: --repeat R gives R per backend and world size)
 * in the shape above, each figure the median over the runs; torch-gloo rows are left out.
 */
function loadRuns(path) {
  if (!path) return RECORDED;
  const groups = new Map();
  for (const r of JSON.parse(readFileSync(path, 'utf8'))) {
    if (r.backend === 'torch-gloo') continue;
    const key = `${r.backend} ${r.world_size}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(r);
  }
  return [...groups.values()].map((runs) => ({
    backend: runs[0].backend, world_size: runs[0].world_size,
    latency: Object.fromEntries(Object.keys(runs[0].latency).map((c) => [c, [
      median(runs.map((r) => r.latency[c].allreduce_us)), median(runs.map((r) => r.latency[c].allgather_us))]])),
    sizes: Object.fromEntries((runs[0].bandwidths ?? [runs[0].bandwidth]).filter(Boolean).map(({ bytes }) => [bytes,
      median(runs.map((r) => (r.bandwidths ?? [r.bandwidth]).find((b) => b?.bytes === bytes)?.time_us ?? NaN))])),
  }));
}

const SMALL = 8 << 10; // up to 8 KiB the time is all latency; from 16 MiB it is all bandwidth
const LARGE = 16 << 20;

/**
 * Ring all-reduce: T(n) = 2(P-1) alpha + 2(P-1)/P n beta. beta from the large sizes, alpha from
 * the small ones (each with the other term taken off), twice round so each sees the other's value.
 * The all-gather's alpha comes from its own small sizes with T = (P-1)(alpha + n beta).
 */
function fit(run) {
  const P = run.world_size;
  const pts = [
    ...Object.entries(run.latency).map(([count, [ar]]) => ({ n: Number(count) * 4, t: ar * 1e-6 })),
    ...Object.entries(run.sizes).map(([n, t]) => ({ n: Number(n), t: t * 1e-6 })),
  ].sort((a, b) => a.n - b.n);
  let alpha = 0, beta = 0;
  for (let i = 0; i < 2; i++) {
    beta = median(pts.filter((p) => p.n >= LARGE).map((p) => (p.t - 2 * (P - 1) * alpha) / (2 * (P - 1) / P * p.n)));
    alpha = median(pts.filter((p) => p.n <= SMALL).map((p) => (p.t - 2 * (P - 1) / P * p.n * beta) / (2 * (P - 1))));
  }
  const agAlpha = median(Object.entries(run.latency).map(([count, [, ag]]) => ag * 1e-6 / (P - 1) - Number(count) * 4 * beta));
  const model = (n) => 2 * (P - 1) * alpha + 2 * (P - 1) / P * n * beta;
  return { backend: run.backend, P, alpha, beta, agAlpha, pts: pts.map((p) => ({ ...p, model: model(p.n) })) };
}

// ------------------------------------------------------------------ the machines
const GB = 1e9;
const FITS = loadRuns(args['comm-json']).map(fit);
const fit2 = (b) => FITS.find((f) => f.backend === b && f.P === 2);
/**
 * A profile: per collective a base latency a0, per step alphaIntra / alphaInter (an inter step
 * crosses nodes of `perNode` ranks), and seconds per byte betaIntra / betaInter. The CPU profile
 * is flat (one node of everyone): what gloo's 2-rank fit here would give if it held at any P
 * (loopback TCP on one machine: a real network adds its own latency, so this is a floor). The
 * threads backend lives in one process, so it is fitted but not scaled.
 */
const PROFILES = {
  'cpu-gloo': { a0: 0, aIntra: fit2('gloo').alpha, aInter: fit2('gloo').alpha, bIntra: fit2('gloo').beta, bInter: fit2('gloo').beta, perNode: Infinity },
  // H100 nodes of 8 GPUs on NVLink4, one NDR 400 Gb/s NIC per GPU. Latencies: NCCL's own tuning
  // model (src/graph/tuning.cc, LL protocol: base 6.6 us ring / 6.8 us tree, 0.6 us per NVLink step,
  // 2.7 us per network step for rings, 5.0 us per tree level); bandwidths: NVIDIA's figures of
  // 370 GB/s effective NVLink bus bandwidth for rings and 46-48 GB/s per NDR NIC (docs/scaling.md).
  'gpu-h100-ib': { a0: 6.6e-6, a0Tree: 6.8e-6, aIntra: 0.6e-6, aInter: 2.7e-6, aInterTree: 5.0e-6, bIntra: 1 / (370 * GB), bInter: 1 / (47 * GB), perNode: 8 },
};

const log2 = (x) => Math.log2(x);
function layout(prof, P) {
  const ppn = Math.min(P, prof.perNode);
  const nodes = Math.ceil(P / ppn);
  return { ppn, nodes, beta: nodes > 1 ? prof.bInter : prof.bIntra };
}

/** Seconds for one collective of n bytes per rank (all-gather: n bytes from each rank). */
const COLL = {
  ringAllReduce(prof, P, n) {
    if (P === 1) return 0;
    const { nodes, beta } = layout(prof, P);
    const steps = 2 * (P - 1), inter = nodes > 1 ? 2 * nodes : 0; // NCCL counts 2 x nodes network steps
    return prof.a0 + (steps - inter) * prof.aIntra + inter * prof.aInter + 2 * (P - 1) / P * n * beta;
  },
  /** Best of recursive doubling (log2 P steps of alpha + n beta) and a pipelined double binary tree. */
  treeAllReduce(prof, P, n) {
    if (P === 1) return 0;
    const { ppn, nodes, beta } = layout(prof, P);
    const aTree = prof.aInterTree ?? prof.aInter;
    const a0 = prof.a0Tree ?? prof.a0;
    const rd = a0 + log2(ppn) * (prof.aIntra + n * prof.bIntra) + log2(nodes) * (aTree + n * beta);
    const dbt = a0 + 2 * ((ppn - 1) * prof.aIntra + log2(nodes) * aTree) + 2 * n * beta;
    return Math.min(rd, dbt);
  },
  ringAllGather(prof, P, n) {
    if (P === 1) return 0;
    const { nodes, beta } = layout(prof, P);
    return prof.a0 + (P - nodes) * prof.aIntra + (nodes - 1) * prof.aInter + (P - 1) * n * beta;
  },
  /** Recursive doubling: log2 P steps, the same (P-1) n bytes received as the ring. */
  treeAllGather(prof, P, n) {
    if (P === 1) return 0;
    const { ppn, nodes, beta } = layout(prof, P);
    return (prof.a0Tree ?? prof.a0) + log2(ppn) * prof.aIntra + log2(nodes) * (prof.aInterTree ?? prof.aInter) + (P - 1) * n * beta;
  },
};

// ------------------------------------------------------------------ the net
// ResNet-50's 53 batch-norm layers (stem, then per bottleneck 1x1, 3x3, 1x1, plus each stage's
// downsample): channels of each; 25,557,032 parameters.
const BN_CHANNELS = [64];
for (const [blocks, w] of [[3, 64], [4, 128], [6, 256], [3, 512]]) {
  for (let b = 0; b < blocks; b++) BN_CHANNELS.push(w, w, 4 * w);
  BN_CHANNELS.push(4 * w);
}
const PARAMS = 25_557_032;
const BUCKET = 25 << 20; // DDP's and GradientAllReduce's default cap
// Compute: NVIDIA's published 2,470 img/s for one A100 80GB, mixed precision (DeepLearningExamples,
// ResNet50 v1.5 PyTorch). Small per-GPU batches run below that rate, so this is the least compute a
// step can take: communication's share comes out at its largest. Backward as 2/3 of it (backward
// does about twice the forward's arithmetic).
const BATCH = Number(args.batch);
const COMPUTE = BATCH / 2470;
const BWD = COMPUTE * 2 / 3;

/** SyncBN's collectives per step over a group of G ranks: forward exchange and backward all-reduce. */
function syncBn(prof, G, exchange, algo) {
  let fwd = 0, bwd = 0;
  for (const C of BN_CHANNELS) {
    fwd += exchange === 'all-gather'
      ? COLL[`${algo}AllGather`](prof, G, (2 * C + 2) * 4) // [mean, var, count, tag] from every rank
      : COLL[`${algo}AllReduce`](prof, G, (2 * C + 1) * 4); // [count, sum, sumsq]
    bwd += COLL[`${algo}AllReduce`](prof, G, 2 * C * 4); // [sum_dy, sum_dy_xmu]
  }
  return { fwd, bwd };
}

/**
 * Gradient all-reduce in 25 MiB buckets. Without overlap all of it follows backward. With overlap,
 * bucket i is ready at i/k of the way through backward (SyncBN's backward all-reduces lengthen
 * backward itself) and buckets go one at a time; what runs past backward's end is exposed.
 */
function gradients(prof, P, bwd, algo) {
  const sizes = [];
  for (let left = PARAMS * 4; left > 0; left -= BUCKET) sizes.push(Math.min(BUCKET, left));
  const times = sizes.map((n) => COLL[`${algo}AllReduce`](prof, P, n));
  let finish = 0;
  times.forEach((t, i) => { finish = Math.max(finish, bwd * (i + 1) / times.length) + t; });
  return { total: times.reduce((a, b) => a + b, 0), exposed: Math.max(0, finish - bwd), buckets: sizes.length };
}

function step(prof, P, G, exchange, algo) {
  const s = syncBn(prof, G, exchange, algo);
  const g = gradients(prof, P, BWD + s.bwd, algo);
  const base = COMPUTE + s.fwd + s.bwd;
  return { ...s, grad: g.total, exposed: g.exposed, buckets: g.buckets, noOverlap: base + g.total, overlap: base + g.exposed };
}

// ------------------------------------------------------------------ tables
const ms = (s) => (s * 1e3 >= 100 ? (s * 1e3).toFixed(0) : s * 1e3 >= 10 ? (s * 1e3).toFixed(1) : (s * 1e3).toFixed(2));
const us = (s) => (s * 1e6).toFixed(1);
const table = (head, rows) => [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
const out = [];
const section = (title, body) => out.push(`### ${title}\n\n${body}\n`);

section('Fit: alpha and beta of this machine', table(
  ['backend', 'P', 'alpha (us/step)', 'all-gather alpha (us/step)', 'beta (GB/s = 1/beta)'],
  FITS.map((f) => [f.backend, f.P, us(f.alpha), us(f.agAlpha), (1 / f.beta / GB).toFixed(2)]),
) + '\n\n' + table(
  ['backend', 'P', ...FITS[0].pts.map((p) => (p.n >= 1 << 20 ? `${p.n >> 20} MiB` : p.n >= 1024 ? `${(p.n / 1024).toFixed(p.n % 1024 ? 1 : 0)} KiB` : `${p.n} B`))],
  FITS.map((f) => [f.backend, f.P, ...f.pts.map((p) => `${us(p.t)} / ${us(p.model)}`)]),
) + '\n\nmeasured / model all-reduce time, us.');

const PS = [8, 64, 256, 1024];
{
  const prof = PROFILES['gpu-h100-ib'];
  const rows = [];
  for (const P of PS) {
    for (const exchange of ['all-gather', 'all-reduce']) {
      for (const algo of ['ring', 'tree']) {
        const s = step(prof, P, P, exchange, algo);
        rows.push([P, exchange, algo, ms(s.fwd), ms(s.bwd), ms(s.grad), ms(s.exposed), ms(s.noOverlap), ms(s.overlap),
          `${(100 * COMPUTE / s.overlap).toFixed(0)}%`]);
      }
    }
  }
  section(`Step breakdown, H100 + NDR InfiniBand (published figures): ResNet-50, batch ${BATCH} per rank, SyncBN over all P ranks`, table(
    ['P', 'SyncBN fwd exchange', 'algo', 'fwd ms', 'bwd ms', 'grad AR ms', 'grad exposed (overlap) ms', 'step ms, no overlap', 'step ms, overlap', 'compute share'],
    rows,
  ) + `\n\ncompute ${ms(COMPUTE)} ms per step (backward ${ms(BWD)} ms); gradients ${(PARAMS * 4 / 1e6).toFixed(1)} MB in ` +
    `${gradients(prof, 8, BWD, 'ring').buckets} buckets of at most 25 MiB; "algo" applies to every collective of the row.`);
}
{
  // No CPU compute figure for ResNet-50 was measured here, so this table is communication only.
  const prof = PROFILES['cpu-gloo'];
  const rows = PS.map((P) => {
    const cell = (e, a) => { const s = syncBn(prof, P, e, a); return ms(s.fwd + s.bwd); };
    const grad = (a) => ms(gradients(prof, P, 0, a).total);
    return [P, cell('all-gather', 'ring'), cell('all-gather', 'tree'), cell('all-reduce', 'ring'), cell('all-reduce', 'tree'), grad('ring'), grad('tree')];
  });
  section('Communication per step, CPU gloo (this machine\'s 2-rank fit, flat): ResNet-50, SyncBN fwd + bwd and gradients, ms', table(
    ['P', 'SyncBN all-gather ring', 'SyncBN all-gather tree', 'SyncBN all-reduce ring', 'SyncBN all-reduce tree', 'grad AR ring', 'grad AR tree'],
    rows,
  ));
}

{
  const prof = PROFILES['gpu-h100-ib'];
  const P = 1024;
  const rows = [8, 16, 32, 64, 128, 256, 1024].map((G) => {
    const c = (e, a) => { const s = syncBn(prof, G, e, a); return ms(s.fwd + s.bwd); };
    const best = step(prof, P, G, 'all-reduce', 'tree');
    return [G, c('all-gather', 'ring'), c('all-gather', 'tree'), c('all-reduce', 'ring'), c('all-reduce', 'tree'),
      ms(best.overlap), `${(100 * COMPUTE / best.overlap).toFixed(0)}%`,
      `${((2 * BN_CHANNELS.reduce((a, b) => a + b, 0) + 2 * BN_CHANNELS.length) * 4 * (G - 1) / 1e6).toFixed(1)} MB`];
  });
  section(`SyncBN group size G at P = ${P}, H100 + InfiniBand: SyncBN collectives per step (fwd + bwd, ms)`, table(
    ['G', 'all-gather ring', 'all-gather tree', 'all-reduce ring', 'all-reduce tree', 'step ms (AR tree, overlap)', 'compute share', 'all-gather bytes in per rank'],
    rows,
  ));
}

console.log(out.join('\n'));
