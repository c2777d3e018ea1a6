#include "rendezvous.h"

#include <gloo/barrier.h>
#include <gloo/transport/tcp/device.h>
#include <stdio.h>
#include <stdlib.h>

#include <sstream>
#include <vector>

#include "attribution.h"
#include "header.h"
#include "small_path.h"
#include "store_adapter.h"
#include "store_client.h"

namespace bgloo {
namespace {

std::shared_ptr<gloo::rendezvous::Context> connect(bagua::StoreClient& client, const std::string& prefix, int rank,
                                                   int size, milliseconds timeout,
                                                   std::shared_ptr<gloo::transport::Device>& dev,
                                                   std::vector<std::vector<std::string>>* peerTags) {
  PrefixedStore store(client, prefix, size, timeout);
  auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
  ctx->setTimeout(timeout);
  ctx->connectFullMesh(store, dev);
  addPublishedTags(store, rank, size, peerTags);
  return ctx;
}

}  // namespace

std::unique_ptr<bagua_gloo_context> createContext(int rank, int size, const char* store_host, int store_port,
                                                  const char* token, const std::string& prefix,
                                                  milliseconds timeout, const char* iface, const char* hostname,
                                                  size_t small_bytes) {
  std::unique_ptr<bagua_gloo_context> c(new bagua_gloo_context);
  c->rank = rank;
  c->size = size;
  c->timeout = timeout;
  c->name = prefix;
  c->smallBytes = small_bytes;
  bagua::StoreClient client(store_host, store_port, token ? token : "", timeout);
  gloo::transport::tcp::attr attr;
  if (iface != nullptr && iface[0] != '\0') {
    attr.iface = iface;
  } else if (hostname != nullptr && hostname[0] != '\0') {
    attr.hostname = hostname;
  } else {
    attr.hostname = client.localAddress().empty() ? "127.0.0.1" : client.localAddress();
  }
  c->device = gloo::transport::tcp::CreateDevice(attr);
  const std::string p(prefix);
  c->ctx = connect(client, p + "/a", rank, size, timeout, c->device, &c->peerTags);
  if (size > 1) {
    // Every rank must agree on the small-payload threshold: it decides
    // which mesh each collective uses.
    const std::string mine = std::to_string(small_bytes);
    client.set(p + "/config/" + std::to_string(rank), std::vector<char>(mine.begin(), mine.end()), timeout);
    for (int r = 0; r < size; r++) {
      const std::string key = p + "/config/" + std::to_string(r);
      std::vector<char> v;
      if (!client.wait({key}, timeout) || !client.get(key, &v, timeout)) {
        throw RendezvousTimeout("rendezvous timed out waiting for rank " + std::to_string(r) + "'s settings", {r});
      }
      const std::string theirs(v.begin(), v.end());
      if (theirs != mine) {
        throw std::runtime_error("ranks disagree on the small-payload threshold (BAGUA_GLOO_SMALL_BYTES): rank " +
                                 std::to_string(rank) + " has " + mine + ", rank " + std::to_string(r) +
                                 " has " + theirs);
      }
    }
  }
  if (size > 1) {
    // Always: every collective's header exchange (header.cc) runs on it,
    // whatever small_bytes is.
    c->syncCtx = connect(client, p + "/s", rank, size, timeout, c->device, &c->peerTags);
    for (int r = 0; r < size; r++) {
      if (r != rank) c->syncCtx->getPair(r)->setSync(true, false);
    }
    setupHeaders(c.get());
  }
  if (size > 1) {
    // Once every pair has carried a message, every connection is
    // established at both ends: only then are the endpoints complete.
    gloo::BarrierOptions barrier(c->ctx);
    gloo::barrier(barrier);
    smallBarrier(c.get());
    try {
      exchangeEndpoints(c.get(), client, p);
    } catch (const bagua::StoreError&) {
      throw;
    } catch (const std::exception&) {
      // best effort
    }
  }
  if (getenv("BAGUA_GLOO_DEBUG") != nullptr) {
    std::ostringstream s;
    s << "bagua_gloo: rank " << rank << "/" << size << " prefix '" << prefix << "' device "
      << c->device->str() << " peers";
    for (int r = 0; r < size; r++) {
      s << " " << r << "=";
      for (const auto& t : c->peerTags[r]) s << t;
    }
    fprintf(stderr, "%s\n", s.str().c_str());
  }
  return c;
}

}  // namespace bgloo
