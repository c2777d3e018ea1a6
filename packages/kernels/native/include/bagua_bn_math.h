/* bagua_bn_math.h: batch-norm math shared by the CPU (g++) and CUDA (nvcc) libraries.
 *
 * Keeping the merge and elementwise formulas in one place means the CPU tests
 * exercise exactly the arithmetic the CUDA kernels run. Everything is a small
 * inline template over the accumulation type T (double on the CPU, float or
 * double on the GPU).
 *
 * Statistics are (count, mean, M2) triples, M2 = sum (x - mean)^2; the biased
 * variance is M2 / count. Never E[x^2] - E[x]^2: it cancels catastrophically
 * when |mean| >> std.
 */
#ifndef BAGUA_BN_MATH_H
#define BAGUA_BN_MATH_H

#include <math.h>

#include "bagua_half.h"

#if defined(__CUDACC__)
#define BK_HD __host__ __device__
#else
#define BK_HD
#endif

namespace bk_bn {

/* Welford's update with one sample. */
template <class T>
BK_HD inline void welford_push(T &count, T &mean, T &m2, T x) {
  count += T(1);
  const T delta = x - mean;
  mean += delta / count;
  m2 += delta * (x - mean);
}

/* Chan et al.'s parallel merge of (count_b, mean_b, m2_b) into (count, mean, m2).
 * A part with count_b <= 0 is skipped (an empty rank contributes nothing, and
 * must not turn the mean into 0/0). */
template <class T>
BK_HD inline void chan_merge(T &count, T &mean, T &m2, T count_b, T mean_b, T m2_b) {
  if (!(count_b > T(0))) return;
  const T total = count + count_b;
  const T delta = mean_b - mean;
  const T fb = count_b / total; /* weight of the incoming part */
  mean += delta * fb;
  m2 += m2_b + delta * delta * count * fb;
  count = total;
}

/* SyncBatchNorm's all-reduce record: a part's (count, mean, M2) as sums shifted by a
 * value s every rank shares, S1 = sum (x - s), S2 = sum (x - s)^2. Formed from the
 * part's exact (double) moments, never from rounded means, so the sums of all ranks
 * add up exactly as counts and sums do (one sum all-reduce). */
template <class T>
BK_HD inline void shifted_sums(T count, T mean, T m2, T shift, T &s1, T &s2) {
  const T d = mean - shift;
  s1 = count * d;
  s2 = m2 + count * d * d;
}

/* The inverse over the whole group: mean = s + S1/N, biased var = (S2 - S1^2/N)/N
 * (clamped at 0: rounding of S2 may leave it a hair below S1^2/N). The subtraction
 * is exact enough when s is close to the mean; that is the shift's job. N <= 0: 0, 0. */
template <class T>
BK_HD inline void sums_moments(T count, T s1, T s2, T shift, T &mean, T &var) {
  if (!(count > T(0))) {
    mean = T(0);
    var = T(0);
    return;
  }
  const T d = s1 / count;
  mean = shift + d;
  const T v = s2 / count - d * d;
  var = v > T(0) ? v : T(0);
}

/* Biased variance of a merged record; 0 for an empty one. */
template <class T>
BK_HD inline T biased_var(T count, T m2) {
  return count > T(0) ? m2 / count : T(0);
}

/* Variance used for running statistics: unbiased by the GLOBAL count. */
template <class T>
BK_HD inline T unbiased_var(T var, T count) {
  return var * count / (count - T(1));
}

template <class T>
BK_HD inline T invstd(T var, T eps) {
  return T(1) / sqrt(var + eps);
}

/* running = (1 - factor) * running + factor * stat */
template <class T>
BK_HD inline T running_update(T running, T stat, T factor) {
  return (T(1) - factor) * running + factor * stat;
}

/* Forward elementwise: y = (x - mean) * scale + bias, scale = invstd * weight.
 * (x - mean) is formed first rather than x * scale + (bias - mean * scale): with
 * |mean| >> std the latter loses the small difference to rounding of the shift. */
BK_HD inline float elemt_scale(float invstd, const float *weight, long long c) {
  return weight ? invstd * weight[c] : invstd;
}
BK_HD inline float elemt(float x, float mean, float scale, float bias) {
  return (x - mean) * scale + bias;
}

/* Backward elementwise, per channel:
 *   dx = (dy - sum_dy / N - (x - mean) * invstd^2 * sum_dy_xmu / N) * invstd * w
 * with the channel constants a = invstd * w, mdy = sum_dy / N,
 * k = invstd^2 * sum_dy_xmu / N. An empty global batch (N <= 0) has no
 * elements to differentiate, so 1/N is taken as 0 rather than inf. */
struct BackwardCoeffs {
  float a, mdy, k;
};
BK_HD inline BackwardCoeffs backward_coeffs(float invstd, float weight, float sum_dy,
                                            float sum_dy_xmu, float count) {
  const float inv_n = count > 0.0f ? 1.0f / count : 0.0f;
  BackwardCoeffs r;
  r.a = invstd * weight;
  r.mdy = sum_dy * inv_n;
  r.k = invstd * invstd * sum_dy_xmu * inv_n;
  return r;
}
BK_HD inline float backward_elemt(float dy, float x, float mean, BackwardCoeffs co) {
  return (dy - co.mdy - (x - mean) * co.k) * co.a;
}

/* The elementwise formulas on stored elements of any kind E (bagua_half.h: F32, BF16, F16):
 * loaded to float, computed in float, stored rounded (nearest even) once. */
template <class E>
BK_HD inline typename E::storage elemt_e(typename E::storage x, float mean, float scale, float bias) {
  return E::store(elemt(E::load(x), mean, scale, bias));
}
template <class E>
BK_HD inline typename E::storage backward_elemt_e(typename E::storage dy, typename E::storage x, float mean,
                                                  BackwardCoeffs co) {
  return E::store(backward_elemt(E::load(dy), E::load(x), mean, co));
}

}  // namespace bk_bn

#endif
