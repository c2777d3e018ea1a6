/**
 * The CPU batch-norm and SGD kernels, called through the Backend, against plain-JS reference
 * implementations in double precision (tolerances as in cpu-kernels.test.ts).
 */
import test from 'ava';
import { randn } from '@bagua/testing';
import { cpuBackend as be, loadCpuKernels } from '../src/index.js';
import { close, closeScaled, F } from './cpu-helpers.js';

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
// row counts that are not multiples of the 32-row block, more than 256 columns); then the
// row layout's folds (R short rows side by side, bn.cc fold_reduce / fold_elementwise): 1, 3,
// 32, 255, 256 and 257 channels, row counts not multiples of R and below R, hw > 1 rows
const bnShapes: [number, number, number][] = [[4, 3, 70], [2, 5, 3000], [3, 2, 4100], [33, 6, 5], [70, 300, 1], [2, 4, 63], [1, 3, 2],
  [1000, 1, 1], [301, 3, 1], [7, 3, 1], [333, 32, 1], [77, 255, 1], [40, 256, 1], [41, 257, 1], [129, 5, 7]];

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

// ------------------------------------------------------------------ the 'allReduce' exchange's sums

/** Double reference of S1 = sum(x - s), S2 = sum((x - s)^2) per channel, and sum |x - s| (the scale of S1's error). */
function sumsRef(x: Float32Array, n: number, c: number, hw: number, shift: number[]) {
  const s1: number[] = [], s2: number[] = [], abs: number[] = [];
  for (let ch = 0; ch < c; ch++) {
    let a = 0, b = 0, m = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < hw; j++) {
      const d = x[(i * c + ch) * hw + j]! - shift[ch]!;
      a += d; b += d * d; m += Math.abs(d);
    }
    s1.push(a); s2.push(b); abs.push(m);
  }
  return { s1, s2, abs };
}

for (const [n, c, hw] of bnShapes) {
  test(`cpu: bnStatsSums [${n},${c},${hw}] writes shifted sums, count and tag slots; bnMergeSums gives the stats back`, (t) => {
    const x = bnInput(n, c, hw, n * 1000 + c * 10 + hw);
    const ref = bnRef(x, n, c, hw);
    // a shift near the mean (as the layer keeps it), and none
    for (const shift of [ref.mean.map((m, ch) => Math.fround(m + 0.25 * Math.sqrt(ref.var[ch]!))), null]) {
      const s = shift ?? new Array(c).fill(0);
      const sums = new Float32Array(2 * c + 1 + 3).fill(NaN);
      be.bnStatsSums(sums, x, shift && F(shift), n, c, hw, 3, 1, 0xabcdef);
      const want = sumsRef(x, n, c, hw, s);
      closeScaled(t, sums.subarray(0, c), want.s1, want.abs, 'S1', 1e-6);
      close(t, sums.subarray(c, 2 * c), want.s2, 'S2', 1e-6, 0);
      t.deepEqual([...sums.subarray(2 * c)], [n * hw, 0, 0xabcdef, 0], 'count and tag slots');
      if (!shift) continue; // without a shift the float32 sums of the 1e4 channel cannot keep its variance
      const mean = new Float32Array(c), invstd = new Float32Array(c), count = new Float32Array(1);
      const rm = new Float32Array(c), rv = new Float32Array(c).fill(1), sh = F(shift);
      be.bnMergeSums(mean, invstd, count, sh, sums, c, 1e-5, rm, rv, 1);
      close(t, mean, ref.mean, 'merged mean', 1e-6, 1e-6);
      close(t, rv, ref.var.map((v) => (v * n * hw) / (n * hw - 1)), 'unbiased variance (factor 1)', 1e-5, 0);
      close(t, invstd, ref.var.map((v) => 1 / Math.sqrt(v + 1e-5)), 'invstd', 1e-5, 0);
      t.is(count[0], n * hw);
      t.deepEqual([...sh], [...mean], 'the shift becomes the merged mean');
    }
  });
}

test('cpu: bnMergeSums of the summed records of 3 ranks (one empty) equals the stats of the concatenated batch', (t) => {
  const c = 4, hw = 5, ns = [3, 0, 6];
  const xs = ns.map((n, r) => bnInput(n, c, hw, 40 + r));
  const all = new Float32Array(ns.reduce((a, b) => a + b, 0) * c * hw);
  let off = 0;
  for (const x of xs) { all.set(x, off); off += x.length; }
  const ref = bnRef(all, all.length / (c * hw), c, hw);
  const shift = F(ref.mean.map((m) => m - 0.1));
  const summed = new Float32Array(2 * c + 1 + 3);
  xs.forEach((x, r) => {
    const rec = new Float32Array(summed.length);
    be.bnStatsSums(rec, x, shift, ns[r]!, c, hw, 3, r, 7 + r);
    for (let i = 0; i < rec.length; i++) summed[i] = Math.fround(summed[i]! + rec[i]!);
  });
  t.deepEqual([...summed.subarray(2 * c)], [ref.count, 7, 8, 9], 'the global count, every rank\'s tag in its slot');
  const mean = new Float32Array(c), invstd = new Float32Array(c), count = new Float32Array(1);
  be.bnMergeSums(mean, invstd, count, shift, summed, c, 1e-5, null, null, 0);
  close(t, mean, ref.mean, 'mean', 1e-6, 1e-6);
  close(t, invstd, ref.var.map((v) => 1 / Math.sqrt(v + 1e-5)), 'invstd', 1e-5, 0);
  // a global count of 0: mean 0, invstd 1/sqrt(eps), the shift and running stats untouched
  const sh = F([1, 2, 3, 4]), rm = F([5, 5, 5, 5]), rv = F([6, 6, 6, 6]);
  be.bnMergeSums(mean, invstd, count, sh, new Float32Array(2 * c + 1), c, 1e-4, rm, rv, 0.5);
  t.deepEqual([...mean, ...invstd.map((v) => Math.round(v)), count[0]], [0, 0, 0, 0, 100, 100, 100, 100, 0]);
  t.deepEqual([...sh, ...rm, ...rv], [1, 2, 3, 4, 5, 5, 5, 5, 6, 6, 6, 6]);
  t.throws(() => be.bnMergeSums(mean, invstd, count, sh, F([0, 0, 0, 0, 0, 0, 0, 0, -1]), c, 1e-5, null, null, 0),
    { message: /bnMergeSums: .*negative or NaN/ });
  t.throws(() => be.bnStatsSums(new Float32Array(2 * c + 3), all, null, 1, c, hw, 2, 2, 0), { message: /rank 2 is not in \[0, ranks = 2\)/ });
});

// The folded row layout on 2 threads (ranges cut inside a folded row: with 255 channels a
// folded row is 510 columns, not whole 32-element blocks) and in bfloat16 / float16: every
// result equals the 1-thread float32 one on the same (widened) values, bit for bit (outputs:
// rounded once, see `rounded`).
test('cpu: folded row layout: 1 and 2 threads and the half types agree with float32', (t) => {
  const threads = be.getNumThreads();
  try {
    // rows (hw 1), and planes of 196 (not whole 32-element blocks: blocks across planes)
    for (const [n, c, hw] of [[3001, 255, 1], [20001, 3, 1], [4099, 64, 1], [33, 13, 196]] as const) {
      const total = n * c * hw;
      const x32 = randn(total, 11, 0.5, 2), dy32 = randn(total, 12);
      const xb = new Uint16Array(total), xh = new Uint16Array(total), dyb = new Uint16Array(total), dyh = new Uint16Array(total);
      be.castF32ToBf16!(xb, x32, total);
      be.castF32ToF16!(xh, x32, total);
      be.castF32ToBf16!(dyb, dy32, total);
      be.castF32ToF16!(dyh, dy32, total);
      const w = randn(c, 13, 1, 0.2), b = randn(c, 14);
      const run = (kind: 'f32' | 'bf16' | 'f16', x: Float32Array, dy: Float32Array, xs: Uint16Array | null, dys: Uint16Array | null) => {
        const stats = new Float32Array(2 * c + 2), mean = new Float32Array(c), invstd = new Float32Array(c);
        const count = new Float32Array(1), sums = new Float32Array(2 * c), gw = new Float32Array(c), gb = new Float32Array(c);
        const rm = new Float32Array(c), rv = new Float32Array(c).fill(1);
        const k = kind === 'f32' ? null : kind === 'bf16'
          ? { stats: be.bnStatsBf16!.bind(be), elemt: be.bnElemtBf16!.bind(be), red: be.bnBackwardReduceBf16!.bind(be),
            belemt: be.bnBackwardElemtBf16!.bind(be) }
          : { stats: be.bnStatsF16!.bind(be), elemt: be.bnElemtF16!.bind(be), red: be.bnBackwardReduceF16!.bind(be),
            belemt: be.bnBackwardElemtF16!.bind(be) };
        if (k) k.stats(stats, xs!, n, c, hw, 0); else be.bnStats(stats, x, n, c, hw, 0);
        be.bnMergeStats(mean, invstd, count, stats, 1, c, 2 * c + 2, 1e-5, rm, rv, 0.1);
        const y = kind === 'f32' ? new Float32Array(total) : new Uint16Array(total);
        const dx = kind === 'f32' ? new Float32Array(total) : new Uint16Array(total);
        if (k) {
          k.elemt(y as Uint16Array, xs!, mean, invstd, w, b, n, c, hw);
          k.red(sums, gw, gb, dys!, xs!, mean, invstd, n, c, hw);
          k.belemt(dx as Uint16Array, dys!, xs!, mean, invstd, w, sums, count, n, c, hw);
        } else {
          be.bnElemt(y as Float32Array, x, mean, invstd, w, b, n, c, hw);
          be.bnBackwardReduce(sums, gw, gb, dy, x, mean, invstd, n, c, hw);
          be.bnBackwardElemt(dx as Float32Array, dy, x, mean, invstd, w, sums, count, n, c, hw);
        }
        return { stats, sums, gw, y, dx };
      };
      const round = (v: Float32Array, kind: 'bf16' | 'f16') => {
        const o = new Uint16Array(v.length);
        if (kind === 'bf16') be.castF32ToBf16!(o, v, v.length); else be.castF32ToF16!(o, v, v.length);
        return o;
      };
      // Whether (x - mean) * scale + bias is one fused multiply-add is GCC's choice per
      // instantiation, so a float32 result a hair off a rounding tie may round the other way:
      // one unit in the last place, on a handful of elements; anything else is a bug.
      const rounded = (got: Uint16Array, want: Uint16Array, what: string) => {
        let off = 0, far = -1;
        for (let i = 0; i < got.length; i++) {
          if (got[i] === want[i]) continue;
          if (Math.abs(got[i]! - want[i]!) === 1) off++;
          else if (far < 0) far = i;
        }
        t.is(far, -1, `${what}: element ${far}: ${got[far]?.toString(16)} vs ${want[far]?.toString(16)}`);
        t.true(off <= got.length * 1e-5, `${what}: ${off} elements one unit off`);
      };
      be.setNumThreads(1);
      const one = run('f32', x32, dy32, null, null);
      be.setNumThreads(2);
      t.deepEqual(run('f32', x32, dy32, null, null), one, `[${n},${c},${hw}] float32 on 2 threads`);
      for (const [kind, xs, dys] of [['bf16', xb, dyb], ['f16', xh, dyh]] as const) {
        // (bfloat16 planes group their lane sums differently, see parity-dtypes: the test below)
        if (kind === 'bf16' && hw > 1) continue;
        const xw = new Float32Array(total), dyw = new Float32Array(total);
        if (kind === 'bf16') { be.castBf16ToF32!(xw, xs, total); be.castBf16ToF32!(dyw, dys, total); } else {
          be.castF16ToF32!(xw, xs, total); be.castF16ToF32!(dyw, dys, total);
        }
        for (const nt of [1, 2]) {
          be.setNumThreads(1);
          const ref = run('f32', xw, dyw, null, null);
          be.setNumThreads(nt);
          const got = run(kind, xw, dyw, xs, dys);
          const what = `[${n},${c},${hw}] ${kind} on ${nt} thread(s)`;
          t.deepEqual(got.stats, ref.stats, `${what}: stats record`);
          t.deepEqual(got.sums, ref.sums, `${what}: backward sums`);
          rounded(got.y as Uint16Array, round(ref.y as Float32Array, kind), `${what}: elemt, the float32 result rounded once`);
          rounded(got.dx as Uint16Array, round(ref.dx as Float32Array, kind), `${what}: backward elemt`);
        }
      }
    }
  } finally {
    be.setNumThreads(threads);
  }
});

// float16 elemt over the whole range (the CPU's own conversions where the ISA has them):
// y = x * 2^-k exercises subnormal results and their rounding, y = x the special values.
test('cpu: float16 bnElemt rounds as the float16 cast does, subnormals, infinities and the largest values included', (t) => {
  const n = 4096, c = 4;
  const bits = new Uint16Array(n * c);
  for (let i = 0; i < bits.length; i++) bits[i] = (i * 40503) & 0xffff;  // every exponent, both signs
  const xw = new Float32Array(bits.length);
  be.castF16ToF32!(xw, bits, bits.length);
  const finite = bits.map((v, i) => (Number.isNaN(xw[i]!) ? 0x3c00 : v));
  const xf = new Float32Array(bits.length);
  be.castF16ToF32!(xf, finite, bits.length);
  for (const hw of [1, 1024]) {
    const rows = hw === 1 ? n : n / 1024;
    const mean = F([0, 0.5, -3, 0]), invstd = F([1, 2 ** -10, 1, 2 ** -24]);
    const y = new Uint16Array(bits.length), y32 = new Float32Array(bits.length), want = new Uint16Array(bits.length);
    be.bnElemtF16!(y, finite, mean, invstd, null, null, rows, c, hw);
    be.bnElemt(y32, xf, mean, invstd, null, null, rows, c, hw);
    be.castF32ToF16!(want, y32, y32.length);
    t.deepEqual(y, want, `hw ${hw}`);
  }
});

// Planes whose length is not a multiple of 32 run flat, a block across two planes blending
// their constants (bn.cc elemt_planes_flat; bfloat16 in even / odd lanes): the half types'
// output equals float32's on the same values rounded once, on 1 and 2 threads.
test('cpu: half-type bnElemt on planes of 196 and 70 equals float32 rounded once', (t) => {
  const threads = be.getNumThreads();
  try {
    for (const [n, c, hw] of [[33, 13, 196], [64, 7, 70]] as const) {
      const total = n * c * hw;
      const x32 = randn(total, 21, 0.5, 2);
      const mean = randn(c, 22), invstd = randn(c, 23, 1, 0.1), w = randn(c, 24, 1, 0.2), b = randn(c, 25);
      for (const kind of ['bf16', 'f16'] as const) {
        const xs = new Uint16Array(total), xw = new Float32Array(total), want = new Uint16Array(total);
        if (kind === 'bf16') { be.castF32ToBf16!(xs, x32, total); be.castBf16ToF32!(xw, xs, total); } else {
          be.castF32ToF16!(xs, x32, total); be.castF16ToF32!(xw, xs, total);
        }
        const y32 = new Float32Array(total);
        be.setNumThreads(1);
        be.bnElemt(y32, xw, mean, invstd, w, b, n, c, hw);
        if (kind === 'bf16') be.castF32ToBf16!(want, y32, total); else be.castF32ToF16!(want, y32, total);
        for (const nt of [1, 2]) {
          be.setNumThreads(nt);
          const y = new Uint16Array(total);
          if (kind === 'bf16') be.bnElemtBf16!(y, xs, mean, invstd, w, b, n, c, hw); else be.bnElemtF16!(y, xs, mean, invstd, w, b, n, c, hw);
          let off = 0, far = -1;
          for (let i = 0; i < total; i++) {
            if (y[i] === want[i]) continue;
            if (Math.abs(y[i]! - want[i]!) === 1) off++;
            else if (far < 0) far = i;
          }
          // one unit in the last place where float32 lies a hair off a tie (see `rounded` above)
          t.is(far, -1, `[${n},${c},${hw}] ${kind} ${nt} thread(s): element ${far}`);
          t.true(off <= total * 1e-5, `[${n},${c},${hw}] ${kind} ${nt} thread(s): ${off} one unit off`);
        }
      }
    }
  } finally {
    be.setNumThreads(threads);
  }
});
