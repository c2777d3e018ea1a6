// The small-payload path: collectives over a second mesh whose pairs are in
// gloo's synchronous mode (the calling thread reads and writes its sockets
// itself, no hand-off to gloo's event loop). Every payload carries the
// call's Signature, so ranks that call different collectives fail at once
// (MismatchError) naming both calls. An all-reduce is an all-gather plus a
// reduction in rank order: bit-identical results on every rank.
#pragma once

#include <cstddef>
#include <cstdint>

#include "context.h"

namespace bgloo {

// Whether a payload of this size, with this timeout, takes the small path.
bool useSmall(const bagua_gloo_context* c, size_t payloadBytes, int timeout_ms);

// Every rank's (payload, signature), rank after rank, in the returned entry's out.
SmallEntry& smallAllgather(bagua_gloo_context* c, const void* payload, size_t bytes, const Signature& sig);

// In place over n elements of `dtype`.
void smallAllreduce(bagua_gloo_context* c, void* buf, size_t n, int dtype, int op);
// out = every rank's `in` (bytes each), in rank order.
void smallAllgatherInto(bagua_gloo_context* c, void* out, const void* in, size_t bytes, int dtype);
void smallBroadcast(bagua_gloo_context* c, void* buf, size_t bytes, int dtype, int root);
void smallBarrier(bagua_gloo_context* c);

}  // namespace bgloo
