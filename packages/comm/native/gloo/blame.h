// Which peers a transport failure is about. A rank that fails gracefully
// (its own timeout, a peer's broken connection) first sends every peer a
// verdict over the synchronous mesh; a peer whose connection then closes
// without one died. gloo's own message only names the connection that
// broke here, often a ring neighbour that failed after the rank that died.
#pragma once

#include <string>
#include <vector>

#include "context.h"

namespace bgloo {

// Tells every peer that this rank's group failed (best effort).
void sendVerdicts(bagua_gloo_context* c);

// After sendVerdicts: reads the peers' verdicts, the suspects first, until
// one peer's connection closes (or it stays silent past the timeout)
// without one; returns that peer and says so in *why (or that the cause is
// unknown). Waits for peers that have not failed yet (typically until their
// own failure, at most the group's timeout each).
std::vector<int> silentPeers(bagua_gloo_context* c, const std::vector<int>& suspects, std::string* why);

}  // namespace bgloo
