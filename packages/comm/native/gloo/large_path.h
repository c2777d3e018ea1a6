// Payloads above the small-path threshold: gloo's own asynchronous
// algorithms (ring all-reduce with 4 MiB segments, all-gather, broadcast)
// over the main mesh, as PyTorch uses them. They honour a per-call timeout.
#pragma once

#include <cstddef>

#include "context.h"

namespace bgloo {

// The per-call timeout: timeout_ms, or the context's when it is <= 0.
milliseconds opTimeout(const bagua_gloo_context* c, int timeout_ms);

void largeAllreduce(bagua_gloo_context* c, void* buf, size_t n, int dtype, int op, milliseconds timeout);
void largeAllgather(bagua_gloo_context* c, void* out, const void* in, size_t n, int dtype, milliseconds timeout);
void largeBroadcast(bagua_gloo_context* c, void* buf, size_t n, int dtype, int root, milliseconds timeout);

}  // namespace bgloo
