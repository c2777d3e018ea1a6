#include "small_path.h"

#include <gloo/broadcast_one_to_all.h>
#include <gloo/transport/buffer.h>
#include <string.h>

#include <sstream>
#include <string>

#include "reduce.h"

namespace bgloo {
namespace {

const size_t kMaxSmallEntries = 64;
const size_t kMaxSmallStagingBytes = 64u << 20;

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

std::string mismatch(int me, const Signature& mine, int other, const Signature& theirs) {
  return "ranks called different collectives: this rank (" + std::to_string(me) + ") called " +
         describe(mine) + ", rank " + std::to_string(other) + " called " + describe(theirs);
}

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

}  // namespace

bool useSmall(const bagua_gloo_context* c, size_t payloadBytes, int timeout_ms) {
  return c->syncCtx && payloadBytes <= c->smallBytes &&
         (timeout_ms <= 0 || milliseconds(timeout_ms) == c->timeout);
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
      throw MismatchError(mismatch(c->rank, sig, r, other));
    }
  }
  return e;
}

void smallAllreduce(bagua_gloo_context* c, void* buf, size_t n, int dtype, int op) {
  const size_t bytes = n * dtypeSize(dtype);
  Signature sig{1, static_cast<uint8_t>(dtype), static_cast<uint8_t>(op), 0, 0, static_cast<int64_t>(n)};
  SmallEntry& e = smallAllgather(c, buf, bytes, sig);
  if (n == 0) return;
  BAGUA_DISPATCH(dtype, reduceRankOrdered, buf, e.out.data(), bytes + sizeof(Signature), c->size, n, op);
}

void smallAllgatherInto(bagua_gloo_context* c, void* out, const void* in, size_t bytes, int dtype) {
  const int64_t count = static_cast<int64_t>(bytes / dtypeSize(dtype));
  Signature sig{2, static_cast<uint8_t>(dtype), 0, 0, 0, count};
  SmallEntry& e = smallAllgather(c, in, bytes, sig);
  const size_t stride = bytes + sizeof(Signature);
  for (int r = 0; r < c->size && bytes; r++) {
    memcpy(static_cast<char*>(out) + static_cast<size_t>(r) * bytes,
           e.out.data() + static_cast<size_t>(r) * stride, bytes);
  }
}

void smallBroadcast(bagua_gloo_context* c, void* buf, size_t bytes, int dtype, int root) {
  const int64_t count = static_cast<int64_t>(bytes / dtypeSize(dtype));
  const Signature sig{3, static_cast<uint8_t>(dtype), 0, 0, root, count};
  const size_t stride = bytes + sizeof(Signature);
  SmallEntry& e = smallEntry(c, "bc:" + std::to_string(bytes) + ":" + std::to_string(root), [&](SmallEntry& n) {
    n.out.resize(stride);
    n.algo.reset(new gloo::BroadcastOneToAll<char>(c->syncCtx, std::vector<char*>{n.out.data()}, stride, root));
  });
  if (c->rank == root) {
    if (bytes) memcpy(e.out.data(), buf, bytes);
    memcpy(e.out.data() + bytes, &sig, sizeof sig);
  }
  e.algo->run();
  Signature other;
  memcpy(&other, e.out.data() + bytes, sizeof other);
  if (memcmp(&other, &sig, sizeof sig) != 0) throw MismatchError(mismatch(c->rank, sig, root, other));
  if (c->rank != root && bytes) memcpy(buf, e.out.data(), bytes);
}

void smallBarrier(bagua_gloo_context* c) { smallAllgather(c, nullptr, 0, Signature{4, 0, 0, 0, 0, 0}); }

}  // namespace bgloo
