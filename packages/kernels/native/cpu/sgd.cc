// PyTorch's SGD step (torch.optim.SGD, foreach=False), in float, in PyTorch's order:
//   g = grad + weight_decay * param
//   buf = first_step ? g : momentum * buf + (1 - dampening) * g
//   update = nesterov ? g + momentum * buf : buf       (update = g when momentum == 0)
//   param -= lr * update
#include "common.h"

namespace {

BK_CLONES void sgd_plain(float *p, const float *g, int64_t n, float lr, float wd) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = g[i] + wd * p[i];
    p[i] -= lr * d;
  }
}

BK_CLONES void sgd_momentum(float *p, float *buf, const float *g, int64_t n, float lr, float mom,
                            float damp, float wd, bool nesterov, bool first) {
  const float keep = 1.0f - damp;
  for (int64_t i = 0; i < n; ++i) {
    const float d = g[i] + wd * p[i];
    const float b = first ? d : mom * buf[i] + keep * d;
    buf[i] = b;
    p[i] -= lr * (nesterov ? d + mom * b : b);
  }
}

}  // namespace

extern "C" int bk_sgd_f32(float *param, float *momentum_buf, const float *grad, int64_t n,
                          float lr, float momentum, float dampening, float weight_decay,
                          int32_t nesterov, int32_t first_step, void *) {
  BK_NONNEG(n);
  BK_NOTNULL_IF(n > 0, param, grad);
  BK_NOTNULL_IF(n > 0 && momentum != 0.0f, momentum_buf);
  BK_REQUIRE(!(nesterov && (momentum <= 0.0f || dampening != 0.0f)),
             "%s: nesterov momentum requires a momentum > 0 and zero dampening", __func__);
  if (momentum == 0.0f)
    sgd_plain(param, grad, n, lr, weight_decay);
  else
    sgd_momentum(param, momentum_buf, grad, n, lr, momentum, dampening, weight_decay,
                 nesterov != 0, first_step != 0);
  return 0;
}
