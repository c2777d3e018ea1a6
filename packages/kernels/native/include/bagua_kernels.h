/* bagua_kernels.h: the one C ABI of @bagua/kernels.
 *
 * Implemented twice: by the CPU library (C++) and by the CUDA library (.cu).
 * Conventions, for every function below:
 *  - float32 data, row-major and contiguous unless strides are given;
 *    strides are in elements and a stride of 0 broadcasts that dimension;
 *  - outputs come first, then inputs, then sizes, then `stream`
 *    (a cudaStream_t in the CUDA library, ignored by the CPU library);
 *  - pointers marked "nullable" may be NULL;
 *  - the return value is a bk_status: BK_OK (0) on success, otherwise the kind
 *    of failure, and bk_last_error() describes it (thread-local).
 * Elementwise kernels allow `out` to alias an input of the same layout.
 */
#ifndef BAGUA_KERNELS_H
#define BAGUA_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BK_API __attribute__((visibility("default")))

/* The ABI version, bumped on every change of a signature or of what a return value
 * means. Both libraries' bk_abi_version() return it; @bagua/kernels refuses a library
 * whose version differs from the one it was written against (load-library.ts). */
#define BK_ABI_VERSION 6

/* What every `int` returned by a kernel or runtime function means
 * (bk_set_num_threads and bk_cpu_info too). */
typedef enum bk_status {
  BK_OK = 0,
  BK_ERR_INVALID_ARGUMENT = 1, /* a size, pointer, geometry or input value the call cannot take */
  BK_ERR_OUT_OF_MEMORY = 2,    /* host scratch or device memory could not be allocated */
  BK_ERR_UNSUPPORTED = 3,      /* not available in this build or on this device */
  BK_ERR_DEVICE = 4,           /* the CUDA runtime or driver failed (no driver, no device, a fault) */
  BK_ERR_LIBRARY = 5           /* a library loaded at run time (cuBLAS, oneDNN) is missing or failed */
} bk_status;

BK_API const char *bk_last_error(void);
/* "cpu" or "cuda", and BK_ABI_VERSION. */
BK_API const char *bk_backend_name(void);
BK_API int32_t bk_abi_version(void);

/* ---- memory movement -------------------------------------------------- */
BK_API int bk_fill_f32(float *out, int64_t n, float value, void *stream);
BK_API int bk_copy_f32(float *out, const float *x, int64_t n, void *stream);
/* out (contiguous, `shape`) = x read through `x_strides` (ndim <= 8). */
BK_API int bk_strided_copy_f32(float *out, const float *x, const int64_t *shape,
                               const int64_t *x_strides, int32_t ndim, void *stream);

/* ---- float16 / bfloat16 ---------------------------------------------------
 * Half types travel as their raw 16 bits. Conversions from float32 round to nearest,
 * ties to even (NaN -> a quiet NaN, overflow -> inf), as PyTorch's; to float32 they are
 * exact (bagua_half.h, shared by both libraries). */
typedef uint16_t bk_float16;  /* IEEE binary16 */
typedef uint16_t bk_bfloat16; /* the upper 16 bits of a float32 */
BK_API int bk_cast_f32_bf16(bk_bfloat16 *out, const float *x, int64_t n, void *stream);
BK_API int bk_cast_f32_f16(bk_float16 *out, const float *x, int64_t n, void *stream);
BK_API int bk_cast_bf16_f32(float *out, const bk_bfloat16 *x, int64_t n, void *stream);
BK_API int bk_cast_f16_f32(float *out, const bk_float16 *x, int64_t n, void *stream);

/* ---- elementwise ------------------------------------------------------ */
enum { BK_ADD = 0, BK_SUB = 1, BK_MUL = 2, BK_DIV = 3 };
/* out (contiguous, `shape`) = a op b, with a and b read through their strides. */
BK_API int bk_binary_f32(int32_t op, float *out, const float *a, const int64_t *a_strides,
                         const float *b, const int64_t *b_strides, const int64_t *shape,
                         int32_t ndim, void *stream);
enum { BK_NEG = 0, BK_RELU = 1, BK_EXP = 2, BK_LOG = 3, BK_SQRT = 4 };
BK_API int bk_unary_f32(int32_t op, float *out, const float *x, int64_t n, void *stream);
/* out = alpha * x + beta */
BK_API int bk_affine_f32(float *out, const float *x, int64_t n, float alpha, float beta, void *stream);
/* dx = x > 0 ? dy : 0 */
BK_API int bk_relu_backward_f32(float *dx, const float *dy, const float *x, int64_t n, void *stream);

/* ---- reductions and products ------------------------------------------ */
/* x viewed as [outer, reduce, inner]; out[o, i] = sum_r x[o, r, i]. */
BK_API int bk_sum_f32(float *out, const float *x, int64_t outer, int64_t reduce, int64_t inner,
                      void *stream);
/* Batched row-major GEMM: C_b = alpha * op(A_b) @ op(B_b) + beta * C_b, for b < batch,
 * op(A) is [m, k], op(B) is [k, n]; trans_* != 0 means the stored matrix is transposed. */
BK_API int bk_gemm_f32(float *c, const float *a, const float *b, int32_t trans_a, int32_t trans_b,
                       int64_t m, int64_t n, int64_t k, float alpha, float beta,
                       int64_t lda, int64_t ldb, int64_t ldc,
                       int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c,
                       void *stream);

/* ---- softmax and losses (over the last axis of [rows, cols]) ---------- */
BK_API int bk_softmax_f32(float *out, const float *x, int64_t rows, int64_t cols, int32_t log,
                          void *stream);
/* y is the forward output; softmax: dx = y * (dy - sum(dy * y)); log: dx = dy - exp(y) * sum(dy) */
BK_API int bk_softmax_backward_f32(float *dx, const float *dy, const float *y, int64_t rows,
                                   int64_t cols, int32_t log, void *stream);
/* out[r] = -logp[r, target[r]]; a target outside [0, cols) is an error. */
BK_API int bk_nll_loss_f32(float *out, const float *logp, const int32_t *target, int64_t rows,
                           int64_t cols, void *stream);
/* dlogp = 0 except dlogp[r, target[r]] = -dout[r] */
BK_API int bk_nll_loss_backward_f32(float *dlogp, const float *dout, const int32_t *target,
                                    int64_t rows, int64_t cols, void *stream);

/* ---- convolution and pooling ------------------------------------------ */
/* Geometry structs: int32 fields only, `size` first. The caller sets `size` to
 * sizeof the struct it was compiled against; a kernel rejects any other size
 * (BK_ERR_INVALID_ARGUMENT), so a caller built for another layout fails loudly.
 * x [n, c, h, w], w [k, c / groups, r, s], y [n, k, oh, ow]. */
#define BK_LAYOUT_NCHW 0
#define BK_LAYOUT_NHWC 1 /* channels-last; a library without it for a kernel refuses it by name */
typedef struct bk_conv2d_geom {
  int32_t size; /* sizeof(bk_conv2d_geom) */
  int32_t n, c, h, w, k; /* k: output channels */
  int32_t r, s;          /* kernel height, width */
  int32_t oh, ow;
  int32_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
  int32_t layout; /* BK_LAYOUT_NCHW, or BK_LAYOUT_NHWC: x, y (dx, dy) stored [n, h, w, c]; w stays [k, c/g, r, s] */
} bk_conv2d_geom;
BK_API int bk_conv2d_f32(float *y, const float *x, const float *w, const float *bias /* nullable */,
                         const bk_conv2d_geom *geom, void *stream);
BK_API int bk_conv2d_backward_input_f32(float *dx, const float *dy, const float *w,
                                        const bk_conv2d_geom *geom, void *stream);
BK_API int bk_conv2d_backward_weight_f32(float *dw, const float *dy, const float *x,
                                         const bk_conv2d_geom *geom, void *stream);
/* Inputs [planes, h, w], outputs [planes, oh, ow]; planes = n * c. */
typedef struct bk_pool2d_geom {
  int32_t size; /* sizeof(bk_pool2d_geom) */
  int32_t planes, h, w, oh, ow;
  int32_t kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, count_include_pad;
  /* BK_LAYOUT_NHWC: planes = n * channels stored [n, h, w, channels] (indices too: the flat h*w
   * position of each maximum, stored in the output's NHWC order); channels is read only then */
  int32_t layout, channels;
} bk_pool2d_geom;
/* indices: flat h*w position of each maximum within its plane */
BK_API int bk_max_pool2d_f32(float *y, int32_t *indices, const float *x, const bk_pool2d_geom *geom,
                             void *stream);
BK_API int bk_max_pool2d_backward_f32(float *dx, const float *dy, const int32_t *indices,
                                      const bk_pool2d_geom *geom, void *stream);
BK_API int bk_avg_pool2d_f32(float *y, const float *x, const bk_pool2d_geom *geom, void *stream);
BK_API int bk_avg_pool2d_backward_f32(float *dx, const float *dy, const bk_pool2d_geom *geom, void *stream);
/* adaptive: only size, planes, h, w, oh, ow of geom are read; window i covers
 * [floor(i * h / oh), ceil((i + 1) * h / oh)). */
BK_API int bk_adaptive_avg_pool2d_f32(float *y, const float *x, const bk_pool2d_geom *geom, void *stream);
BK_API int bk_adaptive_avg_pool2d_backward_f32(float *dx, const float *dy, const bk_pool2d_geom *geom,
                                               void *stream);

/* ---- batch normalisation, as primitives SyncBatchNorm composes ---------
 * x is viewed as [n, c, hw]. "stats" is the packed per-rank record that
 * SyncBatchNorm all-gathers: float[2c + 2] = mean[c], biased var[c], count, tag
 * (the tag names the layer, so ranks can check they gathered the same one). */
/* Welford per channel (never E[x^2] - E[x]^2). n * hw == 0 gives mean 0, var 0, count 0.
 * `tag` is written as is at index 2c + 1. */
BK_API int bk_bn_stats_f32(float *stats, const float *x, int64_t n, int64_t c, int64_t hw,
                           float tag, void *stream);
/* Chan merge of `ranks` stats records, rows `stride` (>= 2c + 1) floats apart, each starting
 * mean[c], var[c], count (the tag, and anything else after 2c + 1, is not read;
 * count-0 rows are skipped)
 * into mean[c], invstd[c] = 1 / sqrt(var + eps) and count[1] (the global count).
 * When running_mean / running_var are not NULL: running = (1 - factor) * running + factor * stat,
 * the variance unbiased by the global count (count / (count - 1)).
 * A global count of 0 gives mean 0 and invstd 1 / sqrt(eps); running statistics are updated
 * only when the global count is > 1 (callers reject training with count <= 1, as PyTorch does). */
BK_API int bk_bn_merge_stats_f32(float *mean, float *invstd, float *count, const float *stats,
                                 int64_t ranks, int64_t c, int64_t stride, float eps,
                                 float *running_mean /* nullable */, float *running_var /* nullable */,
                                 float factor, void *stream);
/* SyncBatchNorm's 'allReduce' exchange: the record ranks sum with one all-reduce,
 * float[2c + 1 + ranks] = S1[c] = sum (x - shift), S2[c] = sum (x - shift)^2 (per channel,
 * from the same Welford moments as bk_bn_stats_f32), count, then `ranks` tag slots: `tag` in
 * slot `rank`, 0 in the others (summed over the ranks, slot r holds rank r's tag).
 * shift: float[c] every rank shares (nullable: 0). Requires 0 <= rank < ranks. */
BK_API int bk_bn_stats_sums_f32(float *sums, const float *x, const float *shift /* nullable */,
                                int64_t n, int64_t c, int64_t hw, int64_t ranks, int64_t rank, float tag,
                                void *stream);
/* The merge of an all-reduced sums record (its first 2c + 1 floats: S1, S2, count N):
 * mean = shift + S1 / N, biased var = (S2 - S1^2 / N) / N, invstd and count as
 * bk_bn_merge_stats_f32, running statistics likewise (only when N > 1). Then shift = mean
 * (in place, when N > 0): the next step's shift is this step's global mean, the same on
 * every rank. A negative or NaN N is an error. */
BK_API int bk_bn_merge_sums_f32(float *mean, float *invstd, float *count, float *shift, const float *sums,
                                int64_t c, float eps, float *running_mean /* nullable */,
                                float *running_var /* nullable */, float factor, void *stream);
/* invstd = 1 / sqrt(var + eps), for evaluation with running statistics. */
BK_API int bk_bn_invstd_f32(float *invstd, const float *var, int64_t c, float eps, void *stream);
/* y = (x - mean) * invstd * weight + bias */
BK_API int bk_bn_elemt_f32(float *y, const float *x, const float *mean, const float *invstd,
                           const float *weight /* nullable */, const float *bias /* nullable */,
                           int64_t n, int64_t c, int64_t hw, void *stream);
/* One pass over dy and x: sums = float[2c]: sum_dy[c], sum_dy_xmu[c] (sum of dy * (x - mean));
 * grad_weight = sum_dy_xmu * invstd, grad_bias = sum_dy (local, when not NULL). */
BK_API int bk_bn_backward_reduce_f32(float *sums, float *grad_weight /* nullable */,
                                     float *grad_bias /* nullable */, const float *dy,
                                     const float *x, const float *mean, const float *invstd,
                                     int64_t n, int64_t c, int64_t hw, void *stream);
/* dx = (dy - sum_dy / N - (x - mean) * invstd^2 * sum_dy_xmu / N) * invstd * weight,
 * sums as above (possibly all-reduced), N = *count (a device scalar: no host sync). */
BK_API int bk_bn_backward_elemt_f32(float *dx, const float *dy, const float *x, const float *mean,
                                    const float *invstd, const float *weight /* nullable */,
                                    const float *sums, const float *count,
                                    int64_t n, int64_t c, int64_t hw, void *stream);
/* The same five on bfloat16 / float16 x, y, dy and dx (PyTorch's mixed rule): statistics,
 * records, sums and every per-channel operand stay float32, accumulation is float32 or
 * double as above, and y / dx are rounded to the input's type once, at the store. */
BK_API int bk_bn_stats_bf16(float *stats, const bk_bfloat16 *x, int64_t n, int64_t c, int64_t hw, float tag,
                            void *stream);
BK_API int bk_bn_stats_sums_bf16(float *sums, const bk_bfloat16 *x, const float *shift /* nullable */, int64_t n,
                                 int64_t c, int64_t hw, int64_t ranks, int64_t rank, float tag, void *stream);
BK_API int bk_bn_elemt_bf16(bk_bfloat16 *y, const bk_bfloat16 *x, const float *mean, const float *invstd,
                            const float *weight /* nullable */, const float *bias /* nullable */,
                            int64_t n, int64_t c, int64_t hw, void *stream);
BK_API int bk_bn_backward_reduce_bf16(float *sums, float *grad_weight /* nullable */,
                                      float *grad_bias /* nullable */, const bk_bfloat16 *dy, const bk_bfloat16 *x,
                                      const float *mean, const float *invstd, int64_t n, int64_t c,
                                      int64_t hw, void *stream);
BK_API int bk_bn_backward_elemt_bf16(bk_bfloat16 *dx, const bk_bfloat16 *dy, const bk_bfloat16 *x, const float *mean,
                                     const float *invstd, const float *weight /* nullable */,
                                     const float *sums, const float *count, int64_t n, int64_t c,
                                     int64_t hw, void *stream);
BK_API int bk_bn_stats_f16(float *stats, const bk_float16 *x, int64_t n, int64_t c, int64_t hw, float tag,
                            void *stream);
BK_API int bk_bn_stats_sums_f16(float *sums, const bk_float16 *x, const float *shift /* nullable */, int64_t n,
                                 int64_t c, int64_t hw, int64_t ranks, int64_t rank, float tag, void *stream);
BK_API int bk_bn_elemt_f16(bk_float16 *y, const bk_float16 *x, const float *mean, const float *invstd,
                            const float *weight /* nullable */, const float *bias /* nullable */,
                            int64_t n, int64_t c, int64_t hw, void *stream);
BK_API int bk_bn_backward_reduce_f16(float *sums, float *grad_weight /* nullable */,
                                      float *grad_bias /* nullable */, const bk_float16 *dy, const bk_float16 *x,
                                      const float *mean, const float *invstd, int64_t n, int64_t c,
                                      int64_t hw, void *stream);
BK_API int bk_bn_backward_elemt_f16(bk_float16 *dx, const bk_float16 *dy, const bk_float16 *x, const float *mean,
                                     const float *invstd, const float *weight /* nullable */,
                                     const float *sums, const float *count, int64_t n, int64_t c,
                                     int64_t hw, void *stream);

/* ---- optimiser ----------------------------------------------------------- */
/* PyTorch's SGD step on one parameter, in place. momentum_buf nullable when momentum == 0;
 * first_step != 0 initialises the buffer with the gradient (no dampening), as PyTorch does. */
BK_API int bk_sgd_f32(float *param, float *momentum_buf /* nullable */, const float *grad, int64_t n, float lr,
                      float momentum, float dampening, float weight_decay, int32_t nesterov,
                      int32_t first_step, void *stream);
/* PyTorch's Adam and AdamW step (foreach=False) on one parameter, in place, in PyTorch's
 * float32 order:
 *   param *= param_scale                       (AdamW's decoupled decay 1 - lr * wd; 1 for Adam)
 *   g = maximize ? -grad : grad;  g += weight_decay * param   (Adam's L2 term; 0 for AdamW)
 *   exp_avg = exp_avg * beta1 + one_minus_beta1 * g
 *   exp_avg_sq = exp_avg_sq * beta2 + one_minus_beta2 * g * g
 *   amsgrad: max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq), used below instead of exp_avg_sq
 *   param += -step_size * exp_avg / (sqrt(exp_avg_sq) / bias_correction2_sqrt + eps)
 * The scalars derived from the step count (step_size = lr / (1 - beta1^t),
 * bias_correction2_sqrt = sqrt(1 - beta2^t)) and 1 - beta are computed by the caller in
 * double, as PyTorch computes them in Python, then rounded once to float.
 * max_exp_avg_sq nullable unless amsgrad. */
BK_API int bk_adam_f32(float *param, float *exp_avg, float *exp_avg_sq, float *max_exp_avg_sq /* nullable */,
                       const float *grad, int64_t n, float beta1, float beta2, float one_minus_beta1,
                       float one_minus_beta2, float eps, float weight_decay, float param_scale, float step_size,
                       float bias_correction2_sqrt, int32_t amsgrad, int32_t maximize, void *stream);

/* LayerNorm and GroupNorm, fused: x is `rows` contiguous rows of `len` values, each row
 * normalised by its own mean and biased variance (mean[r], rstd[r] = 1/sqrt(var + eps),
 * statistics in double). Element p of row r has the affine index
 *   a = (r % groups) * (len / inner) + p / inner
 * (LayerNorm: groups 1, inner 1, so a = p; GroupNorm over [N, C, HW] in G groups: rows N*G,
 * len C/G*HW, groups G, inner HW, so a = the channel); y = (x - mean) * rstd * w[a] + b[a],
 * weight and bias nullable (1 and 0). len > 0 and a multiple of inner. */
BK_API int bk_row_norm_f32(float *y, float *mean, float *rstd, const float *x, const float *weight /* nullable */,
                           const float *bias /* nullable */, int64_t rows, int64_t len, int64_t groups,
                           int64_t inner, float eps, void *stream);
/* Its backward, with xhat = (x - mean) * rstd and g = dy * w[a]:
 *   dx = rstd * (g - mean_row(g) - xhat * mean_row(g * xhat))          (dx nullable)
 *   dweight[a] = sum of dy * xhat, dbias[a] = sum of dy over every (r, p) with that index
 * (each nullable; groups * len / inner entries, written, not accumulated). */
BK_API int bk_row_norm_backward_f32(float *dx /* nullable */, float *dweight /* nullable */,
                                    float *dbias /* nullable */, const float *dy, const float *x, const float *mean,
                                    const float *rstd, const float *weight /* nullable */, int64_t rows, int64_t len,
                                    int64_t groups, int64_t inner, void *stream);

/* ---- CPU library only ------------------------------------------------------ */
/* Kernel threads of the calling thread (each thread has its own count, e.g. one rank
 * per Node worker thread). Default: BAGUA_NUM_THREADS, else max(1, cores / LOCAL_WORLD_SIZE).
 * Also OpenMP's count for this thread, which oneDNN follows. n must be in [1, 1024].
 * The threads are OpenMP's (libgomp.so.1, loaded on first use; without it, one thread).
 * Unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set, libgomp is loaded with
 * GOMP_SPINCOUNT=10000: its default spin burns whole time slices on shared cores. */
BK_API int bk_set_num_threads(int32_t n);
BK_API int32_t bk_get_num_threads(void);
/* What runs the kernels, NUL-terminated into buf (truncated to len), e.g.
 * "cpu (avx512, 2 threads, oneDNN 2.6.3)" or
 * "cpu (avx2, 1 thread, built-in GEMM: oneDNN not found: tried libdnnl.so.2 (...))".
 * oneDNN (libdnnl.so.2, or the path in BAGUA_DNNL_LIB) is loaded on first use. */
BK_API int bk_cpu_info(char *buf, int64_t len);
/* enable > 0: conv2d and GEMM on oneDNN where it loads (the default); 0: the built-in
 * GEMM path; < 0: no change. For the calling thread. Returns 1 when it now uses oneDNN. */
BK_API int32_t bk_cpu_use_dnnl(int32_t enable);

#ifdef __cplusplus
}
#endif
#endif
