// The CUDA emulator's stand-in for <cuda_runtime.h>: what the CUDA library's
// sources use of the language and the runtime, for the host compiler.
//
// Kernels run on the CPU: the blocks of a grid one after another, the threads of
// a block as fibers switched at __syncthreads and at warp shuffles (emu.cc).
// This checks the kernels' logic (indices, merges, barriers, launch limits)
// against the CPU library on machines without a GPU. It says nothing about
// speed, the memory model or races between blocks: those need a real GPU.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

// ---- language ---------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
// Block-scope shared memory: one copy per host thread, shared by the fibers of the
// block running there (blocks run one at a time).
#define __shared__ thread_local

#define CUDART_VERSION 13000

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

namespace bkemu {
// The running fiber's coordinates, set by the scheduler before it resumes a fiber.
inline thread_local uint3 thread_idx, block_idx;
inline thread_local dim3 block_dim, grid_dim;

void syncthreads();                                // block barrier
void warp_exchange(unsigned mask, uint64_t *slot_of_lane, uint64_t mine);  // see shuffle()
unsigned lane_id();

// All lanes of `mask` publish a value, then each reads lane `src(lane)`'s.
template <class T, class Src>
T shuffle(unsigned mask, T v, Src src) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a wide type");
  uint64_t mine = 0, slots[32];
  memcpy(&mine, &v, sizeof(T));
  warp_exchange(mask, slots, mine);
  T out;
  memcpy(&out, &slots[src(lane_id())], sizeof(T));
  return out;
}
}  // namespace bkemu

#define threadIdx (::bkemu::thread_idx)
#define blockIdx (::bkemu::block_idx)
#define blockDim (::bkemu::block_dim)
#define gridDim (::bkemu::grid_dim)
constexpr int warpSize = 32;

inline void __syncthreads() { bkemu::syncthreads(); }
inline void __threadfence() {}
inline void __threadfence_system() {}

template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return bkemu::shuffle(mask, v, [=](unsigned lane) {
    unsigned in_group = lane % (unsigned)width;
    return in_group + delta < (unsigned)width ? lane + delta : lane;
  });
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return bkemu::shuffle(mask, v, [=](unsigned lane) {
    return lane % (unsigned)width >= delta ? lane - delta : lane;
  });
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return bkemu::shuffle(mask, v, [=](unsigned lane) {
    unsigned to = lane ^ (unsigned)lane_mask;
    return to / (unsigned)width == lane / (unsigned)width ? to : lane;
  });
}
template <class T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return bkemu::shuffle(mask, v, [=](unsigned lane) {
    return lane / (unsigned)width * (unsigned)width + (unsigned)src_lane % (unsigned)width;
  });
}

// Loads through the read-only / L2 paths are plain loads here.
template <class T> T __ldg(const T *p) { return *p; }
template <class T> T __ldcg(const T *p) { return *p; }

// One host thread runs a block at a time: read-modify-write needs no atomicity
// between fibers; other host threads work on other memory.
template <class T> T atomicAdd(T *p, T v) { T old = *p; *p = old + v; return old; }
template <class T> T atomicExch(T *p, T v) { T old = *p; *p = v; return old; }
template <class T> T atomicCAS(T *p, T expected, T v) {
  T old = *p;
  if (old == expected) *p = v;
  return old;
}

// The device overloads of min/max accept mixed integer types, as CUDA's do.
template <class A, class B>
constexpr typename std::common_type<A, B>::type min(A a, B b) { return b < a ? b : a; }
template <class A, class B>
constexpr typename std::common_type<A, B>::type max(A a, B b) { return a < b ? b : a; }
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }

// ---- runtime API --------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
typedef struct bkemu_stream *cudaStream_t;
typedef struct bkemu_event *cudaEvent_t;
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int major, minor;
  int multiProcessorCount;
};
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaHostAllocPortable = 1;
constexpr unsigned cudaHostAllocMapped = 2;

cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDevice(int *dev);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr attr, int dev);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *blocks, const void *kernel, int threads,
                                                          size_t dynamic_smem);
cudaError_t cudaMalloc(void **p, size_t bytes);
template <class T> cudaError_t cudaMalloc(T **p, size_t bytes) { return cudaMalloc((void **)p, bytes); }
cudaError_t cudaFree(void *p);
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaHostGetDevicePointer(void **d, void *h, unsigned flags);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s = 0);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t e);

// ---- launches ---------------------------------------------------------------------
// `k<<<g, b, shm, s>>>(args)` is rewritten (launch-rewrite.mjs) into
// `::bkemu::cfg(g, b, shm, s) << [&] { k(args); }`: every thread of the grid runs the lambda.
namespace bkemu {
struct Config {
  dim3 grid, block;
};
inline Config cfg(dim3 grid, dim3 block, size_t = 0, cudaStream_t = 0) { return Config{grid, block}; }
void run_grid(const Config &c, void (*body)(void *), void *ctx);
template <class F>
void operator<<(const Config &c, F &&body) {
  run_grid(c, [](void *f) { (*static_cast<typename std::remove_reference<F>::type *>(f))(); }, &body);
}
}  // namespace bkemu
