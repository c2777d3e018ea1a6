// Joining a group: the rendezvous through the bagua store, the two meshes
// (gloo's asynchronous one, and the synchronous one of the small path), the
// agreement on settings, and the exchange of endpoints for error attribution.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "context.h"

namespace bgloo {

// Throws RendezvousTimeout (naming the absent ranks), bagua::StoreError,
// gloo's exceptions, or std::runtime_error; the C API turns them into its
// error message and fault ranks.
std::unique_ptr<bagua_gloo_context> createContext(int rank, int size, const char* store_host, int store_port,
                                                  const char* token, const std::string& prefix,
                                                  milliseconds timeout, const char* iface, const char* hostname,
                                                  size_t small_bytes);

}  // namespace bgloo
