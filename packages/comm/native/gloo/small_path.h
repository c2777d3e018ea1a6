// Payloads of small collectives, after the header exchange (header.h) has
// shown that every rank makes the same call: in the header message itself
// (kInband: at most kInbandBytes, one hop), or over the synchronous mesh
// (kSync: gloo's synchronous mode, the calling thread reads and writes its
// sockets itself, no hand-off to gloo's event loop). An all-reduce is an
// all-gather plus a reduction in rank order: bit-identical on every rank.
#pragma once

#include <cstddef>
#include <cstdint>

#include "context.h"

namespace bgloo {

// How a call's payload travels (Descriptor::path).
enum Path { kGloo = 0, kInband = 1, kSync = 2 };

// The path of a call moving payloadBytes per rank: the measured table in
// small_path.cc (an all-reduce gathers whole buffers: at most 4 x small_bytes
// in all at 3+ ranks, 8 x at 2).
Path choosePath(const bagua_gloo_context* c, size_t payloadBytes, int timeout_ms, bool allreduce);

// After the exchange of a kInband call: the result from the gathered headers.
void inbandAllreduce(bagua_gloo_context* c, void* buf, size_t n, int dtype, int op);
void inbandAllgather(bagua_gloo_context* c, void* out, size_t bytes);
void inbandBroadcast(bagua_gloo_context* c, void* buf, size_t bytes, int root);

// After the exchange of a kSync call.
void syncAllreduce(bagua_gloo_context* c, void* buf, size_t n, int dtype, int op);
void syncAllgather(bagua_gloo_context* c, void* out, const void* in, size_t bytes);
void syncBroadcast(bagua_gloo_context* c, void* buf, size_t bytes, int root);

// A barrier: the header exchange alone (used at creation too).
void smallBarrier(bagua_gloo_context* c);

}  // namespace bgloo
