// The CUDA emulator: the runtime API over host memory, and a grid scheduler that
// runs each block's threads as fibers (ucontext) switched at barriers.
//
// Faults a GPU would report asynchronously (a deadlocked barrier, a shuffle with
// an exited lane, an out-of-range copy) become a sticky error returned by the
// next synchronising call, as on a GPU, and are described on stderr.
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

// ---- errors -----------------------------------------------------------------------
thread_local cudaError_t g_last = cudaSuccess;  // cudaGetLastError's
cudaError_t g_sticky = cudaSuccess;              // a kernel fault: every later call fails
std::mutex g_mu;
// A stream runs its work in order, whichever host thread queued it; the emulator runs work at
// the call, so launches and copies from several host threads (ava's worker threads share the
// library's stream) take turns here. One lock for every stream: serialising streams is one of
// the schedules a GPU may choose; interleaving two launches of one stream is not.
std::mutex g_exec_mu;

cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) g_last = e;
  return e;
}

void fault(cudaError_t e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fault(cudaError_t e, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "bagua CUDA emulator: %s\n", msg);
  std::lock_guard<std::mutex> g(g_mu);
  if (g_sticky == cudaSuccess) g_sticky = e;
  g_last = e;
}

cudaError_t sticky() {
  std::lock_guard<std::mutex> g(g_mu);
  return set_error(g_sticky);
}

int env_int(const char *name, int dflt) {
  const char *v = getenv(name);
  return v && atoi(v) > 0 ? atoi(v) : dflt;
}
// Few SMs keep grids small (every GPU thread is a fiber); they also make the
// grid-stride loops and the multi-block merges take several turns.
int sm_count() { return env_int("BAGUA_CUDA_EMU_SMS", 2); }
int device_count() { return env_int("BAGUA_CUDA_EMU_DEVICES", 1); }
// BAGUA_CUDA_EMU_ORDER=shuffle runs the blocks of a grid, and the threads of a block
// between barriers, in a scrambled order (fixed per launch size): a kernel that counts
// on block 0 finishing first, or on threads running in index order, fails then.
bool shuffled() {
  static const bool v = [] {
    const char *e = getenv("BAGUA_CUDA_EMU_ORDER");
    return e && strcmp(e, "shuffle") == 0;
  }();
  return v;
}
// Position k of a permutation of [0, n): a stride coprime with n, from an offset.
unsigned scramble(unsigned k, unsigned n) {
  if (n <= 1) return 0;
  unsigned m = (unsigned)(n * 0.6180339887) | 1u;  // golden-ratio stride, made coprime
  auto gcd = [](unsigned a, unsigned b) { while (b) { unsigned t = a % b; a = b; b = t; } return a; };
  while (m == 0 || gcd(m, n) != 1) m = (m + 1) % n;
  return (unsigned)(((uint64_t)k * m + n / 2) % n);
}
thread_local int g_device = 0;

// ---- device memory: host memory, with the allocations known ---------------------------
std::map<uintptr_t, size_t> g_allocs;  // start -> bytes (device and mapped host)

bool inside_allocation(const void *p, size_t bytes) {
  std::lock_guard<std::mutex> g(g_mu);
  uintptr_t a = (uintptr_t)p;
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

// ---- the scheduler ------------------------------------------------------------------
enum State { RUNNABLE, AT_SYNC, AT_WARP, DONE };
constexpr size_t kStack = 64 << 10;

struct Fiber {
  ucontext_t ctx;
  State state;
  uint3 idx;
  unsigned parity;  // which of the two exchange buffers its next shuffle uses
};

struct Block {
  ucontext_t main;
  std::vector<Fiber> fibers;
  char *stacks = nullptr;
  size_t stack_slots = 0;
  int current = -1;
  void (*body)(void *) = nullptr;
  void *ctx = nullptr;
  uint64_t slots[2][32][32];  // [parity][warp][lane]
  const char *fault_where = nullptr;
};
thread_local Block t_block;

void fiber_entry() {
  Block &b = t_block;
  b.body(b.ctx);
  b.fibers[b.current].state = DONE;  // uc_link returns to the scheduler
}

void park(State s) {
  Block &b = t_block;
  Fiber &f = b.fibers[b.current];
  f.state = s;
  swapcontext(&f.ctx, &b.main);
}

void ensure_stacks(size_t n) {
  Block &b = t_block;
  if (b.stack_slots >= n) return;
  if (b.stacks) munmap(b.stacks, b.stack_slots * kStack);
  b.stacks = (char *)mmap(nullptr, n * kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                          -1, 0);
  if (b.stacks == MAP_FAILED) {
    fprintf(stderr, "bagua CUDA emulator: cannot map %zu fiber stacks\n", n);
    abort();
  }
  b.stack_slots = n;
}

// Runs one block to completion; false (with a fault recorded) on a deadlock.
bool run_block(const bkemu::Config &c, uint3 block) {
  Block &b = t_block;
  const unsigned n = c.block.x * c.block.y * c.block.z;
  b.fibers.resize(n);
  for (unsigned i = 0; i < n; i++) {
    Fiber &f = b.fibers[i];
    f.state = RUNNABLE;
    f.idx = uint3{i % c.block.x, i / c.block.x % c.block.y, i / (c.block.x * c.block.y)};
    f.parity = 0;
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = b.stacks + (size_t)i * kStack;
    f.ctx.uc_stack.ss_size = kStack;
    f.ctx.uc_link = &b.main;
    makecontext(&f.ctx, fiber_entry, 0);
  }
  bkemu::block_idx = block;
  const unsigned warps = (n + 31) / 32;
  const bool mix = shuffled();
  for (;;) {
    for (unsigned k = 0; k < n; k++) {
      const unsigned i = mix ? scramble(k, n) : k;
      if (b.fibers[i].state != RUNNABLE) continue;
      b.current = (int)i;
      bkemu::thread_idx = b.fibers[i].idx;
      swapcontext(&b.main, &b.fibers[i].ctx);
    }
    // Everyone is parked or done: release a barrier every live thread has reached.
    unsigned live = 0, at_sync = 0;
    for (const Fiber &f : b.fibers) {
      live += f.state != DONE;
      at_sync += f.state == AT_SYNC;
    }
    if (live == 0) return true;
    bool released = false;
    if (at_sync == live) {
      for (Fiber &f : b.fibers) f.state = f.state == AT_SYNC ? RUNNABLE : f.state;
      released = true;
    }
    for (unsigned w = 0; w < warps && !released; w++) {
      unsigned wl = 0, wa = 0;
      for (unsigned i = w * 32; i < n && i < w * 32 + 32; i++) {
        wl += b.fibers[i].state != DONE;
        wa += b.fibers[i].state == AT_WARP;
      }
      if (wl > 0 && wa == wl) {
        for (unsigned i = w * 32; i < n && i < w * 32 + 32; i++) b.fibers[i].state = RUNNABLE;
        released = true;
      }
    }
    if (!released) {
      fault(cudaErrorLaunchFailure,
            "deadlock in block (%u,%u,%u): %u of %u threads live, %u at __syncthreads, the rest at "
            "warp shuffles of partly waiting warps",
            block.x, block.y, block.z, live, n, at_sync);
      return false;
    }
  }
}

}  // namespace

namespace bkemu {

void syncthreads() { park(AT_SYNC); }

unsigned lane_id() {
  const Block &b = t_block;
  return (unsigned)b.current & 31u;
}

void warp_exchange(unsigned mask, uint64_t *out, uint64_t mine) {
  Block &b = t_block;
  const unsigned me = (unsigned)b.current, warp = me / 32, lane = me & 31;
  const unsigned first = warp * 32, n = (unsigned)b.fibers.size();
  for (unsigned l = 0; l < 32; l++) {
    const bool exists = first + l < n;
    if ((mask >> l & 1u) && (!exists || b.fibers[first + l].state == DONE)) {
      fault(cudaErrorLaunchFailure,
            "warp shuffle in block (%u,%u,%u), thread %u: lane %u of the mask 0x%08x has exited",
            block_idx.x, block_idx.y, block_idx.z, me, l, mask);
      break;
    }
  }
  const unsigned p = b.fibers[me].parity;
  b.fibers[me].parity ^= 1u;
  b.slots[p][warp][lane] = mine;
  park(AT_WARP);
  memcpy(out, b.slots[p][warp], sizeof(uint64_t) * 32);
}

void run_grid(const Config &c, void (*body)(void *), void *ctx) {
  const uint64_t threads = (uint64_t)c.block.x * c.block.y * c.block.z;
  if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 || c.grid.x > 0x7fffffffu || c.grid.y > 65535 ||
      c.grid.z > 65535 || threads == 0 || threads > 1024 || c.block.z > 64) {
    // As on a GPU: the launch does not happen, cudaGetLastError reports it.
    fprintf(stderr, "bagua CUDA emulator: invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u)\n",
            c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z);
    set_error(cudaErrorInvalidConfiguration);
    return;
  }
  if (sticky() != cudaSuccess) return;
  std::lock_guard<std::mutex> exec(g_exec_mu);
  Block &b = t_block;
  ensure_stacks(threads);
  b.body = body;
  b.ctx = ctx;
  block_dim = c.block;
  grid_dim = c.grid;
  const uint64_t blocks = (uint64_t)c.grid.x * c.grid.y * c.grid.z;
  const bool mix = shuffled() && blocks < (1u << 31);
  for (uint64_t k = 0; k < blocks; k++) {
    const uint64_t i = mix ? scramble((unsigned)k, (unsigned)blocks) : k;
    const uint3 at{(unsigned)(i % c.grid.x), (unsigned)(i / c.grid.x % c.grid.y), (unsigned)(i / ((uint64_t)c.grid.x * c.grid.y))};
    if (!run_block(c, at)) return;
  }
}

}  // namespace bkemu

// ---- runtime API --------------------------------------------------------------------
cudaError_t cudaGetLastError() {
  cudaError_t e = g_last;
  g_last = cudaSuccess;
  std::lock_guard<std::mutex> g(g_mu);
  return g_sticky != cudaSuccess ? g_sticky : e;
}
cudaError_t cudaPeekAtLastError() { return g_last; }

const char *cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

cudaError_t cudaGetDeviceCount(int *n) {
  *n = device_count();
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int *dev) {
  *dev = g_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int dev) {
  if (dev < 0 || dev >= device_count()) return set_error(cudaErrorInvalidDevice);
  g_device = dev;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev) {
  if (dev < 0 || dev >= device_count()) return set_error(cudaErrorInvalidDevice);
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "bagua CUDA emulator (CPU, %d SMs)", sm_count());
  p->totalGlobalMem = size_t(4) << 30;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = sm_count();
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr attr, int dev) {
  if (dev < 0 || dev >= device_count()) return set_error(cudaErrorInvalidDevice);
  if (attr != cudaDevAttrMultiProcessorCount) return set_error(cudaErrorInvalidValue);
  *v = sm_count();
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *blocks, const void *, int threads, size_t) {
  if (threads <= 0 || threads > 1024) return set_error(cudaErrorInvalidValue);
  *blocks = 1024 / threads;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
  void *m = nullptr;
  if (posix_memalign(&m, 256, bytes ? bytes : 1) != 0) return set_error(cudaErrorMemoryAllocation);
  memset(m, 0xff, bytes);  // NaN everywhere: a read of memory nobody wrote shows
  std::lock_guard<std::mutex> g(g_mu);
  g_allocs[(uintptr_t)m] = bytes;
  *p = m;
  return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
  if (!p) return cudaSuccess;
  {
    std::lock_guard<std::mutex> g(g_mu);
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end()) return set_error(cudaErrorInvalidValue);
    g_allocs.erase(it);
  }
  free(p);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned) { return cudaMalloc(p, bytes); }
cudaError_t cudaFreeHost(void *p) { return cudaFree(p); }
cudaError_t cudaHostGetDevicePointer(void **d, void *h, unsigned) {
  if (!inside_allocation(h, 1)) return set_error(cudaErrorInvalidValue);
  *d = h;
  return cudaSuccess;
}

static cudaError_t check_range(const char *what, const void *p, size_t bytes) {
  if (bytes == 0 || inside_allocation(p, bytes)) return cudaSuccess;
  fault(cudaErrorIllegalAddress, "%s: %zu bytes at %p are not inside one device allocation", what, bytes, p);
  return cudaErrorIllegalAddress;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  if (cudaError_t e = sticky()) return e;
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (dst_dev) if (cudaError_t e = check_range("cudaMemcpy destination", dst, bytes)) return e;
  if (src_dev) if (cudaError_t e = check_range("cudaMemcpy source", src, bytes)) return e;
  std::lock_guard<std::mutex> exec(g_exec_mu);
  if (bytes) memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t) {
  if (cudaError_t e = sticky()) return e;
  if (cudaError_t e = check_range("cudaMemset", p, bytes)) return e;
  std::lock_guard<std::mutex> exec(g_exec_mu);
  memset(p, value, bytes);
  return cudaSuccess;
}

struct bkemu_stream {
  int device;
};
struct bkemu_event {
  std::chrono::steady_clock::time_point at;
};

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) {
  *s = new bkemu_stream{g_device};
  return cudaSuccess;
}
// Work runs when it is issued: waiting only reports a fault.
cudaError_t cudaStreamSynchronize(cudaStream_t) { return sticky(); }
cudaError_t cudaDeviceSynchronize() { return sticky(); }
cudaError_t cudaEventCreate(cudaEvent_t *e) {
  *e = new bkemu_event{};
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  if (!e) return set_error(cudaErrorInvalidResourceHandle);
  e->at = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) { return e ? sticky() : set_error(cudaErrorInvalidResourceHandle); }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  if (!start || !end) return set_error(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
