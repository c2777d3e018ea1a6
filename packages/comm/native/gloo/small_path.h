// Payloads of small collectives, after the header exchange (header.h) has
// shown that every rank makes the same call: in the header message itself
// (kInband: at most kInbandBytes, one hop), over the synchronous mesh
// (kSync: gloo's synchronous mode, the calling thread reads and writes its
// sockets itself, no hand-off to gloo's event loop), or, for all-reduces,
// the synchronous ring (kRing: reduce-scatter + all-gather over the same
// pairs). Results are bit-identical on every rank: the header path reduces
// in rank order, the ring reduces each chunk on one rank and copies it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "context.h"

namespace bgloo {

// The synchronous paths move payloads in pieces of this size.
constexpr size_t kSyncPieceBytes = 512u << 10;

// How a call's payload travels (Descriptor::path).
enum Path { kGloo = 0, kInband = 1, kSync = 2, kRing = 3 };

// The path of a call moving payloadBytes per rank: the measured table in
// small_path.cc (all-reduces: the header message, else the synchronous ring;
// others: the header message, the synchronous mesh up to small_bytes, gloo's
// algorithms above).
Path choosePath(const bagua_gloo_context* c, size_t payloadBytes, int timeout_ms, bool allreduce);

// After the exchange of a kInband call: the result from the gathered headers.
void inbandAllreduce(bagua_gloo_context* c, void* buf, size_t n, int dtype, int op);
void inbandAllgather(bagua_gloo_context* c, void* out, size_t bytes);
void inbandBroadcast(bagua_gloo_context* c, void* buf, size_t bytes, int root);

// After the exchange of a kSync call.
void syncAllgather(bagua_gloo_context* c, void* out, const void* in, size_t bytes);
void syncBroadcast(bagua_gloo_context* c, void* buf, size_t bytes, int root);

// After the exchange of a kRing call: a ring reduce-scatter + all-gather over
// the synchronous pairs, in place in buf (SyncRingAllreduce, small_path.cc).
void ringAllreduce(bagua_gloo_context* c, void* buf, size_t n, int dtype, int op);

// A barrier: the header exchange alone (used at creation too).
void smallBarrier(bagua_gloo_context* c);

}  // namespace bgloo
