/**
 * What the 'allReduce' exchange needs to keep the variance when |mean| / std = 1e4,
 * measured on the real kernels: each rank's record from F.batchNormStatsSums, summed
 * in float32 in rank order (as a float32 all-reduce does), merged by
 * F.batchNormMergeSums. Float64 sums are emulated in doubles (core has no float64
 * tensors). The error is that of the unbiased variance against a float64 two-pass
 * over the same float32 data.
 */
import test from 'ava';
import '@bagua/kernels';
import { F, manualSeed, randn, tensor, type Tensor } from '@bagua/core';

const MEANS = [1e4, -3e3, 50];
const COUNTS = [64, 32, 48, 16]; // rows per rank
const P = COUNTS.length;
const C = MEANS.length;

manualSeed(7);
const parts: Float32Array[] = COUNTS.map((n) => {
  const z = randn([n, C]).toArray() as Float32Array;
  return z.map((v, i) => MEANS[i % C] + (Math.abs(MEANS[i % C]) / 1e4) * v);
});
const column = (a: Float32Array, ch: number) => a.filter((_, i) => i % C === ch);
const all = (ch: number) => parts.flatMap((p) => [...column(p, ch)]);
const meanOf = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const exact = MEANS.map((_, ch) => {
  const v = all(ch);
  const m = meanOf(v);
  return { mean: m, std: Math.sqrt(v.reduce((a, x) => a + (x - m) ** 2, 0) / v.length),
    unbiased: v.reduce((a, x) => a + (x - m) ** 2, 0) / (v.length - 1) };
});

/** Largest relative error of the unbiased variance over channels. */
const worst = (got: ArrayLike<number>) => Math.max(...exact.map((e, ch) => Math.abs(got[ch] - e.unbiased) / e.unbiased));

/** The float32 path: the kernels, and a float32 sum of the ranks' records. */
function float32Sums(shift: number[]): number {
  const s = tensor(Float32Array.from(shift));
  const summed = new Float32Array(2 * C + 1 + P);
  parts.forEach((p, r) => {
    const rec = F.batchNormStatsSums(tensor(p, { shape: [COUNTS[r], C] }), s, P, r).toArray() as Float32Array;
    for (let i = 0; i < summed.length; i++) summed[i] = Math.fround(summed[i] + rec[i]);
  });
  const runningVar: Tensor = tensor(new Float32Array(C));
  F.batchNormMergeSums(tensor(summed), tensor(Float32Array.from(shift)), C, 1e-5, tensor(new Float32Array(C)), runningVar, 1);
  return worst(runningVar.toArray() as Float32Array);
}

/** Float64 sums and all-reduce, emulated: each rank's exact moments, shifted and summed in doubles. */
function float64Sums(shift: number[]): number {
  return worst(MEANS.map((_, ch) => {
    let n = 0, s1 = 0, s2 = 0;
    for (const p of parts) {
      const v = [...column(p, ch)];
      const m = meanOf(v);
      const m2 = v.reduce((a, x) => a + (x - m) ** 2, 0);
      const d = m - shift[ch];
      n += v.length; s1 += v.length * d; s2 += m2 + v.length * d * d;
    }
    return (s2 - (s1 * s1) / n) / (n - 1);
  }));
}

const zero = MEANS.map(() => 0);
/** The running mean after k steps at momentum 0.1 from 0: what it would offer as the shift. */
const runningAfter = (k: number) => exact.map((e) => (1 - 0.9 ** k) * e.mean);
const rank0Mean = MEANS.map((_, ch) => meanOf([...column(parts[0], ch)]));
const drifted = exact.map((e) => e.mean - 3 * e.std); // last step's global mean, 3 std away

test('|mean| / std = 1e4: float32 sums need a shift near the mean; float64 sums do not', (t) => {
  const rows: [string, number, number][] = [
    ['shift 0', float32Sums(zero), float64Sums(zero)],
    ...[1, 10, 30, 60, 100].map((k) => [`running mean after ${k} steps`, float32Sums(runningAfter(k)), float64Sums(runningAfter(k))] as [string, number, number]),
    ["rank 0's local mean (first step)", float32Sums(rank0Mean), float64Sums(rank0Mean)],
    ['last global mean, 3 std off', float32Sums(drifted), float64Sums(drifted)],
  ];
  t.log(['relative error of the variance:  float32 sums | float64 sums',
    ...rows.map(([name, f32, f64]) => `${name.padEnd(34)} ${f32.toExponential(2).padStart(9)} | ${f64.toExponential(2)}`)].join('\n'));
  // what the layer does: float32 sums, shifted by the broadcast, then the last global, mean
  t.true(float32Sums(rank0Mean) < 1e-5);
  t.true(float32Sums(drifted) < 1e-5);
  // what it avoids: float32 without a good shift loses the variance entirely
  t.true(float32Sums(zero) > 1e-2);
  t.true(float32Sums(runningAfter(1)) > 1e-2);
  // float64 sums would be enough even without a shift, at this ratio
  t.true(float64Sums(zero) < 1e-5);
});

test('the shifted-sums ops and the statsExchange option refuse what they cannot use', async (t) => {
  const x = randn([4, 3]);
  t.throws(() => F.batchNormStatsSums(x, null, 2, 2), { message: /batchNormStatsSums: rank 2 is not in \[0, 2\)/ });
  t.throws(() => F.batchNormStatsSums(x, tensor(new Float32Array(2)), 1, 0), { message: /shift of shape \[2\] has fewer than 3 values/ });
  t.throws(() => F.batchNormMergeSums(tensor(new Float32Array(6)), tensor(new Float32Array(3)), 3, 1e-5, null, null, 0),
    { message: /sums of shape \[6\] hold fewer than 2C \+ 1 = 7 values/ });
  const { SyncBatchNorm } = await import('../src/index.js');
  t.throws(() => new SyncBatchNorm(3, { statsExchange: 'reduceScatter' as never }),
    { message: /statsExchange must be 'allGather' or 'allReduce', got "reduceScatter"/ });
  t.is(new SyncBatchNorm(3).statsExchange, 'allGather');
});
