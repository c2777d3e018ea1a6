// The C ABI of libbagua_gloo.so (see bagua_gloo.h): gloo contexts over the
// TCP transport, rendezvous through the bagua store, and the collectives
// @bagua/comm needs. No exception crosses the extern "C" boundary.
#include "bagua_gloo.h"

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/common/logging.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/address.h>
#include <gloo/transport/tcp/device.h>

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "store_client.h"

using std::chrono::milliseconds;

namespace {

thread_local std::string tlsLastError;

int fail(int code, const std::string& msg) {
  tlsLastError = msg;
  return code;
}

std::string ranksMarker(const std::vector<int>& ranks) {
  if (ranks.empty()) return "";
  std::ostringstream s;
  s << " {ranks:";
  for (size_t i = 0; i < ranks.size(); i++) s << (i ? "," : "") << ranks[i];
  s << "}";
  return s.str();
}

// Raised by the store adapter when rendezvous keys do not appear in time.
struct RendezvousTimeout : std::runtime_error {
  RendezvousTimeout(const std::string& msg, std::vector<int> missing)
      : std::runtime_error(msg), missing(std::move(missing)) {}
  std::vector<int> missing;
};

// gloo's rendezvous Store, backed by the bagua store with a key prefix.
class PrefixedStore : public gloo::rendezvous::Store {
 public:
  PrefixedStore(bagua::StoreClient& client, std::string prefix, int size,
                milliseconds timeout)
      : client_(client), prefix_(std::move(prefix)), size_(size), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    client_.set(full(key), data, timeout_);
  }

  std::vector<char> get(const std::string& key) override {
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    wait({key}, timeout_);
    std::vector<char> value;
    if (!client_.get(full(key), &value, timeout_)) {
      throw bagua::StoreError("store key '" + full(key) + "' vanished", false);
    }
    cache_[key] = value;
    return value;
  }

  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }

  void wait(const std::vector<std::string>& keys, const milliseconds& timeout) override {
    std::vector<std::string> fullKeys;
    for (const auto& k : keys) fullKeys.push_back(full(k));
    milliseconds t = timeout.count() > 0 ? timeout : timeout_;
    if (client_.wait(fullKeys, t)) return;
    // Which ranks never published their address? (gloo's keys are the
    // decimal ranks.)
    std::vector<int> missing;
    for (int r = 0; r < size_; r++) {
      std::vector<char> v;
      if (!client_.get(full(std::to_string(r)), &v, timeout_)) missing.push_back(r);
    }
    std::ostringstream s;
    s << "rendezvous timed out after " << t.count() << " ms waiting for store key(s)";
    for (const auto& k : fullKeys) s << " '" << k << "'";
    s << " at " << client_.endpoint();
    throw RendezvousTimeout(s.str(), missing);
  }

  bool cached(const std::string& key, std::vector<char>* out) const {
    auto it = cache_.find(key);
    if (it == cache_.end()) return false;
    *out = it->second;
    return true;
  }

 private:
  std::string full(const std::string& key) const { return prefix_ + "/" + key; }

  bagua::StoreClient& client_;
  std::string prefix_;
  int size_;
  milliseconds timeout_;
  std::map<std::string, std::vector<char>> cache_;
};

// Reductions, written for gloo's type-erased Func signature.
template <typename T>
void reduceSum(void* c, const void* a, const void* b, size_t n) {
  T* o = static_cast<T*>(c);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  for (size_t i = 0; i < n; i++) o[i] = x[i] + y[i];
}
template <typename T>
void reduceProduct(void* c, const void* a, const void* b, size_t n) {
  T* o = static_cast<T*>(c);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  for (size_t i = 0; i < n; i++) o[i] = x[i] * y[i];
}
// max/min propagate NaN (as torch does), whichever side it is on.
template <typename T>
void reduceMax(void* c, const void* a, const void* b, size_t n) {
  T* o = static_cast<T*>(c);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  for (size_t i = 0; i < n; i++) o[i] = (x[i] != x[i] || x[i] > y[i]) ? x[i] : y[i];
}
template <typename T>
void reduceMin(void* c, const void* a, const void* b, size_t n) {
  T* o = static_cast<T*>(c);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  for (size_t i = 0; i < n; i++) o[i] = (x[i] != x[i] || x[i] < y[i]) ? x[i] : y[i];
}

size_t dtypeSize(int dtype) {
  switch (dtype) {
    case BAGUA_GLOO_FLOAT32: return 4;
    case BAGUA_GLOO_FLOAT64: return 8;
    case BAGUA_GLOO_INT32: return 4;
    case BAGUA_GLOO_INT64: return 8;
    case BAGUA_GLOO_UINT8: return 1;
    default: return 0;
  }
}


}  // namespace

struct bagua_gloo_context {
  std::shared_ptr<gloo::rendezvous::Context> ctx;
  std::shared_ptr<gloo::transport::Device> device;
  int rank = 0;
  int size = 1;
  milliseconds timeout{30000};
  std::string name;                 // the store prefix, for messages
  std::vector<std::string> peerTags;  // ":<port>" of each rank's listening socket
  std::string broken;               // non-empty once a collective has failed
};

namespace {

// The peer ranks whose listening address appears in a gloo message.
std::vector<int> peersIn(const bagua_gloo_context* c, const std::string& msg) {
  std::vector<int> out;
  for (int r = 0; r < static_cast<int>(c->peerTags.size()); r++) {
    const std::string& tag = c->peerTags[r];
    if (r == c->rank || tag.empty()) continue;
    for (size_t pos = msg.find(tag); pos != std::string::npos; pos = msg.find(tag, pos + 1)) {
      size_t end = pos + tag.size();
      if (end >= msg.size() || !isdigit(static_cast<unsigned char>(msg[end]))) {
        out.push_back(r);
        break;
      }
    }
  }
  return out;
}

// Runs fn, translating every exception into a status code and message, and
// marks the context unusable after a failure (gloo leaves the transport in
// an unknown state after an error).
template <typename Fn>
int guarded(bagua_gloo_context* c, const char* what, Fn&& fn) {
  if (c == nullptr) return fail(BAGUA_GLOO_ERR_INVALID, std::string(what) + ": null context");
  if (!c->ctx) return fail(BAGUA_GLOO_ERR_INVALID, std::string(what) + ": context is destroyed");
  if (!c->broken.empty()) {
    return fail(BAGUA_GLOO_ERR_INVALID,
                std::string(what) + ": the group is unusable after an earlier failure (" +
                    c->broken + ")");
  }
  int code = BAGUA_GLOO_ERR_INTERNAL;
  std::string msg;
  try {
    fn();
    return BAGUA_GLOO_OK;
  } catch (const gloo::IoException& e) {
    msg = e.what();
    code = (msg.find("Timed out") != std::string::npos || msg.find("timed out") != std::string::npos)
               ? BAGUA_GLOO_ERR_TIMEOUT
               : BAGUA_GLOO_ERR_IO;
  } catch (const gloo::EnforceNotMet& e) {
    msg = std::string("gloo assertion: ") + e.what();
  } catch (const std::exception& e) {
    msg = e.what();
  } catch (...) {
    msg = "unknown exception";
  }
  c->broken = msg;
  return fail(code, std::string(what) + ": " + msg + ranksMarker(peersIn(c, msg)));
}

milliseconds opTimeout(const bagua_gloo_context* c, int timeout_ms) {
  return timeout_ms > 0 ? milliseconds(timeout_ms) : c->timeout;
}

template <typename T>
void runAllreduce(bagua_gloo_context* c, void* buf, size_t n, int op, milliseconds timeout) {
  gloo::AllreduceOptions opts(c->ctx);
  opts.setOutput(static_cast<T*>(buf), n);
  switch (op) {
    case BAGUA_GLOO_SUM:
    case BAGUA_GLOO_AVG: opts.setReduceFunction(&reduceSum<T>); break;
    case BAGUA_GLOO_MAX: opts.setReduceFunction(&reduceMax<T>); break;
    case BAGUA_GLOO_MIN: opts.setReduceFunction(&reduceMin<T>); break;
    case BAGUA_GLOO_PRODUCT: opts.setReduceFunction(&reduceProduct<T>); break;
  }
  opts.setTimeout(timeout);
  gloo::allreduce(opts);
  if (op == BAGUA_GLOO_AVG && c->size > 1) {
    T* p = static_cast<T*>(buf);
    const T d = static_cast<T>(c->size);
    for (size_t i = 0; i < n; i++) p[i] = p[i] / d;
  }
}

template <typename T>
void runAllgather(bagua_gloo_context* c, void* out, const void* in, size_t n,
                  milliseconds timeout) {
  gloo::AllgatherOptions opts(c->ctx);
  T* o = static_cast<T*>(out);
  // In place when the input already is this rank's slot of the output.
  if (static_cast<const T*>(in) != o + static_cast<size_t>(c->rank) * n) {
    opts.setInput(const_cast<T*>(static_cast<const T*>(in)), n);
  }
  opts.setOutput(o, n * static_cast<size_t>(c->size));
  opts.setTimeout(timeout);
  gloo::allgather(opts);
}

template <typename T>
void runBroadcast(bagua_gloo_context* c, void* buf, size_t n, int root, milliseconds timeout) {
  gloo::BroadcastOptions opts(c->ctx);
  opts.setOutput(static_cast<T*>(buf), n);
  opts.setRoot(root);
  opts.setTimeout(timeout);
  gloo::broadcast(opts);
}

#define BAGUA_DISPATCH(dtype, FN, ...)                                    \
  switch (dtype) {                                                        \
    case BAGUA_GLOO_FLOAT32: FN<float>(__VA_ARGS__); break;               \
    case BAGUA_GLOO_FLOAT64: FN<double>(__VA_ARGS__); break;              \
    case BAGUA_GLOO_INT32: FN<int32_t>(__VA_ARGS__); break;               \
    case BAGUA_GLOO_INT64: FN<int64_t>(__VA_ARGS__); break;               \
    case BAGUA_GLOO_UINT8: FN<uint8_t>(__VA_ARGS__); break;               \
  }

void copyError(char* err, int cap, const std::string& msg) {
  if (err == nullptr || cap <= 0) return;
  size_t n = std::min(msg.size(), static_cast<size_t>(cap - 1));
  memcpy(err, msg.data(), n);
  err[n] = '\0';
}

}  // namespace

extern "C" {

int bagua_gloo_abi_version(void) { return BAGUA_GLOO_ABI_VERSION; }

const char* bagua_gloo_last_error(void) { return tlsLastError.c_str(); }

bagua_gloo_context* bagua_gloo_context_create(int rank, int size, const char* store_host,
                                              int store_port, const char* token,
                                              const char* prefix, int timeout_ms,
                                              const char* iface, const char* hostname,
                                              char* err, int err_cap) {
  std::string where = std::string("gloo rendezvous (rank ") + std::to_string(rank) + " of " +
                      std::to_string(size) + ", prefix '" + (prefix ? prefix : "") + "')";
  if (size < 1 || rank < 0 || rank >= size || store_host == nullptr || store_port <= 0 ||
      store_port > 65535 || prefix == nullptr || timeout_ms <= 0) {
    copyError(err, err_cap, where + ": invalid arguments");
    return nullptr;
  }
  const milliseconds timeout(timeout_ms);
  std::unique_ptr<bagua_gloo_context> c(new bagua_gloo_context);
  c->rank = rank;
  c->size = size;
  c->timeout = timeout;
  c->name = prefix;
  try {
    bagua::StoreClient client(store_host, store_port, token ? token : "", timeout);
    gloo::transport::tcp::attr attr;
    if (iface != nullptr && iface[0] != '\0') {
      attr.iface = iface;
    } else if (hostname != nullptr && hostname[0] != '\0') {
      attr.hostname = hostname;
    } else {
      attr.hostname = client.localAddress().empty() ? "127.0.0.1" : client.localAddress();
    }
    c->device = gloo::transport::tcp::CreateDevice(attr);
    PrefixedStore store(client, prefix, size, timeout);
    c->ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
    c->ctx->setTimeout(timeout);
    c->ctx->connectFullMesh(store, c->device);
    // Remember each peer's listening port, to name peers in IO errors.
    c->peerTags.assign(size, "");
    for (int r = 0; r < size && size > 1; r++) {
      if (r == rank) continue;
      std::vector<char> blob;
      if (!store.cached(std::to_string(r), &blob)) continue;
      size_t one = blob.size() / static_cast<size_t>(size - 1);
      if (one == 0) continue;
      gloo::transport::tcp::Address addr(std::vector<char>(blob.begin(), blob.begin() + one));
      const sockaddr_storage& ss = addr.getSockaddr();
      int port = 0;
      if (ss.ss_family == AF_INET) port = ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port);
      if (ss.ss_family == AF_INET6) port = ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
      if (port > 0) c->peerTags[r] = ":" + std::to_string(port);
    }
    return c.release();
  } catch (const RendezvousTimeout& e) {
    copyError(err, err_cap, where + ": " + e.what() + ranksMarker(e.missing));
  } catch (const bagua::StoreError& e) {
    copyError(err, err_cap, where + ": " + e.what());
  } catch (const gloo::EnforceNotMet& e) {
    copyError(err, err_cap, where + ": gloo assertion: " + e.what());
  } catch (const std::exception& e) {
    copyError(err, err_cap, where + ": " + e.what());
  } catch (...) {
    copyError(err, err_cap, where + ": unknown exception");
  }
  return nullptr;
}

void bagua_gloo_context_destroy(bagua_gloo_context* ctx) {
  if (ctx == nullptr) return;
  try {
    ctx->ctx.reset();
    ctx->device.reset();
  } catch (...) {
  }
  delete ctx;
}

int bagua_gloo_rank(const bagua_gloo_context* ctx) { return ctx ? ctx->rank : -1; }
int bagua_gloo_size(const bagua_gloo_context* ctx) { return ctx ? ctx->size : -1; }

int bagua_gloo_allreduce(bagua_gloo_context* ctx, void* buf, int64_t count, int dtype, int op,
                         int timeout_ms) {
  if (dtypeSize(dtype) == 0) return fail(BAGUA_GLOO_ERR_INVALID, "allreduce: unknown dtype");
  if (op < BAGUA_GLOO_SUM || op > BAGUA_GLOO_PRODUCT) {
    return fail(BAGUA_GLOO_ERR_INVALID, "allreduce: unknown reduce op");
  }
  if (count < 0 || (count > 0 && buf == nullptr)) {
    return fail(BAGUA_GLOO_ERR_INVALID, "allreduce: bad buffer");
  }
  return guarded(ctx, "allreduce", [&] {
    if (count == 0) return;
    if (ctx->size == 1) return;  // nothing to exchange; avg over 1 rank is identity
    BAGUA_DISPATCH(dtype, runAllreduce, ctx, buf, static_cast<size_t>(count), op,
                   opTimeout(ctx, timeout_ms));
  });
}

int bagua_gloo_allgather(bagua_gloo_context* ctx, void* out, const void* in, int64_t count,
                         int dtype, int timeout_ms) {
  size_t es = dtypeSize(dtype);
  if (es == 0) return fail(BAGUA_GLOO_ERR_INVALID, "allgather: unknown dtype");
  if (count < 0 || (count > 0 && (out == nullptr || in == nullptr))) {
    return fail(BAGUA_GLOO_ERR_INVALID, "allgather: bad buffer");
  }
  return guarded(ctx, "allgather", [&] {
    if (count == 0) return;
    if (ctx->size == 1) {
      if (out != in) memmove(out, in, static_cast<size_t>(count) * es);
      return;
    }
    BAGUA_DISPATCH(dtype, runAllgather, ctx, out, in, static_cast<size_t>(count),
                   opTimeout(ctx, timeout_ms));
  });
}

int bagua_gloo_broadcast(bagua_gloo_context* ctx, void* buf, int64_t count, int dtype, int root,
                         int timeout_ms) {
  if (dtypeSize(dtype) == 0) return fail(BAGUA_GLOO_ERR_INVALID, "broadcast: unknown dtype");
  if (count < 0 || (count > 0 && buf == nullptr)) {
    return fail(BAGUA_GLOO_ERR_INVALID, "broadcast: bad buffer");
  }
  if (ctx != nullptr && (root < 0 || root >= ctx->size)) {
    return fail(BAGUA_GLOO_ERR_INVALID, "broadcast: root " + std::to_string(root) +
                                            " is not a rank of a group of size " +
                                            std::to_string(ctx->size));
  }
  return guarded(ctx, "broadcast", [&] {
    if (count == 0 || ctx->size == 1) return;
    BAGUA_DISPATCH(dtype, runBroadcast, ctx, buf, static_cast<size_t>(count), root,
                   opTimeout(ctx, timeout_ms));
  });
}

int bagua_gloo_barrier(bagua_gloo_context* ctx, int timeout_ms) {
  return guarded(ctx, "barrier", [&] {
    if (ctx->size == 1) return;
    gloo::BarrierOptions opts(ctx->ctx);
    opts.setTimeout(opTimeout(ctx, timeout_ms));
    gloo::barrier(opts);
  });
}

}  // extern "C"
