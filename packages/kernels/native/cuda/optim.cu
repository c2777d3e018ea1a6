// Optimiser steps other than SGD (which lives with the elementwise kernels): PyTorch's
// Adam and AdamW, one fused in-place pass per parameter, each element the same float
// operations in the same order as the CPU library's cpu/adam.cc (bagua_kernels.h).
#include "common.cuh"

namespace bk {
namespace {

constexpr int kThreads = 256;

struct AdamScalars {
  float beta1, beta2, omb1, omb2, eps, wd, scale, neg_step, bc2_sqrt;
};

__global__ void __launch_bounds__(kThreads)
adam_kernel(float *p, float *m, float *v, float *vmax, const float *grad, int64_t n, AdamScalars s,
            int amsgrad, int maximize) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    float x = p[i];
    if (s.scale != 1.f) x = x * s.scale;
    float g = maximize ? -grad[i] : grad[i];
    if (s.wd != 0.f) g = g + s.wd * x;
    const float mi = m[i] * s.beta1 + s.omb1 * g;
    float vi = v[i] * s.beta2 + (s.omb2 * g) * g;
    m[i] = mi;
    v[i] = vi;
    if (amsgrad) {
      const float mx = vmax[i];
      vi = (mx >= vi || mx != mx) ? mx : vi;  // torch.maximum: NaN wins
      vmax[i] = vi;
    }
    const float denom = sqrtf(vi) / s.bc2_sqrt + s.eps;
    p[i] = x + (s.neg_step * mi) / denom;
  }
}

}  // namespace
}  // namespace bk

using namespace bk;

extern "C" {

BK_API int bk_adam_f32(float *param, float *exp_avg, float *exp_avg_sq, float *max_exp_avg_sq,
                       const float *grad, int64_t n, float beta1, float beta2, float one_minus_beta1,
                       float one_minus_beta2, float eps, float weight_decay, float param_scale,
                       float step_size, float bias_correction2_sqrt, int32_t amsgrad, int32_t maximize,
                       void *stream) {
  BK_REQUIRE(n >= 0, "adam: negative size %lld", (long long)n);
  if (n == 0) return 0;
  BK_REQUIRE(param && exp_avg && exp_avg_sq && grad, "adam: null pointer");
  BK_REQUIRE(!amsgrad || max_exp_avg_sq, "adam: amsgrad needs max_exp_avg_sq");
  BK_REQUIRE(bias_correction2_sqrt > 0.f, "adam: bias_correction2_sqrt must be > 0 (got %g): step count below 1?",
             (double)bias_correction2_sqrt);
  const AdamScalars s = {beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay, param_scale,
                         -step_size, bias_correction2_sqrt};
  int dev;
  BK_TRY(current_device(&dev));
  adam_kernel<<<grid_for(n, kThreads, dev), kThreads, 0, as_stream(stream)>>>(
      param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, n, s, amsgrad, maximize);
  return check_launch("adam");
}

}  // extern "C"
