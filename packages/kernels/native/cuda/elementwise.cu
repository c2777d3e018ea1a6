// Memory movement, elementwise kernels (with broadcasting strides) and SGD.
#include "common.cuh"
#include "strided_hd.cuh"

namespace bk {
namespace {

constexpr int kThreads = 256;

// ---- flat maps: out[i] = f(a[i], b[i]); float4 loads/stores when every pointer
// is 16-byte aligned (the allocator's blocks are), a scalar tail after. ----------
template <class F>
__global__ void __launch_bounds__(kThreads)
map2_kernel(float *out, const float *a, const float *b, int64_t n, bool vec, F f) {
  int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t start = 0;
  if (vec) {
    int64_t n4 = n >> 2;
    const float4 *a4 = reinterpret_cast<const float4 *>(a);
    const float4 *b4 = reinterpret_cast<const float4 *>(b);
    float4 *o4 = reinterpret_cast<float4 *>(out);
    for (int64_t i = tid; i < n4; i += stride) {
      float4 va = a4[i], vb = b ? b4[i] : make_float4(0.f, 0.f, 0.f, 0.f);
      o4[i] = make_float4(f(va.x, vb.x), f(va.y, vb.y), f(va.z, vb.z), f(va.w, vb.w));
    }
    start = n4 << 2;
  }
  for (int64_t i = start + tid; i < n; i += stride) out[i] = f(a[i], b ? b[i] : 0.f);
}

template <class F>
int map2(const char *name, float *out, const float *a, const float *b, int64_t n, void *stream, F f) {
  BK_REQUIRE(n >= 0, "%s: negative size %lld", name, (long long)n);
  if (n == 0) return 0;
  BK_REQUIRE(out && a, "%s: null pointer", name);
  int dev;
  BK_TRY(current_device(&dev));
  bool vec = aligned16(out) && aligned16(a) && (!b || aligned16(b));
  unsigned grid = grid_for(vec ? (n + 3) / 4 : n, kThreads, dev);
  map2_kernel<<<grid, kThreads, 0, as_stream(stream)>>>(out, a, b, n, vec, f);
  return check_launch(name);
}

__global__ void fill_kernel(float *out, int64_t n, float v, bool vec) {
  int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t start = 0;
  if (vec) {
    float4 v4 = make_float4(v, v, v, v);
    for (int64_t i = tid; i < (n >> 2); i += stride) reinterpret_cast<float4 *>(out)[i] = v4;
    start = (n >> 2) << 2;
  }
  for (int64_t i = start + tid; i < n; i += stride) out[i] = v;
}

template <typename I>
__global__ void __launch_bounds__(kThreads)
strided_copy_kernel(float *out, const float *x, BkShape s, I n) {
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
    int64_t oa, ob;
    offsets<I>(s, i, oa, ob);
    out[i] = x[oa];
  }
}

// A transpose inside a strided copy (NCHW <-> NHWC): the innermost output dimension (cols)
// steps over the input by `cs` while the one outside it (rows) is contiguous in the input.
// Element by element, a warp would read 32 cache lines for one; here a block moves a
// kTT x kTT tile through shared memory, reading along rows and writing along cols, so
// both sides are coalesced (the +1 column keeps the transposed reads off one bank).
constexpr int kTT = 32, kTRows = 8;

__global__ void __launch_bounds__(kTT * kTRows)
transpose_copy_kernel(float *out, const float *x, BkShape s, int64_t rows, int64_t cols, int64_t cs, int64_t blocks) {
  __shared__ float tile[kTT][kTT + 1];
  const int64_t r0 = (int64_t)blockIdx.y * kTT, c0 = (int64_t)blockIdx.x * kTT;
  for (int64_t b = blockIdx.z; b < blocks; b += gridDim.z) {
    // the input offset of block b (the dimensions outside the transposed pair)
    int64_t off = 0, rest = b;
    for (int d = s.ndim - 3; d >= 0; --d) {
      off += rest % s.size[d] * s.stride_a[d];
      rest /= s.size[d];
    }
    const float *xb = x + off;
    float *ob = out + b * rows * cols;
    for (int j = threadIdx.y; j < kTT; j += kTRows) {
      const int64_t c = c0 + j, r = r0 + threadIdx.x;
      if (c < cols && r < rows) tile[j][threadIdx.x] = xb[r + c * cs];
    }
    __syncthreads();
    for (int j = threadIdx.y; j < kTT; j += kTRows) {
      const int64_t r = r0 + j, c = c0 + threadIdx.x;
      if (r < rows && c < cols) ob[r * cols + c] = tile[threadIdx.x][j];
    }
    __syncthreads();  // the tile is refilled for the next block
  }
}

__device__ __forceinline__ float binop(int op, float a, float b) {
  switch (op) {
    case BK_ADD: return a + b;
    case BK_SUB: return a - b;
    case BK_MUL: return a * b;
    default: return a / b;
  }
}

template <typename I>
__global__ void __launch_bounds__(kThreads)
binary_strided_kernel(int op, float *out, const float *a, const float *b, BkShape s, I n) {
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
    int64_t oa, ob;
    offsets<I>(s, i, oa, ob);
    out[i] = binop(op, a[oa], b[ob]);
  }
}

// b broadcast as one scalar over contiguous a (x + 1, x * w for a 1-element w, ...).
__global__ void __launch_bounds__(kThreads)
binary_scalar_kernel(int op, float *out, const float *a, const float *b, int64_t n, bool scalar_left) {
  float s = *b;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    out[i] = scalar_left ? binop(op, s, a[i]) : binop(op, a[i], s);
}

__global__ void __launch_bounds__(kThreads)
sgd_kernel(float *param, float *buf, const float *grad, int64_t n, float lr, float momentum,
           float dampening, float weight_decay, int nesterov, int first_step) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    float p = param[i];
    float d = grad[i];
    if (weight_decay != 0.f) d = d + weight_decay * p;
    if (momentum != 0.f) {
      float m = first_step ? d : momentum * buf[i] + (1.f - dampening) * d;
      buf[i] = m;
      d = nesterov ? d + momentum * m : m;
    }
    param[i] = p - lr * d;
  }
}

int fill_shape(const char *name, BkShape &s, const int64_t *shape, const int64_t *sa,
               const int64_t *sb, int32_t ndim, int64_t *numel) {
  BK_REQUIRE(ndim >= 0 && ndim <= 8, "%s: ndim %d outside [0, 8]", name, ndim);
  BK_REQUIRE(ndim == 0 || (shape && sa), "%s: null shape or strides", name);
  s.ndim = ndim;
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) {
    BK_REQUIRE(shape[d] >= 0, "%s: negative size %lld in dimension %d", name,
               (long long)shape[d], d);
    s.size[d] = shape[d];
    s.stride_a[d] = sa[d];
    s.stride_b[d] = sb ? sb[d] : 0;
    n *= shape[d];
  }
  *numel = n;
  return 0;
}


}  // namespace
}  // namespace bk

using namespace bk;

extern "C" {

BK_API int bk_fill_f32(float *out, int64_t n, float value, void *stream) {
  BK_REQUIRE(n >= 0, "fill: negative size %lld", (long long)n);
  if (n == 0) return 0;
  BK_REQUIRE(out, "fill: null pointer");
  int dev;
  BK_TRY(current_device(&dev));
  bool vec = aligned16(out);
  fill_kernel<<<grid_for(vec ? (n + 3) / 4 : n, kThreads, dev), kThreads, 0, as_stream(stream)>>>(
      out, n, value, vec);
  return check_launch("fill");
}

BK_API int bk_copy_f32(float *out, const float *x, int64_t n, void *stream) {
  BK_REQUIRE(n >= 0, "copy: negative size %lld", (long long)n);
  if (n == 0 || out == x) return 0;
  BK_REQUIRE(out && x, "copy: null pointer");
  BK_CUDA_TRY("copy", cudaMemcpyAsync(out, x, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice,
                                      as_stream(stream)));
  return 0;
}

BK_API int bk_strided_copy_f32(float *out, const float *x, const int64_t *shape,
                               const int64_t *x_strides, int32_t ndim, void *stream) {
  BkShape s;
  int64_t n = 0;
  BK_TRY(fill_shape("strided_copy", s, shape, x_strides, nullptr, ndim, &n));
  if (n == 0) return 0;
  BK_REQUIRE(out && x, "strided_copy: null pointer");
  if (is_contiguous(s, x_strides)) return bk_copy_f32(out, x, n, stream);
  collapse(s, 1);
  int dev;
  BK_TRY(current_device(&dev));
  if (s.ndim >= 2) {
    const int l = s.ndim - 1;
    const int64_t rows = s.size[l - 1], cols = s.size[l], cs = s.stride_a[l];
    const int64_t tiles_r = (rows + kTT - 1) / kTT, tiles_c = (cols + kTT - 1) / kTT;
    // out must not overlap x (a permutation reads what it would overwrite)
    const bool apart = out + n <= x || x + n <= out;
    if (s.stride_a[l - 1] == 1 && cs != 1 && cs != 0 && rows >= 4 && cols >= 4 && tiles_r <= 65535 &&
        tiles_c <= 0x7fffffff && apart) {
      const int64_t blocks = n / (rows * cols);
      const dim3 grid((unsigned)tiles_c, (unsigned)tiles_r, (unsigned)(blocks < 65535 ? blocks : 65535));
      transpose_copy_kernel<<<grid, dim3(kTT, kTRows), 0, as_stream(stream)>>>(out, x, s, rows, cols, cs, blocks);
      return check_launch("strided_copy");
    }
  }
  unsigned grid = grid_for(n, kThreads, dev);
  if (n < (int64_t(1) << 31))  // 32-bit index arithmetic is several times cheaper
    strided_copy_kernel<uint32_t><<<grid, kThreads, 0, as_stream(stream)>>>(out, x, s, (uint32_t)n);
  else
    strided_copy_kernel<int64_t><<<grid, kThreads, 0, as_stream(stream)>>>(out, x, s, n);
  return check_launch("strided_copy");
}

BK_API int bk_binary_f32(int32_t op, float *out, const float *a, const int64_t *a_strides,
                         const float *b, const int64_t *b_strides, const int64_t *shape,
                         int32_t ndim, void *stream) {
  BK_REQUIRE(op >= BK_ADD && op <= BK_DIV, "binary: unknown op %d", op);
  BkShape s;
  int64_t n = 0;
  BK_TRY(fill_shape("binary", s, shape, a_strides, b_strides, ndim, &n));
  if (n == 0) return 0;
  BK_REQUIRE(out && a && b && (ndim == 0 || b_strides), "binary: null pointer");
  bool ca = is_contiguous(s, a_strides), cb = is_contiguous(s, b_strides);
  if (ca && cb) {
    switch (op) {
      case BK_ADD: return map2("add", out, a, b, n, stream, [] __device__(float x, float y) { return x + y; });
      case BK_SUB: return map2("sub", out, a, b, n, stream, [] __device__(float x, float y) { return x - y; });
      case BK_MUL: return map2("mul", out, a, b, n, stream, [] __device__(float x, float y) { return x * y; });
      default: return map2("div", out, a, b, n, stream, [] __device__(float x, float y) { return x / y; });
    }
  }
  int dev;
  BK_TRY(current_device(&dev));
  unsigned grid = grid_for(n, kThreads, dev);
  bool b_scalar = true, a_scalar = true;
  for (int d = 0; d < ndim; d++) {
    if (s.size[d] != 1 && b_strides[d] != 0) b_scalar = false;
    if (s.size[d] != 1 && a_strides[d] != 0) a_scalar = false;
  }
  if ((ca && b_scalar) || (cb && a_scalar)) {
    bool left = !(ca && b_scalar);
    binary_scalar_kernel<<<grid, kThreads, 0, as_stream(stream)>>>(op, out, left ? b : a,
                                                                  left ? a : b, n, left);
    return check_launch("binary");
  }
  collapse(s, 2);
  if (n < (int64_t(1) << 31))
    binary_strided_kernel<uint32_t><<<grid, kThreads, 0, as_stream(stream)>>>(op, out, a, b, s,
                                                                              (uint32_t)n);
  else
    binary_strided_kernel<int64_t><<<grid, kThreads, 0, as_stream(stream)>>>(op, out, a, b, s, n);
  return check_launch("binary");
}

BK_API int bk_unary_f32(int32_t op, float *out, const float *x, int64_t n, void *stream) {
  switch (op) {
    case BK_NEG: return map2("neg", out, x, nullptr, n, stream, [] __device__(float v, float) { return -v; });
    // NaN propagates through relu, as in PyTorch.
    case BK_RELU: return map2("relu", out, x, nullptr, n, stream, [] __device__(float v, float) { return v > 0.f || v != v ? v : 0.f; });
    case BK_EXP: return map2("exp", out, x, nullptr, n, stream, [] __device__(float v, float) { return expf(v); });
    case BK_LOG: return map2("log", out, x, nullptr, n, stream, [] __device__(float v, float) { return logf(v); });
    case BK_SQRT: return map2("sqrt", out, x, nullptr, n, stream, [] __device__(float v, float) { return sqrtf(v); });
    default: return fail("unary: unknown op %d", op);
  }
}

BK_API int bk_affine_f32(float *out, const float *x, int64_t n, float alpha, float beta, void *stream) {
  return map2("affine", out, x, nullptr, n, stream,
              [alpha, beta] __device__(float v, float) { return alpha * v + beta; });
}

BK_API int bk_relu_backward_f32(float *dx, const float *dy, const float *x, int64_t n, void *stream) {
  // map2 passes (a, b) = (dy, x)
  return map2("relu_backward", dx, dy, x, n, stream,
              [] __device__(float g, float v) { return v > 0.f ? g : 0.f; });
}

BK_API int bk_sgd_f32(float *param, float *momentum_buf, const float *grad, int64_t n, float lr,
                      float momentum, float dampening, float weight_decay, int32_t nesterov,
                      int32_t first_step, void *stream) {
  BK_REQUIRE(n >= 0, "sgd: negative size %lld", (long long)n);
  if (n == 0) return 0;
  BK_REQUIRE(param && grad, "sgd: null pointer");
  BK_REQUIRE(momentum == 0.f || momentum_buf, "sgd: momentum %g needs a momentum buffer", momentum);
  int dev;
  BK_TRY(current_device(&dev));
  sgd_kernel<<<grid_for(n, kThreads, dev), kThreads, 0, as_stream(stream)>>>(
      param, momentum_buf, grad, n, lr, momentum, dampening, weight_decay, nesterov, first_step);
  return check_launch("sgd");
}

}  // extern "C"
