// The C ABI of libbagua_gloo.so (see bagua_gloo.h): argument checks, the
// choice between the small and the large path, and the translation of every
// exception into a status code, a message and the peer ranks at fault. No
// exception crosses the extern "C" boundary.
#include <gloo/common/error.h>
#include <string.h>

#include <algorithm>
#include <string>

#include "async.h"
#include "bagua_gloo.h"
#include "context.h"
#include "errors.h"
#include "header.h"
#include "large_path.h"
#include "reduce.h"
#include "rendezvous.h"
#include "small_path.h"
#include "store_client.h"

using namespace bgloo;

namespace {

// Fills a caller's rank array (up to cap) and count.
void copyRanks(const std::vector<int>& ranks, int32_t* out, int cap, int32_t* count) {
  if (count != nullptr) *count = static_cast<int32_t>(ranks.size());
  for (size_t i = 0; out != nullptr && i < ranks.size() && i < static_cast<size_t>(std::max(cap, 0)); i++) {
    out[i] = ranks[i];
  }
}

// Called first by every synchronous call: the group's calls started earlier
// run first (one order on every rank), and gloo's context is then free for
// this thread. Each queued call is bounded by its own timeouts; a header
// exchange and a payload phase each wait up to the group's timeout.
int drainStarted(bagua_gloo_context* c, const char* what) {
  if (c == nullptr || !c->async) return BAGUA_GLOO_OK;
  if (c->async->drain(c->timeout * 2 + milliseconds(5000))) return BAGUA_GLOO_OK;
  return fail(BAGUA_GLOO_ERR_TIMEOUT, std::string(what) + ": the collectives started before it did not finish within " +
                                          std::to_string((c->timeout * 2).count()) + " ms");
}

int allreduceNow(bagua_gloo_context* ctx, void* buf, int64_t count, int dtype, int op, int timeout_ms) {
  const size_t es = dtypeSize(dtype);
  if (es == 0) return fail(BAGUA_GLOO_ERR_INVALID, "allreduce: unknown dtype");
  if (op < BAGUA_GLOO_SUM || op > BAGUA_GLOO_PRODUCT) {
    return fail(BAGUA_GLOO_ERR_INVALID, "allreduce: unknown reduce op");
  }
  if (count < 0 || (count > 0 && buf == nullptr)) return fail(BAGUA_GLOO_ERR_INVALID, "allreduce: bad buffer");
  return guarded(ctx, "allreduce", [&] {
    const size_t n = static_cast<size_t>(count);
    const Path path = choosePath(ctx, n * es, timeout_ms, true);
    Descriptor d = nextCall(ctx, 1, dtype, op, 0, count, path);
    if (ctx->size == 1) return;  // nothing to exchange; avg over 1 rank is identity
    d.inband = path == kInband ? static_cast<uint32_t>(n * es) : 0;
    exchangeHeaders(ctx, d, buf);
    if (path == kInband) {
      inbandAllreduce(ctx, buf, n, dtype, op);
    } else if (path == kRing && n > 0) {
      ringAllreduce(ctx, buf, n, dtype, op);
    } else if (path == kGloo && n > 0) {
      largeAllreduce(ctx, buf, n, dtype, op, opTimeout(ctx, timeout_ms));
    }
  });
}

}  // namespace

extern "C" {

int bagua_gloo_abi_version(void) { return BAGUA_GLOO_ABI_VERSION; }

const char* bagua_gloo_last_error(void) { return lastError().c_str(); }

int bagua_gloo_last_error_ranks(int32_t* ranks, int cap) {
  int32_t n = 0;
  copyRanks(lastErrorRanks(), ranks, cap, &n);
  return n;
}

bagua_gloo_context* bagua_gloo_context_create(int rank, int size, const char* store_host, int store_port,
                                              const char* token, const char* prefix, int timeout_ms,
                                              const char* iface, const char* hostname, int64_t small_bytes,
                                              char* err, int err_cap, int32_t* err_ranks, int err_ranks_cap,
                                              int32_t* err_nranks) {
  std::string where = std::string("gloo rendezvous (rank ") + std::to_string(rank) + " of " +
                      std::to_string(size) + ", prefix '" + (prefix ? prefix : "") + "')";
  copyRanks({}, err_ranks, err_ranks_cap, err_nranks);
  if (size < 1 || rank < 0 || rank >= size || store_host == nullptr || store_port <= 0 ||
      store_port > 65535 || prefix == nullptr || timeout_ms <= 0 || small_bytes < 0 ||
      small_bytes > (1 << 30)) {
    copyError(err, err_cap, where + ": invalid arguments");
    return nullptr;
  }
  try {
    return createContext(rank, size, store_host, store_port, token, prefix, milliseconds(timeout_ms), iface,
                         hostname, static_cast<size_t>(small_bytes))
        .release();
  } catch (const RendezvousTimeout& e) {
    copyError(err, err_cap, where + ": " + e.what());
    copyRanks(e.missing, err_ranks, err_ranks_cap, err_nranks);
  } catch (const bagua::StoreError& e) {
    copyError(err, err_cap, where + ": " + e.what());
  } catch (const gloo::EnforceNotMet& e) {
    copyError(err, err_cap, where + ": gloo assertion: " + e.what());
  } catch (const std::exception& e) {
    copyError(err, err_cap, where + ": " + e.what());
  } catch (...) {
    copyError(err, err_cap, where + ": unknown exception");
  }
  return nullptr;
}

void bagua_gloo_context_destroy(bagua_gloo_context* ctx) {
  if (ctx == nullptr) return;
  // First: the communication thread finishes the call it runs, fails the
  // queued ones and exits, so nothing uses the context below.
  if (ctx->async) ctx->async->stop();
  try {
    ctx->small.clear();
    ctx->ring.reset();
    ctx->headerSend.clear();
    ctx->headerRecv.clear();
    ctx->verdictSend.clear();
    ctx->verdictRecv.clear();
    ctx->syncCtx.reset();
    ctx->ctx.reset();
    ctx->device.reset();
  } catch (...) {
  }
  ctx->async.reset();
  delete ctx;
}

int bagua_gloo_rank(const bagua_gloo_context* ctx) { return ctx ? ctx->rank : -1; }
int bagua_gloo_size(const bagua_gloo_context* ctx) { return ctx ? ctx->size : -1; }

int bagua_gloo_allreduce(bagua_gloo_context* ctx, void* buf, int64_t count, int dtype, int op, int timeout_ms) {
  if (int st = drainStarted(ctx, "allreduce")) return st;
  return allreduceNow(ctx, buf, count, dtype, op, timeout_ms);
}

int bagua_gloo_allreduce_start(bagua_gloo_context* ctx, void* buf, int64_t count, int dtype, int op,
                               int timeout_ms, int64_t* ticket) {
  if (ticket == nullptr) return fail(BAGUA_GLOO_ERR_INVALID, "allreduce_start: null ticket");
  *ticket = 0;
  // The argument errors at once, on the caller's thread; the rest at wait.
  if (dtypeSize(dtype) == 0) return fail(BAGUA_GLOO_ERR_INVALID, "allreduce: unknown dtype");
  if (op < BAGUA_GLOO_SUM || op > BAGUA_GLOO_PRODUCT) return fail(BAGUA_GLOO_ERR_INVALID, "allreduce: unknown reduce op");
  if (count < 0 || (count > 0 && buf == nullptr)) return fail(BAGUA_GLOO_ERR_INVALID, "allreduce: bad buffer");
  if (ctx == nullptr || !ctx->ctx) return fail(BAGUA_GLOO_ERR_INVALID, "allreduce: context is destroyed");
  if (!ctx->async) ctx->async = std::make_unique<AsyncQueue>();
  *ticket = ctx->async->submit([=] { return allreduceNow(ctx, buf, count, dtype, op, timeout_ms); });
  return *ticket > 0 ? BAGUA_GLOO_OK : fail(BAGUA_GLOO_ERR_INVALID, "allreduce: the context is being destroyed");
}

int bagua_gloo_test(bagua_gloo_context* ctx, int64_t ticket) {
  if (ctx == nullptr || !ctx->async) return -1;
  return ctx->async->test(ticket);
}

int bagua_gloo_wait(bagua_gloo_context* ctx, int64_t ticket, int timeout_ms) {
  if (ctx == nullptr || !ctx->async) return fail(BAGUA_GLOO_ERR_INVALID, "wait: no collective was started on this context");
  AsyncQueue::Result r;
  bool known = false;
  const milliseconds limit = timeout_ms > 0 ? milliseconds(timeout_ms) : ctx->timeout * 2 + milliseconds(5000);
  if (ctx->async->wait(ticket, limit, &r, &known)) {
    return r.status == BAGUA_GLOO_OK ? BAGUA_GLOO_OK : fail(r.status, r.message, std::move(r.ranks));
  }
  if (!known) return fail(BAGUA_GLOO_ERR_INVALID, "wait: unknown ticket " + std::to_string(ticket) + " (already waited for?)");
  return fail(BAGUA_GLOO_ERR_TIMEOUT, "the started collective did not finish within " +
                                          std::to_string(limit.count()) + " ms (it still owns its buffer)");
}

int bagua_gloo_allgather(bagua_gloo_context* ctx, void* out, const void* in, int64_t count, int dtype,
                         int timeout_ms) {
  const size_t es = dtypeSize(dtype);
  if (es == 0) return fail(BAGUA_GLOO_ERR_INVALID, "allgather: unknown dtype");
  if (count < 0 || (count > 0 && (out == nullptr || in == nullptr))) {
    return fail(BAGUA_GLOO_ERR_INVALID, "allgather: bad buffer");
  }
  if (int st = drainStarted(ctx, "allgather")) return st;
  return guarded(ctx, "allgather", [&] {
    const size_t bytes = static_cast<size_t>(count) * es;
    const Path path = choosePath(ctx, bytes, timeout_ms, false);
    Descriptor d = nextCall(ctx, 2, dtype, 0, 0, count, path);
    if (ctx->size == 1) {
      if (bytes && out != in) memmove(out, in, bytes);
      return;
    }
    d.inband = path == kInband ? static_cast<uint32_t>(bytes) : 0;
    exchangeHeaders(ctx, d, in);
    if (path == kInband) {
      inbandAllgather(ctx, out, bytes);
    } else if (path == kSync && bytes > 0) {
      syncAllgather(ctx, out, in, bytes);
    } else if (path == kGloo && bytes > 0) {
      largeAllgather(ctx, out, in, static_cast<size_t>(count), dtype, opTimeout(ctx, timeout_ms));
    }
  });
}

int bagua_gloo_broadcast(bagua_gloo_context* ctx, void* buf, int64_t count, int dtype, int root, int timeout_ms) {
  const size_t es = dtypeSize(dtype);
  if (es == 0) return fail(BAGUA_GLOO_ERR_INVALID, "broadcast: unknown dtype");
  if (count < 0 || (count > 0 && buf == nullptr)) return fail(BAGUA_GLOO_ERR_INVALID, "broadcast: bad buffer");
  if (ctx != nullptr && (root < 0 || root >= ctx->size)) {
    return fail(BAGUA_GLOO_ERR_INVALID, "broadcast: root " + std::to_string(root) +
                                            " is not a rank of a group of size " + std::to_string(ctx->size));
  }
  if (int st = drainStarted(ctx, "broadcast")) return st;
  return guarded(ctx, "broadcast", [&] {
    const size_t bytes = static_cast<size_t>(count) * es;
    const Path path = choosePath(ctx, bytes, timeout_ms, false);
    Descriptor d = nextCall(ctx, 3, dtype, 0, root, count, path);
    if (ctx->size == 1) return;
    // Only the root's header carries the payload.
    d.inband = path == kInband && ctx->rank == root ? static_cast<uint32_t>(bytes) : 0;
    exchangeHeaders(ctx, d, buf);
    if (path == kInband) {
      inbandBroadcast(ctx, buf, bytes, root);
    } else if (path == kSync && bytes > 0) {
      syncBroadcast(ctx, buf, bytes, root);
    } else if (path == kGloo && bytes > 0) {
      largeBroadcast(ctx, buf, static_cast<size_t>(count), dtype, root, opTimeout(ctx, timeout_ms));
    }
  });
}

int bagua_gloo_barrier(bagua_gloo_context* ctx, int timeout_ms) {
  // The header exchange is a barrier (every rank's header is read). It waits
  // up to the group's timeout: the synchronous mesh's is fixed at creation.
  if (int st = drainStarted(ctx, "barrier")) return st;
  return guarded(ctx, "barrier", [&] { smallBarrier(ctx); });
}

}  // extern "C"
