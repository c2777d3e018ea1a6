// The state behind a bagua_gloo_context handle, and the types every part of
// the shim shares: the descriptor every call exchanges first and the exceptions
// the C API translates into status codes.
#pragma once

#include <gloo/algorithm.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/buffer.h>
#include <gloo/transport/device.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "async.h"
#include "bagua_gloo.h"

namespace bgloo {

using std::chrono::milliseconds;

// Describes a collective call. Every call of every path first exchanges it
// with every peer (the header exchange of small_path.cc), so ranks whose
// calls differ in anything (kind, dtype, count, root, reduction, the group's
// call number, or the path their timeouts chose) fail at once on every rank,
// naming both calls, instead of mixing data or waiting for the timeout.
struct Descriptor {
  uint8_t kind;   // 1 allreduce, 2 allgather, 3 broadcast, 4 barrier
  uint8_t dtype;
  uint8_t op;
  uint8_t path;   // 0 gloo's algorithm, 1 payload in the header message, 2 synchronous mesh, 3 synchronous ring
  int32_t root;
  int64_t count;
  int64_t seq;     // the group's call number (every rank counts every call)
  uint32_t inband; // payload bytes that follow this header in its message (not compared)
  uint32_t magic;
};
static_assert(sizeof(Descriptor) == 32, "descriptor layout");

class SyncRingAllreduce;  // small_path.cc

// A cached gloo algorithm over staging memory. Old-style gloo algorithms
// bind their buffers (and slots) at construction, so they are built once per
// shape and reused; the cache is keyed by values every rank agrees on, so
// all ranks build, hit and evict in the same order.
struct SmallEntry {
  std::vector<char> out;  // allgather: size x payload; broadcast: payload
  std::unique_ptr<gloo::Algorithm> algo;
};

// Raised when ranks called different collectives (the exchange itself
// worked, so the group stays usable).
struct MismatchError : std::runtime_error {
  explicit MismatchError(const std::string& m) : std::runtime_error(m) {}
};

// Raised when a peer failed us in a way the shim observed itself (its
// header never came, its connection broke): `ranks` are the group ranks at
// fault, without guessing from gloo's message.
struct PeerFailure : std::runtime_error {
  PeerFailure(const std::string& msg, std::vector<int> ranks, bool timeout)
      : std::runtime_error(msg), ranks(std::move(ranks)), timeout(timeout) {}
  std::vector<int> ranks;
  bool timeout;
};

// Raised when rendezvous keys do not appear in time; `missing` are the group
// ranks that never published theirs.
struct RendezvousTimeout : std::runtime_error {
  RendezvousTimeout(const std::string& msg, std::vector<int> missing)
      : std::runtime_error(msg), missing(std::move(missing)) {}
  std::vector<int> missing;
};

}  // namespace bgloo

struct bagua_gloo_context {
  std::shared_ptr<gloo::rendezvous::Context> ctx;       // async mode: gloo's new-style collectives
  std::shared_ptr<gloo::rendezvous::Context> syncCtx;   // sync mode: headers and the small path (null for 1 rank)
  std::shared_ptr<gloo::transport::Device> device;
  int rank = 0;
  int size = 1;
  bgloo::milliseconds timeout{30000};
  size_t smallBytes = 0;
  // Whether the synchronous pairs' send buffers hold 2 x size pieces
  // (rendezvous.cc): then every rank sends before it receives.
  bool syncEager = false;
  // The synchronous pairs' sockets by peer rank (-1: not told apart from
  // other sockets; rendezvous.cc): the ring peeks at what comes next.
  std::vector<int> syncFds;
  std::string name;                   // the store prefix, for messages
  // ":<port>" tags of each rank's sockets (its listener, and its ends of the
  // connections it opened), to name the peer in gloo's IO error messages.
  std::vector<std::vector<std::string>> peerTags;
  std::string broken;                 // non-empty once a collective has failed
  int64_t seq = 0;                    // calls so far (the next call's number)
  // The header exchange (small_path.cc): one block per rank of (Descriptor +
  // up to kInbandBytes of payload), sent from this rank's block to every peer
  // and received into each peer's block, on one fixed slot.
  std::vector<char> blocks;
  std::vector<std::unique_ptr<gloo::transport::Buffer>> headerSend, headerRecv;  // by peer rank
  // Verdicts (blame.cc): after a transport failure each rank tells every
  // peer on its own slot, so that a peer whose connection closed without
  // one is known to have died rather than to have failed after someone.
  std::vector<char> verdicts;  // one Descriptor per rank: this rank's to send, the peers' received
  std::vector<std::unique_ptr<gloo::transport::Buffer>> verdictSend, verdictRecv;
  int verdictSlot = -1;
  // LRU cache of small-path algorithms: key -> entry, most recent first.
  std::list<std::pair<std::string, std::unique_ptr<bgloo::SmallEntry>>> small;
  // The synchronous ring all-reduce (kRing), made at the first such call.
  std::shared_ptr<bgloo::SyncRingAllreduce> ring;
  // The communication thread of started collectives (async.h); made on the
  // first start, joined by destroy.
  std::unique_ptr<bgloo::AsyncQueue> async;
};
