#include "small_path.h"

#include <gloo/broadcast_one_to_all.h>
#include <gloo/transport/buffer.h>
#include <string.h>

#include <algorithm>
#include <string>

#include "header.h"
#include "reduce.h"

namespace bgloo {
namespace {

const size_t kMaxSmallEntries = 64;
const size_t kMaxSmallStagingBytes = 64u << 20;

// A ring all-gather for pairs in synchronous mode, deadlock-free whatever
// the message size: a send blocks until the peer has read it (once socket
// buffers are full), so even ranks send before they receive and odd ranks
// receive before they send, which breaks every cycle of blocked writers.
// Each round forwards one rank's block into its final place in `out`; in
// sync mode data lands only while its receiver reads, so no ready-to-receive
// notifications are needed (unlike gloo::AllgatherRing, which sends before
// it receives and stalls once a block outgrows the socket buffers).
// Blocks travel in pieces of kPieceBytes: whole blocks of 1 MiB or more (more
// than the socket buffers take) halved the bandwidth, and cost a 4 ms
// scheduler tick per call next to a busy process (measured, issue 12).
// Small blocks go out eagerly on every rank (a rank runs at most size-1
// blocks ahead of its right neighbour, and that much fits in the kernel's
// default socket buffering), which halves the rounds' latency.
class SyncRingAllgather : public gloo::Algorithm {
 public:
  static constexpr size_t kEagerBytes = 32 << 10;
  static constexpr size_t kPieceBytes = 512u << 10;

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
      for (size_t off = 0; off < stride_; off += kPieceBytes) {
        const size_t at = block + off;
        const size_t len = std::min(kPieceBytes, stride_ - off);
        if (eager_ || r % 2 == 0) {
          send_->send(at, len, at);
          send_->waitSend();
          recv_->waitRecv();
        } else {
          recv_->waitRecv();
          send_->send(at, len, at);
          send_->waitSend();
        }
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

// Every rank's `bytes` of payload, rank after rank, in the returned entry's out.
SmallEntry& gatherAll(bagua_gloo_context* c, const void* payload, size_t bytes) {
  SmallEntry& e = smallEntry(c, "ag:" + std::to_string(bytes), [&](SmallEntry& n) {
    n.out.resize(bytes * static_cast<size_t>(c->size));
    n.algo.reset(new SyncRingAllgather(c->syncCtx, n.out.data(), bytes));
  });
  memcpy(e.out.data() + static_cast<size_t>(c->rank) * bytes, payload, bytes);
  e.algo->run();
  return e;
}

}  // namespace

// The all-reduce table: which path moves a payload fastest, chosen by
// measurement (issue 12; 2 cores, loopback, bus bandwidth in GB/s, 2-6
// interleaved runs of bench-comm-rank; mesh = this path with 512 KiB pieces,
// ring = gloo's ring with 4 MiB segments, the same as PyTorch's):
//   2 ranks   1M mesh 3.35 ring 2.4 | 2M 3.4 / 2.7 | 4M 2.8 / 2.2 | 16M 1.7 / 1.9
//     (with one busy process on the machine: 1M 2.8 / 0.26 | 2M 2.8 / 0.52 |
//     4M 2.3 / 0.82 | 16M 1.6 / 1.1; torch-gloo 1.6 / 0.8 / 0.8 / 0.9)
//   4 ranks   512K mesh 0.8 ring 0.7 | 1M 0.75 / 0.4-1.0 | 2M 0.6 / 1.5 | 4M 0.6 / 0.9
// So the mesh takes 2-rank all-reduces up to 4 x small_bytes (it gathers 2 x
// the payload), and at 3+ ranks (whole buffers gathered) up to small_bytes.
// Past the mesh, gloo's other algorithms lost to its ring at every size from
// 2 to 64 MiB (2 ranks: ring 1.5-2.3, ring-chunked 1.0-1.3, halving-doubling
// 0.9-1.9, bcube 1.3-2.0; 4 ranks: ring 0.8-1.6, ring-chunked 0.4-1.0,
// halving-doubling 0.6-0.9, bcube 0.6-1.0), so the ring stays.
Path choosePath(const bagua_gloo_context* c, size_t payloadBytes, int timeout_ms, bool allreduce) {
  // Per-call timeouts other than the group's need gloo's algorithms (the
  // synchronous mesh's timeout is fixed at creation).
  if (timeout_ms > 0 && milliseconds(timeout_ms) != c->timeout) return kGloo;
  if (allreduce && c->size == 2) {
    if (payloadBytes > 4 * c->smallBytes) return kGloo;
  } else if (payloadBytes > c->smallBytes ||
             (allreduce && payloadBytes * static_cast<size_t>(c->size) > 4 * c->smallBytes)) {
    return kGloo;
  }
  return payloadBytes <= kInbandBytes ? kInband : kSync;
}

void inbandAllreduce(bagua_gloo_context* c, void* buf, size_t n, int dtype, int op) {
  if (n == 0) return;
  BAGUA_DISPATCH(dtype, reduceRankOrdered, buf, inbandPayload(c, 0), blockStride(), c->size, n, op);
}

void inbandAllgather(bagua_gloo_context* c, void* out, size_t bytes) {
  for (int r = 0; r < c->size && bytes; r++) {
    memmove(static_cast<char*>(out) + static_cast<size_t>(r) * bytes, inbandPayload(c, r), bytes);
  }
}

void inbandBroadcast(bagua_gloo_context* c, void* buf, size_t bytes, int root) {
  if (c->rank != root && bytes) memcpy(buf, inbandPayload(c, root), bytes);
}

void syncAllreduce(bagua_gloo_context* c, void* buf, size_t n, int dtype, int op) {
  const size_t bytes = n * dtypeSize(dtype);
  SmallEntry& e = gatherAll(c, buf, bytes);
  BAGUA_DISPATCH(dtype, reduceRankOrdered, buf, e.out.data(), bytes, c->size, n, op);
}

void syncAllgather(bagua_gloo_context* c, void* out, const void* in, size_t bytes) {
  SmallEntry& e = gatherAll(c, in, bytes);
  memcpy(out, e.out.data(), bytes * static_cast<size_t>(c->size));
}

void syncBroadcast(bagua_gloo_context* c, void* buf, size_t bytes, int root) {
  SmallEntry& e = smallEntry(c, "bc:" + std::to_string(bytes) + ":" + std::to_string(root), [&](SmallEntry& n) {
    n.out.resize(bytes);
    n.algo.reset(new gloo::BroadcastOneToAll<char>(c->syncCtx, std::vector<char*>{n.out.data()}, bytes, root));
  });
  if (c->rank == root) memcpy(e.out.data(), buf, bytes);
  e.algo->run();
  if (c->rank != root) memcpy(buf, e.out.data(), bytes);
}

void smallBarrier(bagua_gloo_context* c) {
  const Descriptor d = nextCall(c, 4, 0, 0, 0, 0, kInband);
  if (c->size > 1) exchangeHeaders(c, d, nullptr);
}

}  // namespace bgloo
