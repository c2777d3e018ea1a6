// Internal helpers shared by the CUDA library's translation units:
// error reporting, launch sizing, index arithmetic, warp/block reductions.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdarg.h>

#include "bagua_kernels.h"
#include "bagua_cuda_runtime.h"

#define BK_HIDDEN __attribute__((visibility("hidden")))

namespace bk {

// ---- errors -----------------------------------------------------------------
// Every exported function returns BK_OK or the result of fail() (BK_ERR_INVALID_ARGUMENT),
// fail_status() (the bk_status given) or fail_cuda() (BK_ERR_DEVICE, or
// BK_ERR_OUT_OF_MEMORY for cudaErrorMemoryAllocation); the message is thread-local so
// concurrent callers (worker threads) do not clobber each other.
BK_HIDDEN int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
BK_HIDDEN int fail_status(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
BK_HIDDEN int fail_cuda(const char *what, cudaError_t e);

// Checks the launch that just happened; asynchronous faults surface at the next
// synchronising call (memcpy to host, synchronize), as with any CUDA library.
inline int check_launch(const char *what) {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? 0 : fail_cuda(what, e);
}

#define BK_CUDA_TRY(what, expr)                       \
  do {                                                \
    cudaError_t bk_e_ = (expr);                       \
    if (bk_e_ != cudaSuccess) return ::bk::fail_cuda(what, bk_e_); \
  } while (0)

#define BK_TRY(expr)                                  \
  do {                                                \
    int bk_rc_ = (expr);                              \
    if (bk_rc_ != 0) return bk_rc_;                   \
  } while (0)

// Argument validation: a null device pointer with work to do, a negative size.
#define BK_REQUIRE(cond, ...)                         \
  do {                                                \
    if (!(cond)) return ::bk::fail(__VA_ARGS__);      \
  } while (0)

inline cudaStream_t as_stream(void *s) { return static_cast<cudaStream_t>(s); }

// ---- device facts (cached per device) ------------------------------------------
BK_HIDDEN int current_device(int *dev);
BK_HIDDEN int sm_count(int dev);

// Grid for a grid-stride loop over `work` items with `per_block` items per
// block pass: enough blocks to fill the GPU a few times over, never more than needed.
inline unsigned grid_for(int64_t work, int64_t per_block, int dev) {
  int64_t need = (work + per_block - 1) / per_block;
  int64_t cap = (int64_t)sm_count(dev) * 16;
  if (need > cap) need = cap;
  return need < 1 ? 1u : (unsigned)need;
}

// How many blocks of `kernel` (at `threads` per block, no dynamic shared memory)
// the whole GPU holds at once (cached per kernel and device). A grid-stride
// kernel launched with at most this many runs in one wave: no tail of idle SMs.
BK_HIDDEN int resident_blocks(const void *kernel, int threads, int dev);

// Grid of a grid-stride kernel: one wave, or fewer blocks when there is less work.
inline unsigned wave_grid(const void *kernel, int64_t work, int64_t per_block, int dev) {
  int64_t need = (work + per_block - 1) / per_block;
  int64_t cap = resident_blocks(kernel, 256, dev);
  if (need > cap) need = cap;
  return need < 1 ? 1u : (unsigned)need;
}

inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// ---- device-side error flag ---------------------------------------------------
// Kernels that detect bad input (an nll target out of range) record it in mapped
// host memory; the host looks at it only when it reads results back, so no
// kernel needs a synchronisation to report an error.
struct DeviceError {
  int code;       // 0: none; otherwise one of the DEVERR_* below
  int value;      // the offending value (e.g. target)
  long long row;  // where
  long long bound;
};
enum { DEVERR_NLL_TARGET = 1, DEVERR_NLL_BACKWARD_TARGET = 2, DEVERR_POOL_INDEX = 3, DEVERR_BN_COUNT = 4 };
BK_HIDDEN DeviceError *device_error_slot();  // device-visible pointer (mapped, portable)
// The flag and the current device for a launch that reports bad data through it;
// fails naming `fn` when the flag cannot be allocated.
BK_HIDDEN int error_flag_launch(const char *fn, DeviceError **err, int *dev);
BK_HIDDEN int take_device_error();           // returns fail(...) if one was recorded, else 0

__device__ inline void raise_device_error(DeviceError *slot, int code, int value, long long row,
                                          long long bound) {
  if (atomicCAS(&slot->code, 0, -1) == 0) {  // first error wins; -1 marks "being written"
    slot->value = value;
    slot->row = row;
    slot->bound = bound;
    __threadfence_system();
    atomicExch(&slot->code, code);
  }
}

// ---- scratch memory -------------------------------------------------------------
// Temporary device memory for im2col columns, reduction partials, etc., from the
// caching allocator. Work is stream-ordered: a block freed after queuing the
// kernels that use it can be handed to the next op on the same stream safely.
// For a stream other than the device's own, release syncs that stream first.
struct Scratch {
  void *ptr = nullptr;
  int64_t bytes = 0;
  cudaStream_t stream = nullptr;
  int acquire(int64_t nbytes, cudaStream_t s);
  ~Scratch();
};

// A per-(device, stream) workspace of self-resetting counters (last-block-done
// merges) and partial results. It only grows, without ever synchronising: a
// retired smaller buffer is kept until empty_cache.
struct Workspace {
  unsigned *counters;
  float *partials;
};
BK_HIDDEN int workspace(cudaStream_t s, int64_t n_counters, int64_t partial_floats, Workspace *out);

// ---- cuBLAS (loaded at run time) -----------------------------------------------
BK_HIDDEN int sgemm_strided_batched(cudaStream_t s, bool trans_a, bool trans_b, int64_t m,
                                    int64_t n, int64_t k, float alpha, const float *a,
                                    int64_t lda, int64_t stride_a, const float *b, int64_t ldb,
                                    int64_t stride_b, float beta, float *c, int64_t ldc,
                                    int64_t stride_c, int64_t batch);

// ---- integer helpers ------------------------------------------------------------
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace bk
