// The header exchange that opens every collective of a group with more than
// one rank: each rank sends its call's Descriptor to every peer over the
// synchronous mesh and reads every peer's, so a mismatch fails at once on
// every rank, naming both calls, whatever path the payload then takes. Small
// payloads (at most kInbandBytes) travel in the same message, so checking
// them costs nothing extra; larger ones follow once all agree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "context.h"

namespace bgloo {

// The largest payload carried in the header message: small enough that a
// message to every peer fits the kernel's socket buffering, so every rank
// can send all of its messages before it reads any (no deadlock, one hop).
constexpr size_t kInbandBytes = 32u << 10;

// Registers the exchange's buffers on the synchronous mesh (at creation).
void setupHeaders(bagua_gloo_context* c);

// The descriptor of this rank's next call; consumes its call number.
Descriptor nextCall(bagua_gloo_context* c, int kind, int dtype, int op, int root, int64_t count, int path);

// Sends d, followed by d.inband bytes of `payload`, to every peer and reads
// every peer's. Throws MismatchError (the group stays usable: every message
// was read) or PeerFailure (a peer did not arrive in time, or its connection
// broke: the group is unusable).
void exchangeHeaders(bagua_gloo_context* c, Descriptor d, const void* payload);

// Rank r's in-band payload from the last exchange; consecutive ranks' are
// blockStride() bytes apart.
const char* inbandPayload(const bagua_gloo_context* c, int r);
constexpr size_t blockStride() { return sizeof(Descriptor) + kInbandBytes; }

// "allReduce #12 (float32 x 4096, sum)"
std::string describe(const Descriptor& d);

}  // namespace bgloo
