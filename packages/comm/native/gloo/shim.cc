// The C ABI of libbagua_gloo.so (see bagua_gloo.h): gloo contexts over the
// TCP transport, rendezvous through the bagua store, and the collectives
// @bagua/comm needs. No exception crosses the extern "C" boundary.
#include "bagua_gloo.h"

#include <gloo/allgather.h>
#include <gloo/algorithm.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/broadcast_one_to_all.h>
#include <gloo/common/error.h>
#include <gloo/common/logging.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/address.h>
#include <gloo/transport/tcp/device.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <list>
#include <chrono>
#include <map>
#include <set>
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

// Reductions, written for gloo's type-erased Func signature: out = x (op) y.
// gloo mostly reduces in place (out == x); that case gets a restrict-qualified
// loop the compiler can vectorise.
template <typename T, typename Op>
void reduceInto(T* __restrict o, const T* __restrict y, size_t n, Op op) {
  for (size_t i = 0; i < n; i++) o[i] = op(o[i], y[i]);
}

template <typename T, typename Op>
void reduce(void* c, const void* a, const void* b, size_t n, Op op) {
  T* o = static_cast<T*>(c);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  if (o == x && o != y) {
    reduceInto<T>(o, y, n, op);
    return;
  }
  for (size_t i = 0; i < n; i++) o[i] = op(x[i], y[i]);
}

template <typename T>
void reduceSum(void* c, const void* a, const void* b, size_t n) {
  reduce<T>(c, a, b, n, [](T x, T y) { return static_cast<T>(x + y); });
}
template <typename T>
void reduceProduct(void* c, const void* a, const void* b, size_t n) {
  reduce<T>(c, a, b, n, [](T x, T y) { return static_cast<T>(x * y); });
}
// max/min propagate NaN (as torch does), whichever side it is on.
template <typename T>
void reduceMax(void* c, const void* a, const void* b, size_t n) {
  reduce<T>(c, a, b, n, [](T x, T y) { return (x != x || x > y) ? x : y; });
}
template <typename T>
void reduceMin(void* c, const void* a, const void* b, size_t n) {
  reduce<T>(c, a, b, n, [](T x, T y) { return (x != x || x < y) ? x : y; });
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

namespace {

// Identifies a collective call; exchanged with the payload on the small path
// so that ranks calling different collectives fail loudly instead of mixing
// data.
struct Signature {
  uint8_t kind;  // 1 allreduce, 2 allgather, 3 broadcast, 4 barrier
  uint8_t dtype;
  uint8_t op;
  uint8_t pad = 0;
  int32_t root;
  int64_t count;
};
static_assert(sizeof(Signature) == 16, "signature layout");

const char* kindName(uint8_t k) {
  switch (k) {
    case 1: return "allReduce";
    case 2: return "allGather";
    case 3: return "broadcast";
    case 4: return "barrier";
    default: return "?";
  }
}

const char* dtypeName(uint8_t d) {
  switch (d) {
    case BAGUA_GLOO_FLOAT32: return "float32";
    case BAGUA_GLOO_FLOAT64: return "float64";
    case BAGUA_GLOO_INT32: return "int32";
    case BAGUA_GLOO_INT64: return "int64";
    case BAGUA_GLOO_UINT8: return "uint8";
    default: return "?";
  }
}

const char* opName(uint8_t op) {
  switch (op) {
    case BAGUA_GLOO_SUM: return "sum";
    case BAGUA_GLOO_AVG: return "avg";
    case BAGUA_GLOO_MAX: return "max";
    case BAGUA_GLOO_MIN: return "min";
    case BAGUA_GLOO_PRODUCT: return "product";
    default: return "?";
  }
}

std::string describe(const Signature& s) {
  if (s.kind < 1 || s.kind > 4 || s.pad != 0) return "a collective of another size";
  std::ostringstream o;
  o << kindName(s.kind);
  if (s.kind != 4) o << "(" << dtypeName(s.dtype) << " x " << s.count;
  if (s.kind == 1) o << ", " << opName(s.op);
  if (s.kind == 3) o << ", root " << s.root;
  if (s.kind != 4) o << ")";
  return o.str();
}

// Raised when ranks called different collectives (the exchange itself
// worked, so the group stays usable).
struct MismatchError : std::runtime_error {
  explicit MismatchError(const std::string& m) : std::runtime_error(m) {}
};

// A cached gloo algorithm over staging memory. Old-style gloo algorithms
// bind their buffers (and slots) at construction, so they are built once per
// shape and reused; the cache is keyed by values every rank agrees on, so
// all ranks build, hit and evict in the same order.
struct SmallEntry {
  std::vector<char> out;  // allgather: size x (payload + signature); broadcast: payload + signature
  std::unique_ptr<gloo::Algorithm> algo;
};

// A ring all-gather for pairs in synchronous mode, deadlock-free whatever
// the message size: a send blocks until the peer has read it (once socket
// buffers are full), so even ranks send before they receive and odd ranks
// receive before they send, which breaks every cycle of blocked writers.
// Each round forwards one rank's block into its final place in `out`; in
// sync mode data lands only while its receiver reads, so no ready-to-receive
// notifications are needed (unlike gloo::AllgatherRing, which sends before
// it receives and stalls once a block outgrows the socket buffers).
// Small blocks go out eagerly on every rank (a rank runs at most size-1
// blocks ahead of its right neighbour, and that much fits in the kernel's
// default socket buffering), which halves the rounds' latency.
class SyncRingAllgather : public gloo::Algorithm {
 public:
  static constexpr size_t kEagerBytes = 32 << 10;

  SyncRingAllgather(const std::shared_ptr<gloo::Context>& context, char* out, size_t stride)
      : gloo::Algorithm(context),
        stride_(stride),
        eager_(stride * static_cast<size_t>(contextSize_ > 1 ? contextSize_ - 1 : 1) <= kEagerBytes) {
    if (contextSize_ == 1) return;
    const int slot = context_->nextSlot();
    const size_t total = stride * static_cast<size_t>(contextSize_);
    send_ = getRightPair()->createSendBuffer(slot, out, total);
    recv_ = getLeftPair()->createRecvBuffer(slot, out, total);
  }

  void run() override {
    const int p = contextSize_;
    const int r = contextRank_;
    for (int k = 0; k < p - 1; k++) {
      const size_t block = static_cast<size_t>((r - k + p) % p) * stride_;  // forwarded to the right
      if (eager_ || r % 2 == 0) {
        send_->send(block, stride_, block);
        send_->waitSend();
        recv_->waitRecv();
      } else {
        recv_->waitRecv();
        send_->send(block, stride_, block);
        send_->waitSend();
      }
    }
  }

 private:
  size_t stride_;
  bool eager_;
  std::unique_ptr<gloo::transport::Buffer> send_;
  std::unique_ptr<gloo::transport::Buffer> recv_;
};

}  // namespace

struct bagua_gloo_context {
  std::shared_ptr<gloo::rendezvous::Context> ctx;       // async mode: gloo's new-style collectives
  std::shared_ptr<gloo::rendezvous::Context> syncCtx;   // sync mode: the small path (may be null)
  std::shared_ptr<gloo::transport::Device> device;
  int rank = 0;
  int size = 1;
  milliseconds timeout{30000};
  size_t smallBytes = 0;
  std::string name;                   // the store prefix, for messages
  // ":<port>" tags of each rank's sockets (its listener, and its ends of the
  // connections it opened), to name the peer in gloo's IO error messages.
  std::vector<std::vector<std::string>> peerTags;
  std::string broken;                 // non-empty once a collective has failed
  // LRU cache of small-path algorithms: key -> entry, most recent first.
  std::list<std::pair<std::string, std::unique_ptr<SmallEntry>>> small;
};

namespace {

// "[ip]:port" tags for an endpoint, as gloo's tcp::Address::str() may print
// it: this gloo (2022) prints the port in network byte order, later ones in
// host order, so both spellings are kept.
std::vector<std::string> endpointTags(const sockaddr* sa) {
  char ip[INET6_ADDRSTRLEN] = {0};
  uint16_t port = 0;
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
    port = ntohs(in6->sin6_port);
  } else {
    return {};
  }
  const uint16_t swapped = static_cast<uint16_t>((port >> 8) | (port << 8));
  std::vector<std::string> out{"[" + std::string(ip) + "]:" + std::to_string(port)};
  if (swapped != port) out.push_back("[" + std::string(ip) + "]:" + std::to_string(swapped));
  return out;
}

// Whether `tag` occurs in msg not followed by another digit.
bool containsTag(const std::string& msg, const std::string& tag) {
  for (size_t pos = msg.find(tag); pos != std::string::npos; pos = msg.find(tag, pos + 1)) {
    size_t end = pos + tag.size();
    if (end >= msg.size() || !isdigit(static_cast<unsigned char>(msg[end]))) return true;
  }
  return false;
}

// The peer ranks whose socket addresses appear in a gloo message: exact
// "[ip]:port" matches, else a port that only one peer owns.
std::vector<int> peersIn(const bagua_gloo_context* c, const std::string& msg) {
  std::vector<int> out;
  for (int r = 0; r < static_cast<int>(c->peerTags.size()); r++) {
    if (r == c->rank) continue;
    for (const std::string& tag : c->peerTags[r]) {
      if (containsTag(msg, tag)) {
        out.push_back(r);
        break;
      }
    }
  }
  if (!out.empty()) return out;
  std::map<std::string, std::set<int>> owners;  // ":port" -> ranks
  for (int r = 0; r < static_cast<int>(c->peerTags.size()); r++) {
    if (r == c->rank) continue;
    for (const std::string& tag : c->peerTags[r]) {
      size_t colon = tag.rfind("]:");
      if (colon != std::string::npos) owners[tag.substr(colon + 1)].insert(r);
    }
  }
  for (const auto& kv : owners) {
    if (kv.second.size() == 1 && containsTag(msg, kv.first)) out.push_back(*kv.second.begin());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool mentionsTimeout(const std::string& msg) {
  std::string lower(msg);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return lower.find("timeout") != std::string::npos || lower.find("timed out") != std::string::npos;
}

// Runs fn, translating every exception into a status code and message, and
// marks the context unusable after a transport failure (gloo leaves the
// transport in an unknown state after an error).
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
  } catch (const MismatchError& e) {
    return fail(BAGUA_GLOO_ERR_INVALID, std::string(what) + ": " + e.what());
  } catch (const gloo::IoException& e) {
    msg = e.what();
    code = mentionsTimeout(msg) ? BAGUA_GLOO_ERR_TIMEOUT : BAGUA_GLOO_ERR_IO;
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

// ---- reductions over whole rank-ordered payloads (small path) ----

// out = op(rank 0's, rank 1's, ...), combined in rank order on every rank, so
// all ranks get bit-identical results whatever the group size.
template <typename T>
void reduceRankOrdered(void* out, const char* gathered, size_t stride, int size, size_t n, int op) {
  T* o = static_cast<T*>(out);
  memcpy(o, gathered, n * sizeof(T));
  for (int r = 1; r < size; r++) {
    const T* x = reinterpret_cast<const T*>(gathered + static_cast<size_t>(r) * stride);
    switch (op) {
      case BAGUA_GLOO_SUM:
      case BAGUA_GLOO_AVG: reduceSum<T>(o, o, x, n); break;
      case BAGUA_GLOO_MAX: reduceMax<T>(o, o, x, n); break;
      case BAGUA_GLOO_MIN: reduceMin<T>(o, o, x, n); break;
      case BAGUA_GLOO_PRODUCT: reduceProduct<T>(o, o, x, n); break;
    }
  }
  if (op == BAGUA_GLOO_AVG) {
    const T d = static_cast<T>(size);
    for (size_t i = 0; i < n; i++) o[i] = o[i] / d;
  }
}

bool useSmall(const bagua_gloo_context* c, size_t payloadBytes, int timeout_ms) {
  return c->syncCtx && payloadBytes <= c->smallBytes &&
         (timeout_ms <= 0 || milliseconds(timeout_ms) == c->timeout);
}

const size_t kMaxSmallEntries = 64;
const size_t kSegmentBytes = 4u << 20;
const size_t kMaxSmallStagingBytes = 64u << 20;

// The cached entry for `key`, built by make() on a miss (same order on every rank).
template <typename Make>
SmallEntry& smallEntry(bagua_gloo_context* c, const std::string& key, Make&& make) {
  for (auto it = c->small.begin(); it != c->small.end(); ++it) {
    if (it->first == key) {
      if (it != c->small.begin()) c->small.splice(c->small.begin(), c->small, it);
      return *c->small.front().second;
    }
  }
  std::unique_ptr<SmallEntry> e(new SmallEntry);
  make(*e);
  c->small.emplace_front(key, std::move(e));
  size_t total = 0;
  for (const auto& kv : c->small) total += kv.second->out.size();
  while (c->small.size() > 1 &&
         (c->small.size() > kMaxSmallEntries || total > kMaxSmallStagingBytes)) {
    total -= c->small.back().second->out.size();
    c->small.pop_back();
  }
  return *c->small.front().second;
}

// Every rank's (payload, signature), rank after rank, in e.out.
SmallEntry& smallAllgather(bagua_gloo_context* c, const void* payload, size_t bytes,
                           const Signature& sig) {
  const size_t stride = bytes + sizeof(Signature);
  SmallEntry& e = smallEntry(c, "ag:" + std::to_string(bytes), [&](SmallEntry& n) {
    n.out.resize(stride * static_cast<size_t>(c->size));
    n.algo.reset(new SyncRingAllgather(c->syncCtx, n.out.data(), stride));
  });
  char* mine = e.out.data() + static_cast<size_t>(c->rank) * stride;
  if (bytes) memcpy(mine, payload, bytes);
  memcpy(mine + bytes, &sig, sizeof sig);
  e.algo->run();
  for (int r = 0; r < c->size; r++) {
    Signature other;
    memcpy(&other, e.out.data() + static_cast<size_t>(r) * stride + bytes, sizeof other);
    if (memcmp(&other, &sig, sizeof sig) != 0) {
      throw MismatchError("ranks called different collectives: this rank (" +
                          std::to_string(c->rank) + ") called " + describe(sig) + ", rank " +
                          std::to_string(r) + " called " + describe(other));
    }
  }
  return e;
}

// ---- gloo's asynchronous algorithms (large payloads) ----

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
  // Larger segments than gloo's 1 MiB default: fewer hand-offs between the
  // calling thread and gloo's event loop (~15% more bandwidth on loopback).
  opts.setMaxSegmentSize(kSegmentBytes);
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

std::shared_ptr<gloo::rendezvous::Context> connect(bagua::StoreClient& client,
                                                   const std::string& prefix, int rank, int size,
                                                   milliseconds timeout,
                                                   std::shared_ptr<gloo::transport::Device>& dev,
                                                   std::vector<std::vector<std::string>>* peerTags) {
  PrefixedStore store(client, prefix, size, timeout);
  auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
  ctx->setTimeout(timeout);
  ctx->connectFullMesh(store, dev);
  if (peerTags == nullptr) return ctx;
  // Every listening address each peer published (one per pair).
  peerTags->resize(size);
  for (int r = 0; r < size && size > 1; r++) {
    if (r == rank) continue;
    std::vector<char> blob;
    if (!store.cached(std::to_string(r), &blob)) continue;
    size_t one = blob.size() / static_cast<size_t>(size - 1);
    for (size_t off = 0; one > 0 && off + one <= blob.size(); off += one) {
      gloo::transport::tcp::Address addr(std::vector<char>(blob.begin() + off, blob.begin() + off + one));
      for (auto& tag : endpointTags(reinterpret_cast<const sockaddr*>(&addr.getSockaddr()))) {
        (*peerTags)[r].push_back(tag);
      }
    }
  }
  return ctx;
}


// Local endpoints ("[ip]:port") of this process's established TCP sockets
// (Linux: /proc/self/fd socket inodes joined with /proc/self/net/tcp{,6}).
std::vector<std::string> localEndpoints() {
  std::set<unsigned long> inodes;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      std::string path = std::string("/proc/self/fd/") + e->d_name;
      char target[128];
      ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      unsigned long ino = 0;
      if (sscanf(target, "socket:[%lu]", &ino) == 1) inodes.insert(ino);
    }
    closedir(d);
  }
  std::vector<std::string> out;
  for (int v6 = 0; v6 < 2; v6++) {
    FILE* f = fopen(v6 ? "/proc/self/net/tcp6" : "/proc/self/net/tcp", "r");
    if (f == nullptr) continue;
    char line[512];
    bool header = true;
    while (fgets(line, sizeof line, f) != nullptr) {
      if (header) {
        header = false;
        continue;
      }
      char local[64];
      unsigned st = 0;
      unsigned long ino = 0;
      // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
      if (sscanf(line, " %*s %63s %*s %x %*s %*s %*s %*s %*s %lu", local, &st, &ino) != 3) continue;
      if (st != 1 /* ESTABLISHED */ || inodes.count(ino) == 0) continue;
      char* colon = strchr(local, ':');
      if (colon == nullptr) continue;
      *colon = '\0';
      const int port = static_cast<int>(strtol(colon + 1, nullptr, 16));
      sockaddr_storage ss;
      memset(&ss, 0, sizeof ss);
      if (!v6 && strlen(local) == 8) {
        auto* in = reinterpret_cast<sockaddr_in*>(&ss);
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = static_cast<uint32_t>(strtoul(local, nullptr, 16));  // kernel order
        in->sin_port = htons(static_cast<uint16_t>(port));
      } else if (v6 && strlen(local) == 32) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
        in6->sin6_family = AF_INET6;
        for (int w = 0; w < 4; w++) {
          char word[9];
          memcpy(word, local + 8 * w, 8);
          word[8] = '\0';
          uint32_t x = static_cast<uint32_t>(strtoul(word, nullptr, 16));  // each word in kernel order
          memcpy(reinterpret_cast<char*>(&in6->sin6_addr) + 4 * w, &x, 4);
        }
        in6->sin6_port = htons(static_cast<uint16_t>(port));
      } else {
        continue;
      }
      for (auto& tag : endpointTags(reinterpret_cast<const sockaddr*>(&ss))) out.push_back(tag);
    }
    fclose(f);
  }
  return out;
}

// Publishes this rank's socket endpoints and learns everyone else's, so that
// an error naming a peer's end of a connection (gloo prints whichever end it
// knows) can be traced to its rank. Only makes messages more precise.
void exchangeEndpoints(bagua_gloo_context* c, bagua::StoreClient& client, const std::string& prefix) {
  std::string text;
  for (const auto& tag : localEndpoints()) text += tag + "\n";
  client.set(prefix + "/endpoints/" + std::to_string(c->rank), std::vector<char>(text.begin(), text.end()),
             c->timeout);
  for (int r = 0; r < c->size; r++) {
    if (r == c->rank) continue;
    const std::string key = prefix + "/endpoints/" + std::to_string(r);
    std::vector<char> v;
    if (!client.wait({key}, c->timeout) || !client.get(key, &v, c->timeout)) continue;
    std::string list(v.begin(), v.end());
    size_t start = 0;
    for (size_t nl = list.find('\n'); nl != std::string::npos; nl = list.find('\n', start)) {
      if (nl > start) c->peerTags[r].push_back(list.substr(start, nl - start));
      start = nl + 1;
    }
  }
}

}  // namespace

extern "C" {

int bagua_gloo_abi_version(void) { return BAGUA_GLOO_ABI_VERSION; }

const char* bagua_gloo_last_error(void) { return tlsLastError.c_str(); }

bagua_gloo_context* bagua_gloo_context_create(int rank, int size, const char* store_host,
                                              int store_port, const char* token,
                                              const char* prefix, int timeout_ms,
                                              const char* iface, const char* hostname,
                                              int64_t small_bytes, char* err, int err_cap) {
  std::string where = std::string("gloo rendezvous (rank ") + std::to_string(rank) + " of " +
                      std::to_string(size) + ", prefix '" + (prefix ? prefix : "") + "')";
  if (size < 1 || rank < 0 || rank >= size || store_host == nullptr || store_port <= 0 ||
      store_port > 65535 || prefix == nullptr || timeout_ms <= 0 || small_bytes < 0 ||
      small_bytes > (1 << 30)) {
    copyError(err, err_cap, where + ": invalid arguments");
    return nullptr;
  }
  const milliseconds timeout(timeout_ms);
  std::unique_ptr<bagua_gloo_context> c(new bagua_gloo_context);
  c->rank = rank;
  c->size = size;
  c->timeout = timeout;
  c->name = prefix;
  c->smallBytes = static_cast<size_t>(small_bytes);
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
    const std::string p(prefix);
    c->ctx = connect(client, p + "/a", rank, size, timeout, c->device, &c->peerTags);
    if (size > 1) {
      // Every rank must agree on the small-payload threshold: it decides
      // which mesh each collective uses.
      const std::string mine = std::to_string(small_bytes);
      client.set(p + "/config/" + std::to_string(rank), std::vector<char>(mine.begin(), mine.end()), timeout);
      for (int r = 0; r < size; r++) {
        const std::string key = p + "/config/" + std::to_string(r);
        std::vector<char> v;
        if (!client.wait({key}, timeout) || !client.get(key, &v, timeout)) {
          throw RendezvousTimeout("rendezvous timed out waiting for rank " + std::to_string(r) + "'s settings", {r});
        }
        const std::string theirs(v.begin(), v.end());
        if (theirs != mine) {
          throw std::runtime_error("ranks disagree on the small-payload threshold (BAGUA_GLOO_SMALL_BYTES): rank " +
                                   std::to_string(rank) + " has " + mine + ", rank " + std::to_string(r) +
                                   " has " + theirs);
        }
      }
    }
    if (small_bytes > 0 && size > 1) {
      c->syncCtx = connect(client, p + "/s", rank, size, timeout, c->device, &c->peerTags);
      for (int r = 0; r < size; r++) {
        if (r != rank) c->syncCtx->getPair(r)->setSync(true, false);
      }
    }
    if (size > 1) {
      // Once every pair has carried a message, every connection is
      // established at both ends: only then are the endpoints complete.
      gloo::BarrierOptions barrier(c->ctx);
      gloo::barrier(barrier);
      if (c->syncCtx) smallAllgather(c.get(), nullptr, 0, Signature{4, 0, 0, 0, 0, 0});
      try {
        exchangeEndpoints(c.get(), client, p);
      } catch (const bagua::StoreError&) {
        throw;
      } catch (const std::exception&) {
        // best effort
      }
    }
    if (getenv("BAGUA_GLOO_DEBUG") != nullptr) {
      std::ostringstream s;
      s << "bagua_gloo: rank " << rank << "/" << size << " prefix '" << prefix << "' device "
        << c->device->str() << " peers";
      for (int r = 0; r < size; r++) {
        s << " " << r << "=";
        for (const auto& t : c->peerTags[r]) s << t;
      }
      fprintf(stderr, "%s\n", s.str().c_str());
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
    ctx->small.clear();
    ctx->syncCtx.reset();
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
  const size_t es = dtypeSize(dtype);
  if (es == 0) return fail(BAGUA_GLOO_ERR_INVALID, "allreduce: unknown dtype");
  if (op < BAGUA_GLOO_SUM || op > BAGUA_GLOO_PRODUCT) {
    return fail(BAGUA_GLOO_ERR_INVALID, "allreduce: unknown reduce op");
  }
  if (count < 0 || (count > 0 && buf == nullptr)) {
    return fail(BAGUA_GLOO_ERR_INVALID, "allreduce: bad buffer");
  }
  return guarded(ctx, "allreduce", [&] {
    if (ctx->size == 1) return;  // nothing to exchange; avg over 1 rank is identity
    const size_t n = static_cast<size_t>(count);
    // The small path all-gathers whole buffers (size x the ring's traffic):
    // worth it while latency dominates.
    if (useSmall(ctx, n * es, timeout_ms) && n * es * static_cast<size_t>(ctx->size) <= 4 * ctx->smallBytes) {
      Signature sig{1, static_cast<uint8_t>(dtype), static_cast<uint8_t>(op), 0, 0, count};
      SmallEntry& e = smallAllgather(ctx, buf, n * es, sig);
      if (n == 0) return;
      BAGUA_DISPATCH(dtype, reduceRankOrdered, buf, e.out.data(), n * es + sizeof(Signature),
                     ctx->size, n, op);
      return;
    }
    if (n == 0) return;
    BAGUA_DISPATCH(dtype, runAllreduce, ctx, buf, n, op, opTimeout(ctx, timeout_ms));
  });
}

int bagua_gloo_allgather(bagua_gloo_context* ctx, void* out, const void* in, int64_t count,
                         int dtype, int timeout_ms) {
  const size_t es = dtypeSize(dtype);
  if (es == 0) return fail(BAGUA_GLOO_ERR_INVALID, "allgather: unknown dtype");
  if (count < 0 || (count > 0 && (out == nullptr || in == nullptr))) {
    return fail(BAGUA_GLOO_ERR_INVALID, "allgather: bad buffer");
  }
  return guarded(ctx, "allgather", [&] {
    const size_t bytes = static_cast<size_t>(count) * es;
    if (ctx->size == 1) {
      if (bytes && out != in) memmove(out, in, bytes);
      return;
    }
    if (useSmall(ctx, bytes, timeout_ms)) {
      Signature sig{2, static_cast<uint8_t>(dtype), 0, 0, 0, count};
      SmallEntry& e = smallAllgather(ctx, in, bytes, sig);
      const size_t stride = bytes + sizeof(Signature);
      for (int r = 0; r < ctx->size && bytes; r++) {
        memcpy(static_cast<char*>(out) + static_cast<size_t>(r) * bytes,
               e.out.data() + static_cast<size_t>(r) * stride, bytes);
      }
      return;
    }
    if (bytes == 0) return;
    BAGUA_DISPATCH(dtype, runAllgather, ctx, out, in, static_cast<size_t>(count),
                   opTimeout(ctx, timeout_ms));
  });
}

int bagua_gloo_broadcast(bagua_gloo_context* ctx, void* buf, int64_t count, int dtype, int root,
                         int timeout_ms) {
  const size_t es = dtypeSize(dtype);
  if (es == 0) return fail(BAGUA_GLOO_ERR_INVALID, "broadcast: unknown dtype");
  if (count < 0 || (count > 0 && buf == nullptr)) {
    return fail(BAGUA_GLOO_ERR_INVALID, "broadcast: bad buffer");
  }
  if (ctx != nullptr && (root < 0 || root >= ctx->size)) {
    return fail(BAGUA_GLOO_ERR_INVALID, "broadcast: root " + std::to_string(root) +
                                            " is not a rank of a group of size " +
                                            std::to_string(ctx->size));
  }
  return guarded(ctx, "broadcast", [&] {
    if (ctx->size == 1) return;
    const size_t bytes = static_cast<size_t>(count) * es;
    if (useSmall(ctx, bytes, timeout_ms)) {
      const Signature sig{3, static_cast<uint8_t>(dtype), 0, 0, root, count};
      const size_t stride = bytes + sizeof(Signature);
      SmallEntry& e = smallEntry(
          ctx, "bc:" + std::to_string(bytes) + ":" + std::to_string(root), [&](SmallEntry& n) {
            n.out.resize(stride);
            n.algo.reset(new gloo::BroadcastOneToAll<char>(
                ctx->syncCtx, std::vector<char*>{n.out.data()}, stride, root));
          });
      if (ctx->rank == root) {
        if (bytes) memcpy(e.out.data(), buf, bytes);
        memcpy(e.out.data() + bytes, &sig, sizeof sig);
      }
      e.algo->run();
      Signature other;
      memcpy(&other, e.out.data() + bytes, sizeof other);
      if (memcmp(&other, &sig, sizeof sig) != 0) {
        throw MismatchError("ranks called different collectives: this rank (" +
                            std::to_string(ctx->rank) + ") called " + describe(sig) + ", rank " +
                            std::to_string(root) + " called " + describe(other));
      }
      if (ctx->rank != root && bytes) memcpy(buf, e.out.data(), bytes);
      return;
    }
    if (bytes == 0) return;
    BAGUA_DISPATCH(dtype, runBroadcast, ctx, buf, static_cast<size_t>(count), root,
                   opTimeout(ctx, timeout_ms));
  });
}

int bagua_gloo_barrier(bagua_gloo_context* ctx, int timeout_ms) {
  return guarded(ctx, "barrier", [&] {
    if (ctx->size == 1) return;
    if (useSmall(ctx, 0, timeout_ms)) {
      smallAllgather(ctx, nullptr, 0, Signature{4, 0, 0, 0, 0, 0});
      return;
    }
    gloo::BarrierOptions opts(ctx->ctx);
    opts.setTimeout(opTimeout(ctx, timeout_ms));
    gloo::barrier(opts);
  });
}

}  // extern "C"
