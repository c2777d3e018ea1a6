// PyTorch's Adam and AdamW step (torch.optim.Adam / AdamW, foreach=False), fused: one pass
// over param, grad and the moments instead of PyTorch's seven elementwise kernels. Every
// operation is PyTorch's, in float and in its order (bagua_kernels.h spells it out), so the
// results agree with PyTorch's float32 run to rounding: PyTorch's vectorised add fuses
// `a + alpha * b` into one FMA where this loop may round twice (or the compiler fuse).
#include <math.h>

#include "common.h"

namespace {

struct AdamScalars {
  float beta1, beta2, omb1, omb2, eps, wd, scale, neg_step, bc2_sqrt;
};

template <bool kAmsgrad, bool kMaximize>
BK_CLONES void adam_loop(float *p, float *m, float *v, float *vmax, const float *grad, int64_t n,
                         AdamScalars s) {
  for (int64_t i = 0; i < n; ++i) {
    float x = p[i];
    if (s.scale != 1.0f) x = x * s.scale;  // AdamW's param.mul_(1 - lr * wd)
    float g = kMaximize ? -grad[i] : grad[i];
    if (s.wd != 0.0f) g = g + s.wd * x;  // Adam's grad.add(param, alpha=wd); skipped at 0 as PyTorch
    const float mi = m[i] * s.beta1 + s.omb1 * g;
    float vi = v[i] * s.beta2 + (s.omb2 * g) * g;  // addcmul_: self + (value * t1) * t2
    m[i] = mi;
    v[i] = vi;
    if (kAmsgrad) {
      // torch.maximum: NaN wins
      const float mx = vmax[i];
      vi = (mx >= vi || mx != mx) ? mx : vi;
      vmax[i] = vi;
    }
    const float denom = sqrtf(vi) / s.bc2_sqrt + s.eps;
    p[i] = x + (s.neg_step * mi) / denom;  // addcdiv_: self + (value * t1) / t2
  }
}

template <bool kAmsgrad, bool kMaximize>
void adam_ranges(float *p, float *m, float *v, float *vmax, const float *g, int64_t n, const AdamScalars &s) {
  // Each element depends on itself only: any split gives the same bits.
  bk::parallel_ranges(bk::threads_for(n, bk::kParallelMin), n, 16, [&](int64_t lo, int64_t hi) {
    adam_loop<kAmsgrad, kMaximize>(p + lo, m + lo, v + lo, vmax ? vmax + lo : nullptr, g + lo, hi - lo, s);
    return 0;
  });
}

}  // namespace

extern "C" int bk_adam_f32(float *param, float *exp_avg, float *exp_avg_sq, float *max_exp_avg_sq,
                           const float *grad, int64_t n, float beta1, float beta2, float one_minus_beta1,
                           float one_minus_beta2, float eps, float weight_decay, float param_scale,
                           float step_size, float bias_correction2_sqrt, int32_t amsgrad, int32_t maximize,
                           void *) {
  BK_NONNEG(n);
  BK_NOTNULL_IF(n > 0, param, exp_avg, exp_avg_sq, grad);
  BK_NOTNULL_IF(n > 0 && amsgrad, max_exp_avg_sq);
  BK_REQUIRE(bias_correction2_sqrt > 0.0f, "%s: bias_correction2_sqrt must be > 0 (got %g): step count below 1?",
             __func__, (double)bias_correction2_sqrt);
  const AdamScalars s = {beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay, param_scale,
                         -step_size, bias_correction2_sqrt};
  if (amsgrad)
    maximize ? adam_ranges<true, true>(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, n, s)
             : adam_ranges<true, false>(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, n, s);
  else
    maximize ? adam_ranges<false, true>(param, exp_avg, exp_avg_sq, nullptr, grad, n, s)
             : adam_ranges<false, false>(param, exp_avg, exp_avg_sq, nullptr, grad, n, s);
  return 0;
}
