#include "small_path.h"

#include <gloo/broadcast_one_to_all.h>
#include <gloo/transport/buffer.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

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
  static constexpr size_t kPieceBytes = kSyncPieceBytes;

  SyncRingAllgather(const std::shared_ptr<gloo::Context>& context, char* out, size_t stride, bool eager)
      : gloo::Algorithm(context),
        stride_(stride),
        eager_(eager || stride * static_cast<size_t>(contextSize_ > 1 ? contextSize_ - 1 : 1) <= kEagerBytes) {
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
    n.algo.reset(new SyncRingAllgather(c->syncCtx, n.out.data(), bytes, c->syncEager));
  });
  memcpy(e.out.data() + static_cast<size_t>(c->rank) * bytes, payload, bytes);
  e.algo->run();
  return e;
}

}  // namespace

// Called before reading the next piece from rank q in the synchronous ring:
// peeks at the head of the next message on q's socket (gloo's tcp preamble
// starts with nbytes, opcode, slot), and when it is a verdict (q's group
// failed: blame.cc), fails now instead of waiting out the timeout for a
// piece that will not come, so a failure goes round the ring at once and
// every survivor gets to read the others' verdicts (and name the rank that
// died). Data, a closed connection or an error: gloo's read says which.
void failOnVerdict(bagua_gloo_context* c, int q) {
  const int fd = q < static_cast<int>(c->syncFds.size()) ? c->syncFds[static_cast<size_t>(q)] : -1;
  if (fd < 0 || c->verdictSlot < 0) return;
  uint64_t pre[3];
  ssize_t n;
  do {
    n = recv(fd, pre, sizeof pre, MSG_PEEK | MSG_WAITALL);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    throw PeerFailure("rank " + std::to_string(q) + " sent nothing for " + std::to_string(c->timeout.count()) +
                          " ms in the middle of an all-reduce (the synchronous ring)",
                      {q}, true);
  }
  if (n == static_cast<ssize_t>(sizeof pre) && pre[1] == 0 /* SEND_BUFFER */ &&
      pre[2] == static_cast<uint64_t>(c->verdictSlot)) {
    // Not named: it failed after someone else (the verdicts say who).
    throw PeerFailure("the ring neighbour sending to this rank reported that the group failed during an all-reduce",
                      {q}, false);
  }
}

// A ring all-reduce for pairs in synchronous mode (the kRing path): a
// reduce-scatter then an all-gather, each P-1 steps, every rank sending one
// chunk of about bytes/P to its right neighbour and receiving one from its
// left per step, in pieces of kPieceBytes with SyncRingAllgather's order
// (even ranks send first, odd ranks receive first: no cycle of blocked
// writers). The calling thread reads and writes its sockets itself, so under
// load a call waits for the peers, not for a hand-off to gloo's event loop as
// well (gloo's async ring: 0.7-0.9x PyTorch's gloo at 4-16 MiB on 2 busy
// cores, this ring 1.3-1.6x; issue 12). The caller's buffer is sent from and
// gathered into directly (buffers made per call on fixed slots); only the
// reduce-scatter's incoming pieces land in staging, one piece long. Each
// chunk is reduced by one rank and then copied: the same bits on every rank.
class SyncRingAllreduce {
 public:
  static constexpr size_t kPieceBytes = kSyncPieceBytes;

  explicit SyncRingAllreduce(bagua_gloo_context* c) : c_(c), tmp_(kPieceBytes) {
    auto& ctx = c->syncCtx;
    rsSlot_ = ctx->nextSlot();
    agSlot_ = ctx->nextSlot();
    const int p = c->size;
    right_ = ctx->getPair((c->rank + 1) % p).get();
    left_ = ctx->getPair((c->rank + p - 1) % p).get();
  }

  template <typename T>
  void run(void* buf, size_t n, int op) {
    const int p = c_->size;
    const int r = c_->rank;
    const int left = (r + p - 1) % p;
    char* base = static_cast<char*>(buf);
    const size_t bytes = n * sizeof(T);
    // Chunk q: elements [q * per, min(n, (q + 1) * per)), per = ceil(n / p).
    const size_t per = (n + static_cast<size_t>(p) - 1) / static_cast<size_t>(p);
    auto chunkAt = [&](int q) { return std::min(n, static_cast<size_t>(q) * per) * sizeof(T); };
    auto chunkLen = [&](int q) { return chunkAt(q + 1 > p ? p : q + 1) - chunkAt(q); };
    const size_t piece = tmp_.size() / sizeof(T) * sizeof(T);
    auto pieces = [&](size_t len) { return (len + piece - 1) / piece; };
    auto reduceFn = reduceFunction<T>(op);
    // All four per call: gloo's tcp Buffer unregisters its slot from its
    // pair when destroyed, a send buffer too, and at 2 ranks both
    // neighbours are one pair, so a cached receive buffer would be lost.
    std::unique_ptr<gloo::transport::Buffer> rsRecv = left_->createRecvBuffer(rsSlot_, tmp_.data(), tmp_.size());
    std::unique_ptr<gloo::transport::Buffer> rsSend = right_->createSendBuffer(rsSlot_, base, bytes);
    std::unique_ptr<gloo::transport::Buffer> agSend = right_->createSendBuffer(agSlot_, base, bytes);
    std::unique_ptr<gloo::transport::Buffer> agRecv = left_->createRecvBuffer(agSlot_, base, bytes);

    // One step: send chunk `out` (piece by piece) while receiving chunk `in`.
    auto step = [&](int out, int in, bool reduce) {
      const size_t outAt = chunkAt(out), outLen = chunkLen(out);
      const size_t inAt = chunkAt(in), inLen = chunkLen(in);
      const size_t k = std::max(pieces(outLen), pieces(inLen));
      for (size_t j = 0; j < k; j++) {
        const size_t so = j * piece, ro = j * piece;
        const bool sending = so < outLen, receiving = ro < inLen;
        const size_t sl = sending ? std::min(piece, outLen - so) : 0;
        const size_t rl = receiving ? std::min(piece, inLen - ro) : 0;
        auto send = [&] {
          if (!sending) return;
          if (reduce) {
            rsSend->send(outAt + so, sl, 0);  // into the peer's staging piece
            rsSend->waitSend();
          } else {
            agSend->send(outAt + so, sl, outAt + so);  // into its place in the peer's buffer
            agSend->waitSend();
          }
        };
        auto recv = [&] {
          if (!receiving) return;
          failOnVerdict(c_, left);
          if (reduce) {
            rsRecv->waitRecv();
            reduceFn(base + inAt + ro, base + inAt + ro, tmp_.data(), rl / sizeof(T));
          } else {
            agRecv->waitRecv();
          }
        };
        if (c_->syncEager || r % 2 == 0) {
          send();
          recv();
        } else {
          recv();
          send();
        }
      }
    };
    // Reduce-scatter: after step k rank r holds chunk (r - k - 1) reduced over k + 2 ranks.
    for (int k = 0; k < p - 1; k++) step((r - k + p) % p, (r - k - 1 + 2 * p) % p, true);
    const int owned = (r + 1) % p;
    if (op == BAGUA_GLOO_AVG) divideBy<T>(base + chunkAt(owned), chunkLen(owned) / sizeof(T), p);
    // All-gather of the reduced chunks: rank r starts with chunk r + 1.
    for (int k = 0; k < p - 1; k++) step((r + 1 - k + p) % p, (r - k + p) % p, false);
  }

 private:
  bagua_gloo_context* c_;
  std::vector<char> tmp_;
  int rsSlot_ = 0, agSlot_ = 0;
  gloo::transport::Pair* right_ = nullptr;
  gloo::transport::Pair* left_ = nullptr;
};


// The all-reduce table, chosen by measurement (issue 12; 2 cores shared with
// other jobs, load average 6-18, loopback; bench:comm --pair-only --ab, each
// pair of blocks back to back): at 2, 3 and 4 ranks the synchronous ring
// beat the synchronous mesh (an all-gather of whole buffers and a reduction
// in rank order) from 64 KiB up (2 ranks: 0.75-0.84x the ring at 64 KiB-4 MiB,
// 3 ranks 0.4-0.8x, 4 ranks 0.36-0.75x), and beat gloo's asynchronous ring
// (the earlier large path) by 1.3-2.6x at 1-64 MiB, whose ring-chunked,
// halving-doubling and bcube had lost to its ring at every size. So: the
// header message up to kInbandBytes (one hop), the synchronous ring above.
// With small_bytes = 0, or a per-call timeout other than the group's (the
// synchronous pairs' timeout is fixed at creation), gloo's own algorithms.
// All-gathers and broadcasts keep the mesh up to small_bytes, gloo above.
Path choosePath(const bagua_gloo_context* c, size_t payloadBytes, int timeout_ms, bool allreduce) {
  if (timeout_ms > 0 && milliseconds(timeout_ms) != c->timeout) return kGloo;
  if (allreduce && c->smallBytes > 0) return payloadBytes <= kInbandBytes ? kInband : kRing;
  if (payloadBytes > c->smallBytes) return kGloo;
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

void ringAllreduce(bagua_gloo_context* c, void* buf, size_t n, int dtype, int op) {
  if (!c->ring) c->ring = std::make_shared<SyncRingAllreduce>(c);  // slots taken at the same call on every rank
  BAGUA_DISPATCH(dtype, c->ring->run, buf, n, op);
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
