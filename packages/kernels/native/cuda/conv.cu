// conv2d as im2col + cuBLAS GEMM, and its two backward kernels (col2im gathers,
// so the input gradient needs no atomics and is deterministic). The layout and
// batching logic is in conv_impl.cuh, shared with the host check (test_host.cu).
#include "common.cuh"
#include "conv_impl.cuh"

namespace bk {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
im2col_kernel(float *__restrict__ col, const float *__restrict__ x, KGeom g, uint32_t total) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x)
    col[i] = im2col_at(i, x, g);
}

__global__ void __launch_bounds__(kThreads)
col2im_kernel(float *__restrict__ dx, const float *__restrict__ col, KGeom g, uint32_t total) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x)
    dx[i] = col2im_at(i, col, g);
}

__global__ void bias_fill_kernel(float *y, const float *bias, int64_t k, int64_t ohw, int64_t total) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = bias[(i / ohw) % k];
}

// Runs conv_impl.cuh's steps on the GPU, in order on one stream.
struct DeviceExec {
  cudaStream_t s;
  int dev;
  int64_t col_bytes = int64_t(256) << 20;  // column scratch is bounded: images go in chunks
  Scratch col;

  float *scratch(int64_t bytes) {
    if (col.acquire(bytes, s)) return nullptr;
    return static_cast<float *>(col.ptr);
  }
  int fill(float *p, int64_t n, float v) { return bk_fill_f32(p, n, v, s); }
  int bias_fill(float *y, const float *bias, int64_t k, int64_t ohw, int64_t total) {
    bias_fill_kernel<<<grid_for(total, kThreads, dev), kThreads, 0, s>>>(y, bias, k, ohw, total);
    return check_launch("conv2d bias");
  }
  int im2col(float *c, const float *x, const KGeom &g, uint32_t total) {
    im2col_kernel<<<grid_for(total, kThreads, dev), kThreads, 0, s>>>(c, x, g, total);
    return check_launch("conv2d im2col");
  }
  int col2im(float *dx, const float *c, const KGeom &g, uint32_t total) {
    col2im_kernel<<<grid_for(total, kThreads, dev), kThreads, 0, s>>>(dx, c, g, total);
    return check_launch("conv2d col2im");
  }
  int gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, int64_t sa,
           const float *b, int64_t ldb, int64_t sb, float beta, float *c, int64_t ldc, int64_t sc, int64_t batch) {
    return sgemm_strided_batched(s, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
  }
};

int exec_for(void *stream, DeviceExec &e) {
  e.s = as_stream(stream);
  return current_device(&e.dev);
}

// A C entry point's common part: the geometry checked, the stream and device found.
template <class Impl>
int conv_entry(const bk_conv2d_geom *geom, void *stream, const char *fn, const Impl &impl) {
  ConvGeom g;
  BK_TRY(conv_parse(g, geom, fn));
  // the CUDA convolution indexes NCHW; core permutes channels-last tensors for it (the
  // CUDA backend does not declare NHWC convolution), so an NHWC geometry is a caller's error
  if (g.nhwc)
    return fail_status(BK_ERR_UNSUPPORTED, "%s: NHWC (channels-last) convolution is not implemented on CUDA: pass "
                       "NCHW x and y (permute them)", fn);
  DeviceExec e;
  BK_TRY(exec_for(stream, e));
  return impl(e, g, fn);
}

}  // namespace
}  // namespace bk

using namespace bk;

extern "C" {

BK_API int bk_conv2d_f32(float *y, const float *x, const float *w, const float *bias,
                         const bk_conv2d_geom *geom, void *stream) {
  return conv_entry(geom, stream, __func__, [&](DeviceExec &e, const ConvGeom &g, const char *fn) {
    return conv2d_forward_impl(e, y, x, w, bias, g, fn);
  });
}

BK_API int bk_conv2d_backward_input_f32(float *dx, const float *dy, const float *w,
                                        const bk_conv2d_geom *geom, void *stream) {
  return conv_entry(geom, stream, __func__, [&](DeviceExec &e, const ConvGeom &g, const char *fn) {
    return conv2d_backward_input_impl(e, dx, dy, w, g, fn);
  });
}

BK_API int bk_conv2d_backward_weight_f32(float *dw, const float *dy, const float *x,
                                         const bk_conv2d_geom *geom, void *stream) {
  return conv_entry(geom, stream, __func__, [&](DeviceExec &e, const ConvGeom &g, const char *fn) {
    return conv2d_backward_weight_impl(e, dw, dy, x, g, fn);
  });
}

}  // extern "C"
