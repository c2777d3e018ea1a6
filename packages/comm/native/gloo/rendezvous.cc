#include "rendezvous.h"

#include <gloo/barrier.h>
#include <gloo/transport/tcp/device.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <string>

#include <sstream>
#include <vector>

#include "attribution.h"
#include "header.h"
#include "small_path.h"
#include "store_adapter.h"
#include "store_client.h"

namespace bgloo {
namespace {

// This process's open socket descriptors.
std::set<int> socketFds() {
  std::set<int> out;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      char target[64];
      const std::string path = std::string("/proc/self/fd/") + e->d_name;
      const ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
      if (n > 7 && strncmp(target, "socket:", 7) == 0) out.insert(atoi(e->d_name));
    }
    closedir(d);
  }
  return out;
}

// The synchronous pairs' sockets: opened since `before` (the synchronous
// connect) and connected to an endpoint of a peer of this group (gloo's
// tcp::Pair keeps its descriptor to itself, and other groups of this
// process may connect at the same time).
std::vector<int> syncSockets(const bagua_gloo_context* c, const std::set<int>& before) {
  std::vector<int> out(static_cast<size_t>(c->size), -1);
  for (int fd : socketFds()) {
    if (before.count(fd)) continue;
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) continue;
    const std::vector<std::string> tags = endpointTags(reinterpret_cast<const sockaddr*>(&ss));
    for (int q = 0; q < c->size; q++) {
      if (q == c->rank || q >= static_cast<int>(c->peerTags.size())) continue;
      bool peer = false;
      for (const auto& t : tags) peer = peer || std::find(c->peerTags[q].begin(), c->peerTags[q].end(), t) != c->peerTags[q].end();
      if (peer) out[static_cast<size_t>(q)] = out[static_cast<size_t>(q)] == -1 ? fd : -2;  // -2: ambiguous
    }
  }
  for (int& fd : out) fd = fd < 0 ? -1 : fd;
  return out;
}

// Asks for 4 MiB send buffers on the synchronous pairs' sockets and says
// whether every one holds 2 x size pieces of the synchronous paths: then a
// rank's send never waits for its peer to read (a rank runs at most `size`
// pieces ahead of its right neighbour), so every rank may send before it
// receives, both directions of a pair moving at once (SyncRingAllreduce:
// up to 1.2x at 2 ranks, issue 12). The kernel caps the request at
// net.core.wmem_max (often 208 KiB; then odd ranks receive first).
bool enlargeSyncSendBuffers(bagua_gloo_context* c, size_t pieceBytes) {
  const int want = 4 << 20;
  for (int q = 0; q < c->size; q++) {
    if (q == c->rank) continue;
    const int fd = c->syncFds[static_cast<size_t>(q)];
    if (fd < 0) return false;  // not told apart: keep the safe order
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
    int got = 0;
    socklen_t len = sizeof got;
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len) != 0) return false;
    // The kernel doubles the request for its bookkeeping.
    if (static_cast<size_t>(got) / 2 < 2 * static_cast<size_t>(c->size) * pieceBytes) return false;
  }
  return true;
}

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
  std::set<int> before;
  if (size > 1) {
    // Always: every collective's header exchange (header.cc) runs on it,
    // whatever small_bytes is.
    before = socketFds();
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
    // Every connection is established and every peer's endpoints are known.
    c->syncFds = syncSockets(c.get(), before);
    c->syncEager = enlargeSyncSendBuffers(c.get(), kSyncPieceBytes);
  }
  if (getenv("BAGUA_GLOO_DEBUG") != nullptr) {
    std::ostringstream s;
    s << "bagua_gloo: rank " << rank << "/" << size << " prefix '" << prefix << "' device "
      << c->device->str() << " synchronous sockets " << (c->size - std::count(c->syncFds.begin(), c->syncFds.end(), -1)) << (c->syncEager ? " (eager)" : "") << " peers";
    for (int r = 0; r < size; r++) {
      s << " " << r << "=";
      for (const auto& t : c->peerTags[r]) s << t;
    }
    fprintf(stderr, "%s\n", s.str().c_str());
  }
  return c;
}

}  // namespace bgloo
