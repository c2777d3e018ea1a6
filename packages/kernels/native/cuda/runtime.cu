// Runtime services of the CUDA library: errors, devices, the caching allocator,
// streams, copies, scratch and workspaces (the device error flags: device_error.cu).
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>
#include <stdio.h>
#include <string.h>

#include "common.cuh"
#include "bagua_errors.h"

namespace bk {

namespace {
thread_local char g_error[2048] = "";
constexpr int kMaxDevices = 64;
}  // namespace

BK_DEFINE_FAIL(g_error)

int fail_cuda(const char *what, cudaError_t e) {
  return fail_status(e == cudaErrorMemoryAllocation ? BK_ERR_OUT_OF_MEMORY : BK_ERR_DEVICE, "%s: %s (%s)",
                     what, cudaGetErrorString(e), cudaGetErrorName(e));
}

int current_device(int *dev) {
  BK_CUDA_TRY("cudaGetDevice", cudaGetDevice(dev));
  return 0;
}

int sm_count(int dev) {
  static int cache[kMaxDevices] = {0};
  if (dev < 0 || dev >= kMaxDevices) return 80;
  int v = __atomic_load_n(&cache[dev], __ATOMIC_RELAXED);
  if (v == 0) {
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || v <= 0)
      v = 80;
    __atomic_store_n(&cache[dev], v, __ATOMIC_RELAXED);
  }
  return v;
}

int resident_blocks(const void *kernel, int threads, int dev) {
  static std::mutex mu;
  static std::map<std::pair<const void *, int>, int> cache;
  std::lock_guard<std::mutex> g(mu);
  auto key = std::make_pair(kernel, dev * 4096 + threads);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0) != cudaSuccess || per_sm < 1) {
    cudaGetLastError();
    per_sm = 2;
  }
  int n = per_sm * sm_count(dev);
  cache[key] = n;
  return n;
}

// Runs `fn` with `dev` as the current device, restoring the caller's afterwards.
template <class F>
static int on_device(int dev, F fn) {
  int prev = -1;
  BK_CUDA_TRY("cudaGetDevice", cudaGetDevice(&prev));
  if (prev != dev) BK_CUDA_TRY("cudaSetDevice", cudaSetDevice(dev));
  int rc = fn();
  // an error of the restore must not be reported later as some kernel's
  if (prev != dev && cudaSetDevice(prev) != cudaSuccess) cudaGetLastError();
  return rc;
}

// ---- caching allocator ------------------------------------------------------------
namespace {

struct Live {
  int64_t size;  // bucket size
  int dev;
};

struct Allocator {
  std::mutex mu;
  std::unordered_map<void *, Live> live;
  std::map<int64_t, std::vector<void *>> free_lists[kMaxDevices];
  int64_t allocated[kMaxDevices] = {0};
  int64_t reserved[kMaxDevices] = {0};
  int64_t system_allocs[kMaxDevices] = {0};  // cudaMalloc calls: none in a steady state
};

Allocator &allocator() {
  static Allocator *a = new Allocator();  // never destroyed: frees may run at exit
  return *a;
}

// Buckets: 512-byte steps up to 1 MiB, then four steps per power of two
// (at most 25% slack), so recurring shapes hit the same bucket.
int64_t bucket(int64_t n) {
  if (n <= (1 << 20)) return (n + 511) & ~int64_t(511);
  int64_t p = int64_t(1) << (63 - __builtin_clzll((unsigned long long)n));
  int64_t step = p / 4;
  return (n + step - 1) / step * step;
}

int release_cached(int dev) {
  Allocator &a = allocator();
  std::vector<void *> ptrs;
  {
    std::lock_guard<std::mutex> g(a.mu);
    for (auto &kv : a.free_lists[dev]) {
      for (void *p : kv.second) {
        ptrs.push_back(p);
        a.reserved[dev] -= kv.first;
      }
    }
    a.free_lists[dev].clear();
  }
  if (ptrs.empty()) return 0;
  return on_device(dev, [&]() {
    for (void *p : ptrs) BK_CUDA_TRY("cudaFree", cudaFree(p));
    return 0;
  });
}

}  // namespace

// Under AddressSanitizer (the emulator's sanitizer build), the slack of a bucket and
// every cached block are poisoned: a kernel reading past its tensor or into a freed
// block is reported, though the allocator keeps the memory.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
static void mark_live(void *p, int64_t nbytes, int64_t size) {
  ASAN_UNPOISON_MEMORY_REGION(p, (size_t)nbytes);
  ASAN_POISON_MEMORY_REGION((char *)p + nbytes, (size_t)(size - nbytes));
}
static void mark_cached(void *p, int64_t size) { ASAN_POISON_MEMORY_REGION(p, (size_t)size); }
#else
static void mark_live(void *, int64_t, int64_t) {}
static void mark_cached(void *, int64_t) {}
#endif

static int alloc_block(void **out, int64_t nbytes, int dev) {
  *out = nullptr;
  if (nbytes == 0) return 0;
  if (nbytes < 0) return fail("bk_cuda_malloc: negative size %lld", (long long)nbytes);
  if (dev < 0 || dev >= kMaxDevices) return fail("bk_cuda_malloc: bad device %d", dev);
  Allocator &a = allocator();
  int64_t size = bucket(nbytes);
  {
    std::lock_guard<std::mutex> g(a.mu);
    auto it = a.free_lists[dev].find(size);
    if (it != a.free_lists[dev].end() && !it->second.empty()) {
      *out = it->second.back();
      it->second.pop_back();
      mark_live(*out, nbytes, size);
      a.live[*out] = Live{size, dev};
      a.allocated[dev] += size;
      return 0;
    }
  }
  void *p = nullptr;
  cudaError_t e = cudaSuccess;
  int rc = on_device(dev, [&]() {
    e = cudaMalloc(&p, (size_t)size);
    if (e == cudaErrorMemoryAllocation) {  // give the cache back and try once more
      cudaGetLastError();
      int r = release_cached(dev);
      if (r) return r;
      e = cudaMalloc(&p, (size_t)size);
    }
    return 0;
  });
  if (rc) return rc;
  if (e != cudaSuccess) {
    cudaGetLastError();
    int64_t used, held;
    {
      std::lock_guard<std::mutex> g(a.mu);
      used = a.allocated[dev];
      held = a.reserved[dev];
    }
    return fail_status(BK_ERR_OUT_OF_MEMORY, "cuda:%d out of memory allocating %lld bytes (%lld in use, %lld held): %s", dev,
                (long long)nbytes, (long long)used, (long long)held, cudaGetErrorString(e));
  }
  mark_live(p, nbytes, size);
  std::lock_guard<std::mutex> g(a.mu);
  a.live[p] = Live{size, dev};
  a.allocated[dev] += size;
  a.reserved[dev] += size;
  a.system_allocs[dev]++;
  *out = p;
  return 0;
}

static int free_block(void *p) {
  if (!p) return 0;
  Allocator &a = allocator();
  std::lock_guard<std::mutex> g(a.mu);
  auto it = a.live.find(p);
  if (it == a.live.end())
    return fail("bk_cuda_free: %p was not allocated by bk_cuda_malloc (or was freed twice)", p);
  mark_cached(p, it->second.size);
  a.free_lists[it->second.dev][it->second.size].push_back(p);
  a.allocated[it->second.dev] -= it->second.size;
  a.live.erase(it);
  return 0;
}

// ---- streams ---------------------------------------------------------------------
static cudaStream_t g_streams[kMaxDevices];
static std::mutex g_stream_mu;

static int device_stream(int dev, cudaStream_t *out) {
  if (dev < 0 || dev >= kMaxDevices) return fail("bk_cuda_stream: bad device %d", dev);
  std::lock_guard<std::mutex> g(g_stream_mu);
  if (!g_streams[dev]) {
    int rc = on_device(dev, [&]() {
      // Non-blocking: never serialised behind other libraries' default-stream work.
      BK_CUDA_TRY("cudaStreamCreateWithFlags",
                  cudaStreamCreateWithFlags(&g_streams[dev], cudaStreamNonBlocking));
      return 0;
    });
    if (rc) return rc;
  }
  *out = g_streams[dev];
  return 0;
}

static bool is_library_stream(cudaStream_t s) {
  if (!s) return false;
  std::lock_guard<std::mutex> g(g_stream_mu);
  for (int i = 0; i < kMaxDevices; i++)
    if (g_streams[i] == s) return true;
  return false;
}

// ---- scratch -----------------------------------------------------------------------
int Scratch::acquire(int64_t nbytes, cudaStream_t s) {
  int dev;
  BK_TRY(current_device(&dev));
  stream = s;
  bytes = nbytes;
  return alloc_block(&ptr, nbytes, dev);
}

Scratch::~Scratch() {
  if (!ptr) return;
  // The block returns to the cache while kernels may still use it; that is safe
  // only for work ordered on the library's stream, so other streams are drained.
  if (!is_library_stream(stream) && cudaStreamSynchronize(stream) != cudaSuccess) cudaGetLastError();
  free_block(ptr);
}

// ---- workspaces -----------------------------------------------------------------
namespace {
struct WorkspaceEntry {
  unsigned *counters = nullptr;
  int64_t n_counters = 0;
  float *partials = nullptr;
  int64_t n_partials = 0;
};
std::mutex g_ws_mu;
std::map<std::pair<int, cudaStream_t>, WorkspaceEntry> g_ws;
std::vector<std::pair<int, void *>> g_retired;  // outgrown buffers, freed by empty_cache
}  // namespace

int workspace(cudaStream_t s, int64_t n_counters, int64_t partial_floats, Workspace *out) {
  int dev;
  BK_TRY(current_device(&dev));
  std::lock_guard<std::mutex> g(g_ws_mu);
  WorkspaceEntry &w = g_ws[{dev, s}];
  if (n_counters > w.n_counters) {
    int64_t n = n_counters < 4096 ? 4096 : n_counters * 2;
    void *p = nullptr;
    BK_CUDA_TRY("workspace cudaMalloc", cudaMalloc(&p, n * sizeof(unsigned)));
    // Zeroed once; every user leaves its counters at zero again.
    BK_CUDA_TRY("workspace cudaMemsetAsync", cudaMemsetAsync(p, 0, n * sizeof(unsigned), s));
    if (w.counters) g_retired.push_back({dev, w.counters});
    w.counters = static_cast<unsigned *>(p);
    w.n_counters = n;
  }
  if (partial_floats > w.n_partials) {
    int64_t n = partial_floats < (1 << 18) ? (1 << 18) : partial_floats * 2;
    void *p = nullptr;
    BK_CUDA_TRY("workspace cudaMalloc", cudaMalloc(&p, n * sizeof(float)));
    if (w.partials) g_retired.push_back({dev, w.partials});
    w.partials = static_cast<float *>(p);
    w.n_partials = n;
  }
  out->counters = w.counters;
  out->partials = w.partials;
  return 0;
}

static int free_retired(int dev) {
  std::vector<std::pair<int, void *>> mine;
  {
    std::lock_guard<std::mutex> g(g_ws_mu);
    for (size_t i = 0; i < g_retired.size();) {
      if (dev < 0 || g_retired[i].first == dev) {
        mine.push_back(g_retired[i]);
        g_retired[i] = g_retired.back();
        g_retired.pop_back();
      } else {
        i++;
      }
    }
  }
  // cudaFree waits for the kernels that may use it; each on its own device
  for (auto &dp : mine) BK_TRY(on_device(dp.first, [&]() {
    if (cudaFree(dp.second) != cudaSuccess) cudaGetLastError();
    return 0;
  }));
  return 0;
}

}  // namespace bk

using namespace bk;

// ---- exported ----------------------------------------------------------------------
extern "C" {

BK_API const char *bk_last_error(void) { return g_error; }
BK_API const char *bk_backend_name(void) { return "cuda"; }
BK_API int32_t bk_abi_version(void) { return BK_ABI_VERSION; }

BK_API int bk_cuda_device_count(int32_t *count) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  *count = 0;
  if (e != cudaSuccess) {
    cudaGetLastError();
    int driver = 0;
    cudaDriverGetVersion(&driver);
    if (driver == 0)
      return fail_status(BK_ERR_DEVICE, "CUDA is unavailable: no NVIDIA driver was found (libcuda.so.1 could not be "
                  "loaded); cudaGetDeviceCount: %s (%s)",
                  cudaGetErrorString(e), cudaGetErrorName(e));
    return fail_status(BK_ERR_DEVICE, "CUDA is unavailable: cudaGetDeviceCount failed: %s (%s); the driver supports CUDA "
                "%d.%d, this library was built with CUDA runtime %d.%d and needs a driver for that "
                "version or newer",
                cudaGetErrorString(e), cudaGetErrorName(e), driver / 1000, (driver % 1000) / 10,
                CUDART_VERSION / 1000, (CUDART_VERSION % 1000) / 10);
  }
  if (n == 0) return fail_status(BK_ERR_DEVICE, "CUDA is unavailable: the driver reports no CUDA device");
  *count = n;
  return 0;
}

BK_API int bk_cuda_versions(int32_t *driver, int32_t *runtime) {
  int d = 0, r = 0;
  cudaDriverGetVersion(&d);
  cudaRuntimeGetVersion(&r);
  *driver = d;
  *runtime = r;
  return 0;
}

BK_API int bk_cuda_device_info(int32_t device, char *name, int32_t name_len, int32_t *cc_major,
                               int32_t *cc_minor, int64_t *total_bytes, int32_t *sms) {
  cudaDeviceProp p;
  BK_CUDA_TRY("cudaGetDeviceProperties", cudaGetDeviceProperties(&p, device));
  if (name && name_len > 0) {
    strncpy(name, p.name, (size_t)name_len - 1);
    name[name_len - 1] = 0;
  }
  *cc_major = p.major;
  *cc_minor = p.minor;
  *total_bytes = (int64_t)p.totalGlobalMem;
  *sms = p.multiProcessorCount;
  return 0;
}

BK_API int bk_cuda_set_device(int32_t device) {
  BK_CUDA_TRY("cudaSetDevice", cudaSetDevice(device));
  return 0;
}

BK_API int bk_cuda_get_device(int32_t *device) {
  int d = 0;
  BK_CUDA_TRY("cudaGetDevice", cudaGetDevice(&d));
  *device = d;
  return 0;
}

BK_API int bk_cuda_malloc(void **ptr, int64_t nbytes, int32_t device) {
  return alloc_block(ptr, nbytes, device);
}

BK_API int bk_cuda_free(void *ptr) { return free_block(ptr); }

BK_API int bk_cuda_empty_cache(int32_t device) {
  if (device >= kMaxDevices) return fail("bk_cuda_empty_cache: bad device %d", device);
  for (int d = 0; d < kMaxDevices; d++) {
    if (device >= 0 && d != device) continue;
    BK_TRY(release_cached(d));
  }
  return free_retired(device);
}

BK_API int bk_cuda_memory_stats(int32_t device, int64_t *allocated, int64_t *reserved, int64_t *system_allocs) {
  if (device < 0 || device >= kMaxDevices) return fail("bk_cuda_memory_stats: bad device %d", device);
  Allocator &a = allocator();
  std::lock_guard<std::mutex> g(a.mu);
  *allocated = a.allocated[device];
  *reserved = a.reserved[device];
  *system_allocs = a.system_allocs[device];
  return 0;
}

BK_API int bk_cuda_stream(int32_t device, void **stream) {
  cudaStream_t s = nullptr;
  BK_TRY(device_stream(device, &s));
  *stream = s;
  return 0;
}

BK_API int bk_cuda_memcpy_h2d(void *dst, const void *src, int64_t nbytes, void *stream) {
  if (nbytes <= 0) return nbytes < 0 ? fail("bk_cuda_memcpy_h2d: negative size") : 0;
  BK_CUDA_TRY("bk_cuda_memcpy_h2d",
              cudaMemcpyAsync(dst, src, (size_t)nbytes, cudaMemcpyHostToDevice, as_stream(stream)));
  return 0;
}

BK_API int bk_cuda_memcpy_d2h(void *dst, const void *src, int64_t nbytes, void *stream) {
  if (nbytes < 0) return fail("bk_cuda_memcpy_d2h: negative size");
  if (nbytes > 0)
    BK_CUDA_TRY("bk_cuda_memcpy_d2h",
                cudaMemcpyAsync(dst, src, (size_t)nbytes, cudaMemcpyDeviceToHost, as_stream(stream)));
  BK_CUDA_TRY("bk_cuda_memcpy_d2h: waiting for the stream", cudaStreamSynchronize(as_stream(stream)));
  return take_device_error();
}

BK_API int bk_cuda_memcpy_d2d(void *dst, const void *src, int64_t nbytes, void *stream) {
  if (nbytes <= 0) return nbytes < 0 ? fail("bk_cuda_memcpy_d2d: negative size") : 0;
  BK_CUDA_TRY("bk_cuda_memcpy_d2d",
              cudaMemcpyAsync(dst, src, (size_t)nbytes, cudaMemcpyDeviceToDevice, as_stream(stream)));
  return 0;
}

BK_API int bk_cuda_synchronize(void *stream) {
  if (stream)
    BK_CUDA_TRY("cudaStreamSynchronize", cudaStreamSynchronize(as_stream(stream)));
  else
    BK_CUDA_TRY("cudaDeviceSynchronize", cudaDeviceSynchronize());
  return take_device_error();
}

BK_API int bk_cuda_event_create(void **event) {
  cudaEvent_t e;
  BK_CUDA_TRY("cudaEventCreate", cudaEventCreate(&e));
  *event = e;
  return 0;
}

BK_API int bk_cuda_event_record(void *event, void *stream) {
  BK_CUDA_TRY("cudaEventRecord", cudaEventRecord((cudaEvent_t)event, as_stream(stream)));
  return 0;
}

BK_API int bk_cuda_event_elapsed(float *ms, void *start, void *end) {
  BK_CUDA_TRY("cudaEventSynchronize", cudaEventSynchronize((cudaEvent_t)end));
  BK_CUDA_TRY("cudaEventElapsedTime", cudaEventElapsedTime(ms, (cudaEvent_t)start, (cudaEvent_t)end));
  return 0;
}

BK_API int bk_cuda_event_destroy(void *event) {
  BK_CUDA_TRY("cudaEventDestroy", cudaEventDestroy((cudaEvent_t)event));
  return 0;
}

}  // extern "C"
