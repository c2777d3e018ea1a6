/**
 * The batch-norm kernels of bagua_kernels.h on cuda:0 against the CPU library on the same
 * random inputs, through core's Backend interface (both backends, same calls).
 *
 * Tolerances: exact where both sides do the same IEEE operations in the same
 * order (copies, + - * /, max pooling, nll, relu); otherwise a few float32 ulps
 * (rtol 1e-6: the GPU contracts a*b+c into one fma, and its expf/logf differ
 * from glibc's by up to 2 ulp); and for reductions (sum, gemm, conv, pooling
 * windows, softmax sums, batch-norm sums) the error is bounded relative to the
 * sum of |terms| (1e-5 of it) rather than to the result, because the GPU adds
 * in another order and the result itself may cancel to near 0.
 *
 * Without a GPU each test logs `SKIPPED (cuda missing): ...` and passes, unless
 * BAGUA_REQUIRE contains 'cuda'.
 */
import { both, close, exact, gpuTest, h, randn, uniform } from './cuda-helpers.js';

// ------------------------------------------------------------------ batch normalisation

/** Shapes that reach every GPU code path: float4 planes (one and several blocks per channel),
 *  scalar planes, rows with float4 and scalar loads (one and several row splits). */
const BN_SHAPES: [string, number, number, number][] = [
  ['planes float4, several blocks per channel', 16, 8, 64 * 64],
  ['planes float4, one block per channel', 2, 300, 16],
  ['planes scalar (hw 7x7)', 6, 5, 49],
  ['planes scalar (hw 3)', 100, 4, 3],
  ['rows float4 (BatchNorm1d)', 256, 64, 1],
  ['rows float4, several splits', 4096, 64, 1],
  ['rows scalar (c 3)', 1000, 3, 1],
  ['one channel, hw 1', 5000, 1, 1],
  ['single image', 1, 16, 28 * 28],
];

gpuTest('bnStats: mean and biased variance per channel, count', (t) => {
  for (const [label, n, c, hw] of BN_SHAPES) {
    const x = randn(n * c * hw, n + c + hw, 3, 2);
    const r = both({ stats: { n: 2 * c + 2 }, x }, (b, hh) => b.bnStats(h(hh, 'stats'), h(hh, 'x'), n, c, hw, 0x123456));
    // float accumulation (shifted by a sample, merged in double) against the CPU's double
    close(t, r.gpu.stats, r.cpu.stats, `bnStats ${label} [${n}, ${c}, ${hw}]`, { rtol: 1e-5, atol: 1e-6 });
  }
  // |mean| >> std: the shift keeps the variance accurate (E[x^2] - E[x]^2 would lose everything)
  const x = randn(8 * 4 * 1024, 99, 1000, 1);
  const r = both({ stats: { n: 10 }, x }, (b, hh) => b.bnStats(h(hh, 'stats'), h(hh, 'x'), 8, 4, 1024, 3));
  close(t, r.gpu.stats, r.cpu.stats, 'bnStats mean 1000, std 1', { rtol: 1e-5, atol: 1e-6 });
  const e = both({ stats: { n: 10 }, x: new Float32Array(0) }, (b, hh) => b.bnStats(h(hh, 'stats'), h(hh, 'x'), 0, 4, 10, 5));
  exact(t, e.gpu.stats, e.cpu.stats, 'bnStats of an empty batch: zeros, count 0');
  t.is(e.gpu.stats?.[9], 5, 'the tag column');
});

gpuTest('bnMergeStats (uneven and empty ranks, running statistics) and bnInvstd', (t) => {
  const c = 37;
  const rec = (mean: number, count: number, seed: number) => {
    const s = new Float32Array(2 * c + 1);
    s.set(randn(c, seed, mean, 1), 0);
    s.set(uniform(c, seed + 1, 0.1, 4), c);
    s[2 * c] = count;
    return s;
  };
  const stats = new Float32Array(4 * (2 * c + 1));
  stats.set(rec(1, 96, 1), 0);
  stats.set(rec(-2, 7, 2), 2 * c + 1);
  stats.set(new Float32Array(2 * c + 1), 2 * (2 * c + 1)); // an empty rank
  stats.set(rec(0.5, 512, 3), 3 * (2 * c + 1));
  for (const running of [false, true]) {
    const rm = randn(c, 5), rv = uniform(c, 6, 0.5, 2);
    const r = both({ mean: { n: c }, invstd: { n: c }, count: { n: 1 }, stats, rm: running ? rm : null, rv: running ? rv : null },
      (b, hh) => b.bnMergeStats(h(hh, 'mean'), h(hh, 'invstd'), h(hh, 'count'), h(hh, 'stats'), 4, c, 2 * c + 1, 1e-5,
        hh.rm ?? null, hh.rv ?? null, 0.1));
    // both merge in double and round once
    close(t, r.gpu.mean, r.cpu.mean, 'merged mean', { rtol: 1e-7, atol: 1e-7 });
    close(t, r.gpu.invstd, r.cpu.invstd, 'merged invstd', { rtol: 1e-7, atol: 0 });
    exact(t, r.gpu.count, r.cpu.count, 'global count');
    if (running) {
      close(t, r.gpu.rm, r.cpu.rm, 'running mean', { rtol: 1e-7, atol: 1e-7 });
      close(t, r.gpu.rv, r.cpu.rv, 'running var', { rtol: 1e-7, atol: 0 });
    }
  }
  const v = uniform(c, 8, 0, 3);
  const iv = both({ invstd: { n: c }, v }, (b, hh) => b.bnInvstd(h(hh, 'invstd'), h(hh, 'v'), c, 1e-3));
  exact(t, iv.gpu.invstd, iv.cpu.invstd, 'bnInvstd (double on both)');
});

gpuTest('bnElemt with and without affine parameters, in place', (t) => {
  for (const [label, n, c, hw] of BN_SHAPES) {
    const x = randn(n * c * hw, 1 + n, 3, 2);
    const mean = randn(c, 2, 3, 0.1), invstd = uniform(c, 3, 0.3, 0.7), w = randn(c, 4), bias = randn(c, 5);
    for (const affine of [false, true]) {
      const r = both({ y: { n: n * c * hw }, x, mean, invstd, w: affine ? w : null, bias: affine ? bias : null }, (b, hh) =>
        b.bnElemt(h(hh, 'y'), h(hh, 'x'), h(hh, 'mean'), h(hh, 'invstd'), hh.w ?? null, hh.bias ?? null, n, c, hw));
      // (x - mean) * scale + bias: one fma on the GPU; bound by the size of the terms
      const scale = (x as Float32Array).map((v, i) => {
        const ch = Math.floor(i / hw) % c;
        return Math.abs(v - mean[ch]!) * invstd[ch]! * (affine ? Math.abs(w[ch]!) : 1) + (affine ? Math.abs(bias[ch]!) : 0);
      });
      close(t, r.gpu.y, r.cpu.y, `bnElemt ${label}${affine ? ' affine' : ''}`, { rtol: 0, atol: 0, scale, rtolScale: 5e-7 });
    }
  }
  const n = 4, c = 6, hw = 20;
  const x = randn(n * c * hw, 9);
  const mean = randn(c, 10), invstd = uniform(c, 11, 0.5, 1);
  const r = both({ x, mean, invstd }, (b, hh) =>
    b.bnElemt(h(hh, 'x'), h(hh, 'x'), h(hh, 'mean'), h(hh, 'invstd'), null, null, n, c, hw));
  close(t, r.gpu.x, r.cpu.x, 'bnElemt in place', { rtol: 1e-6, atol: 1e-6 });
});

gpuTest('bnBackwardReduce and bnBackwardElemt', (t) => {
  for (const [label, n, c, hw] of BN_SHAPES) {
    const total = n * c * hw;
    const x = randn(total, 7 + n, 3, 2), dy = randn(total, 8 + c);
    const mean = randn(c, 9, 3, 0.1), invstd = uniform(c, 10, 0.3, 0.7), w = randn(c, 11);
    // sums of |terms| per channel, the natural error bound for the reductions
    const sAbsDy = new Float32Array(c), sAbsDx = new Float32Array(c);
    for (let i = 0; i < total; i++) {
      const ch = Math.floor(i / hw) % c;
      sAbsDy[ch] += Math.abs(dy[i]!);
      sAbsDx[ch] += Math.abs(dy[i]! * (x[i]! - mean[ch]!));
    }
    const scaleSums = new Float32Array(2 * c);
    scaleSums.set(sAbsDy, 0);
    scaleSums.set(sAbsDx, c);
    for (const grads of [false, true]) {
      const r = both({ sums: { n: 2 * c }, gw: grads ? { n: c } : null, gb: grads ? { n: c } : null, dy, x, mean, invstd },
        (b, hh) => b.bnBackwardReduce(h(hh, 'sums'), hh.gw ?? null, hh.gb ?? null, h(hh, 'dy'), h(hh, 'x'), h(hh, 'mean'),
          h(hh, 'invstd'), n, c, hw));
      close(t, r.gpu.sums, r.cpu.sums, `bnBackwardReduce sums ${label}`, { rtol: 1e-6, scale: scaleSums });
      if (grads) {
        close(t, r.gpu.gb, r.cpu.gb, `bnBackwardReduce gradBias ${label}`, { rtol: 1e-6, scale: sAbsDy });
        close(t, r.gpu.gw, r.cpu.gw, `bnBackwardReduce gradWeight ${label}`, { rtol: 1e-6, scale: sAbsDx.map((v, i) => v * invstd[i]!) });
      }
    }
    // backward elemt with the CPU's sums (the same inputs on both sides)
    const sums = new Float32Array(2 * c);
    sums.set(randn(c, 12, 0, 50), 0);
    sums.set(randn(c, 13, 0, 50), c);
    const count = Float32Array.of(n * hw * 3); // as if all-reduced over 3 ranks
    for (const affine of [false, true]) {
      const r = both({ dx: { n: total }, dy, x, mean, invstd, w: affine ? w : null, sums, count }, (b, hh) =>
        b.bnBackwardElemt(h(hh, 'dx'), h(hh, 'dy'), h(hh, 'x'), h(hh, 'mean'), h(hh, 'invstd'), hh.w ?? null,
          h(hh, 'sums'), h(hh, 'count'), n, c, hw));
      // (dy - mdy - (x - mean) k) a: a few roundings, fma on the GPU; bound by the terms
      const scale = dy.map((g, i) => {
        const ch = Math.floor(i / hw) % c;
        const N = count[0]!, is = invstd[ch]!, a = Math.abs(is * (affine ? w[ch]! : 1));
        return (Math.abs(g) + Math.abs(sums[ch]! / N) + Math.abs((x[i]! - mean[ch]!) * is * is * sums[c + ch]! / N)) * a;
      });
      close(t, r.gpu.dx, r.cpu.dx, `bnBackwardElemt ${label}${affine ? ' affine' : ''}`, { rtol: 0, atol: 0, scale, rtolScale: 1e-6 });
    }
  }
});

gpuTest("bnStatsSums and bnMergeSums (the 'allReduce' exchange): every path, a shift near the mean and none", (t) => {
  for (const [label, n, c, hw] of BN_SHAPES) {
    const x = randn(n * c * hw, n + c + hw, 3, 2);
    for (const shift of [randn(c, 7, 3, 0.5), null]) {
      const r = both({ sums: { n: 2 * c + 1 + 3 }, x, shift },
        (b, hh) => b.bnStatsSums(h(hh, 'sums'), h(hh, 'x'), hh.shift ?? null, n, c, hw, 3, 2, 0x654321));
      // S1 may cancel to near 0: its error is bounded by the sum of |x - s| (about 2 * count here)
      const scale = new Float32Array(2 * c + 4).fill(n * hw * (shift ? 3 : 8));
      close(t, r.gpu.sums, r.cpu.sums, `bnStatsSums ${label}${shift ? '' : ', no shift'}`, { rtol: 1e-5, atol: 0, scale, rtolScale: 1e-6 });
      exact(t, r.gpu.sums?.subarray(2 * c) ?? null, r.cpu.sums?.subarray(2 * c) ?? null, `bnStatsSums ${label}: count and tag slots`);
    }
  }
  const e = both({ sums: { n: 4 * 2 + 1 + 2 }, x: new Float32Array(0) },
    (b, hh) => b.bnStatsSums(h(hh, 'sums'), h(hh, 'x'), null, 0, 4, 10, 2, 0, 5));
  exact(t, e.gpu.sums, e.cpu.sums, 'bnStatsSums of an empty batch: zeros, count 0, the tag in slot 0');

  const c = 37;
  const sums = new Float32Array(2 * c + 1 + 2);
  sums.set(randn(c, 11, 0, 3), 0);
  sums.set(uniform(c, 12, 400, 900), c);
  sums[2 * c] = 615;
  for (const running of [false, true]) {
    const rm = randn(c, 5), rv = uniform(c, 6, 0.5, 2);
    const r = both({ mean: { n: c }, invstd: { n: c }, count: { n: 1 }, shift: randn(c, 13, 50, 1), sums,
      rm: running ? rm : null, rv: running ? rv : null },
    (b, hh) => b.bnMergeSums(h(hh, 'mean'), h(hh, 'invstd'), h(hh, 'count'), h(hh, 'shift'), h(hh, 'sums'), c, 1e-5,
      hh.rm ?? null, hh.rv ?? null, 0.1));
    // both merge in double and round once
    close(t, r.gpu.mean, r.cpu.mean, 'merged mean', { rtol: 1e-7, atol: 1e-7 });
    close(t, r.gpu.invstd, r.cpu.invstd, 'merged invstd', { rtol: 1e-7, atol: 0 });
    exact(t, r.gpu.count, r.cpu.count, 'global count');
    exact(t, r.gpu.shift, r.gpu.mean, 'the shift becomes the merged mean');
    if (running) {
      close(t, r.gpu.rm, r.cpu.rm, 'running mean', { rtol: 1e-7, atol: 1e-7 });
      close(t, r.gpu.rv, r.cpu.rv, 'running var', { rtol: 1e-7, atol: 0 });
    }
  }
});
