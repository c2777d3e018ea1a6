// Error attribution: which peer ranks a gloo failure is about. Gloo's
// messages name a socket address ("[ip]:port"), so each rank learns every
// peer's endpoints at creation (the addresses published in the rendezvous,
// and each peer's ends of its established connections, read from /proc) and
// matches them against the message. Only makes errors more precise.
#pragma once

#include <sys/socket.h>

#include <string>
#include <vector>

#include "context.h"
#include "store_client.h"

namespace bgloo {

class PrefixedStore;

// "[ip]:port" tags for an endpoint, in both port byte orders.
std::vector<std::string> endpointTags(const sockaddr* sa);

// The listening addresses each peer published in the rendezvous under `store`.
void addPublishedTags(PrefixedStore& store, int rank, int size,
                      std::vector<std::vector<std::string>>* peerTags);

// Publishes this rank's established sockets' endpoints under <prefix>/endpoints/
// and adds every peer's to c->peerTags.
void exchangeEndpoints(bagua_gloo_context* c, bagua::StoreClient& client, const std::string& prefix);

// The group ranks of the peers whose socket addresses appear in msg.
std::vector<int> peersIn(const bagua_gloo_context* c, const std::string& msg);

bool mentionsTimeout(const std::string& msg);

}  // namespace bgloo
