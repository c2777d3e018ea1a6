// The device error flags: kernels that detect bad input record it in a mapped
// host slot of the launching thread (common.cuh's DeviceError), and the next
// check on that thread turns it into a bk_last_error() message.
#include <mutex>
#include <vector>
#include <string.h>

#include "common.cuh"

namespace bk {

// One flag per host thread: a kernel's error is reported to the thread that launched
// it, not to another worker thread of the process that happens to read results next.
// A thread's flag goes back to a pool when the thread exits.
namespace {
std::mutex g_dev_error_mu;
std::vector<DeviceError *> &free_error_slots() {
  static auto *v = new std::vector<DeviceError *>();  // never destroyed: threads may exit late
  return *v;
}
struct ErrorSlot {
  DeviceError *slot = nullptr;
  ~ErrorSlot() {
    if (!slot) return;
    std::lock_guard<std::mutex> g(g_dev_error_mu);
    free_error_slots().push_back(slot);
  }
};
thread_local ErrorSlot t_error_slot;

DeviceError *new_error_slot() {
  {
    std::lock_guard<std::mutex> g(g_dev_error_mu);
    auto &pool = free_error_slots();
    if (!pool.empty()) {
      DeviceError *p = pool.back();
      pool.pop_back();
      memset(p, 0, sizeof(DeviceError));
      return p;
    }
  }
  void *p = nullptr;
  // Mapped + portable: visible to kernels on every device, read by the host
  // without a copy once the stream that wrote it has been waited for.
  if (cudaHostAlloc(&p, sizeof(DeviceError), cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  memset(p, 0, sizeof(DeviceError));
  void *d = nullptr;
  // Under unified addressing the host and device addresses are the same.
  if (cudaHostGetDevicePointer(&d, p, 0) != cudaSuccess || d != p) {
    cudaGetLastError();
    cudaFreeHost(p);
    return nullptr;
  }
  return static_cast<DeviceError *>(p);
}
}  // namespace

DeviceError *device_error_slot() {
  if (!t_error_slot.slot) t_error_slot.slot = new_error_slot();
  return t_error_slot.slot;
}

int error_flag_launch(const char *fn, DeviceError **err, int *dev) {
  *err = device_error_slot();
  if (!*err) return fail("%s: could not allocate the mapped error flag", fn);
  return current_device(dev);
}

int take_device_error() {
  DeviceError *e = t_error_slot.slot;
  if (!e) return 0;
  volatile DeviceError *v = e;
  int code = v->code;
  if (code <= 0) return 0;
  DeviceError copy = {code, v->value, v->row, v->bound};
  v->code = 0;
  switch (copy.code) {
    case DEVERR_NLL_TARGET:
    case DEVERR_NLL_BACKWARD_TARGET:
      return fail("%s: target %d at row %lld is outside [0, %lld)",
                  copy.code == DEVERR_NLL_TARGET ? "nll_loss" : "nll_loss_backward", copy.value,
                  copy.row, copy.bound);
    case DEVERR_POOL_INDEX:
      return fail("max_pool2d_backward: index %d at output %lld is outside the plane of %lld elements",
                  copy.value, copy.row, copy.bound);
    case DEVERR_BN_COUNT:
      return fail("bn_merge_stats: rank %lld has a negative or NaN count", copy.row);
    default:
      return fail("a kernel reported error code %d", copy.code);
  }
}

}  // namespace bk
