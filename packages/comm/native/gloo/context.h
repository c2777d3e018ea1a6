// The state behind a bagua_gloo_context handle, and the types every part of
// the shim shares: the call signature of the small path and the exceptions
// the C API translates into status codes.
#pragma once

#include <gloo/algorithm.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/device.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bagua_gloo.h"

namespace bgloo {

using std::chrono::milliseconds;

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

// A cached gloo algorithm over staging memory. Old-style gloo algorithms
// bind their buffers (and slots) at construction, so they are built once per
// shape and reused; the cache is keyed by values every rank agrees on, so
// all ranks build, hit and evict in the same order.
struct SmallEntry {
  std::vector<char> out;  // allgather: size x (payload + signature); broadcast: payload + signature
  std::unique_ptr<gloo::Algorithm> algo;
};

// Raised when ranks called different collectives (the exchange itself
// worked, so the group stays usable).
struct MismatchError : std::runtime_error {
  explicit MismatchError(const std::string& m) : std::runtime_error(m) {}
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
  std::shared_ptr<gloo::rendezvous::Context> syncCtx;   // sync mode: the small path (may be null)
  std::shared_ptr<gloo::transport::Device> device;
  int rank = 0;
  int size = 1;
  bgloo::milliseconds timeout{30000};
  size_t smallBytes = 0;
  std::string name;                   // the store prefix, for messages
  // ":<port>" tags of each rank's sockets (its listener, and its ends of the
  // connections it opened), to name the peer in gloo's IO error messages.
  std::vector<std::vector<std::string>> peerTags;
  std::string broken;                 // non-empty once a collective has failed
  // LRU cache of small-path algorithms: key -> entry, most recent first.
  std::list<std::pair<std::string, std::unique_ptr<bgloo::SmallEntry>>> small;
};
