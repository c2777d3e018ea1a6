#include "header.h"

#include <gloo/common/error.h>
#include <string.h>

#include <sstream>
#include <vector>

#include "attribution.h"

namespace bgloo {
namespace {

const uint32_t kMagic = 0x42474831;  // "BGH1": a header of this protocol

const char* kindName(uint8_t k) {
  switch (k) {
    case 1: return "allReduce";
    case 2: return "allGather";
    case 3: return "broadcast";
    case 4: return "barrier";
    default: return "?";
  }
}

const char* dtypeName(uint8_t d) {
  switch (d) {
    case BAGUA_GLOO_FLOAT32: return "float32";
    case BAGUA_GLOO_FLOAT64: return "float64";
    case BAGUA_GLOO_INT32: return "int32";
    case BAGUA_GLOO_INT64: return "int64";
    case BAGUA_GLOO_UINT8: return "uint8";
    default: return "?";
  }
}

const char* opName(uint8_t op) {
  switch (op) {
    case BAGUA_GLOO_SUM: return "sum";
    case BAGUA_GLOO_AVG: return "avg";
    case BAGUA_GLOO_MAX: return "max";
    case BAGUA_GLOO_MIN: return "min";
    case BAGUA_GLOO_PRODUCT: return "product";
    default: return "?";
  }
}

// Everything but `inband` (a broadcast's root carries a payload, the others none).
bool sameCall(const Descriptor& a, const Descriptor& b) {
  return a.kind == b.kind && a.dtype == b.dtype && a.op == b.op && a.path == b.path && a.root == b.root &&
         a.count == b.count && a.seq == b.seq && a.magic == b.magic;
}

std::string ranksText(const std::vector<int>& rs) {
  std::string s;
  for (size_t i = 0; i < rs.size(); i++) s += (i ? ", " : "") + std::to_string(rs[i]);
  return s;
}

}  // namespace

std::string describe(const Descriptor& s) {
  if (s.magic != kMagic || s.kind < 1 || s.kind > 4) return "a message that is not a call header";
  std::ostringstream o;
  o << kindName(s.kind) << " #" << s.seq;
  if (s.kind != 4) o << " (" << dtypeName(s.dtype) << " x " << s.count;
  if (s.kind == 1) o << ", " << opName(s.op);
  if (s.kind == 3) o << ", root " << s.root;
  if (s.kind != 4) o << ")";
  return o.str();
}

void setupHeaders(bagua_gloo_context* c) {
  const int p = c->size;
  c->blocks.assign(blockStride() * static_cast<size_t>(p), 0);
  c->headerSend.resize(p);
  c->headerRecv.resize(p);
  const int slot = c->syncCtx->nextSlot();
  char* mine = c->blocks.data() + blockStride() * static_cast<size_t>(c->rank);
  for (int q = 0; q < p; q++) {
    if (q == c->rank) continue;
    auto& pair = c->syncCtx->getPair(q);
    c->headerSend[q] = pair->createSendBuffer(slot, mine, blockStride());
    c->headerRecv[q] = pair->createRecvBuffer(slot, c->blocks.data() + blockStride() * static_cast<size_t>(q),
                                              blockStride());
  }
  const int vslot = c->syncCtx->nextSlot();
  c->verdictSlot = vslot;
  const size_t vs = sizeof(Descriptor);
  c->verdicts.assign(vs * static_cast<size_t>(p), 0);
  c->verdictSend.resize(p);
  c->verdictRecv.resize(p);
  for (int q = 0; q < p; q++) {
    if (q == c->rank) continue;
    auto& pair = c->syncCtx->getPair(q);
    c->verdictSend[q] = pair->createSendBuffer(vslot, c->verdicts.data() + vs * static_cast<size_t>(c->rank), vs);
    c->verdictRecv[q] = pair->createRecvBuffer(vslot, c->verdicts.data() + vs * static_cast<size_t>(q), vs);
  }
}

Descriptor nextCall(bagua_gloo_context* c, int kind, int dtype, int op, int root, int64_t count, int path) {
  Descriptor d;
  memset(&d, 0, sizeof d);
  d.kind = static_cast<uint8_t>(kind);
  d.dtype = static_cast<uint8_t>(dtype);
  d.op = static_cast<uint8_t>(op);
  d.path = static_cast<uint8_t>(path);
  d.root = root;
  d.count = count;
  d.seq = c->seq++;
  d.magic = kMagic;
  return d;
}

const char* inbandPayload(const bagua_gloo_context* c, int r) {
  return c->blocks.data() + blockStride() * static_cast<size_t>(r) + sizeof(Descriptor);
}

void exchangeHeaders(bagua_gloo_context* c, Descriptor d, const void* payload) {
  const int p = c->size;
  char* mine = c->blocks.data() + blockStride() * static_cast<size_t>(c->rank);
  memcpy(mine, &d, sizeof d);
  if (d.inband) memcpy(mine + sizeof d, payload, d.inband);
  const size_t len = sizeof d + d.inband;
  // Every message fits the socket buffering: send them all, then read.
  for (int i = 1; i < p; i++) {
    const int q = (c->rank + i) % p;
    try {
      c->headerSend[q]->send(0, len);
      c->headerSend[q]->waitSend();
    } catch (const gloo::IoException& e) {
      throw PeerFailure("the connection to rank " + std::to_string(q) + " broke at " + describe(d) +
                            " (" + e.what() + ")",
                        {q}, false);
    }
  }
  for (int q = 0; q < p; q++) {
    if (q == c->rank) continue;
    try {
      c->headerRecv[q]->waitRecv();
    } catch (const gloo::IoException& e) {
      const std::string what = e.what();
      if (!mentionsTimeout(what)) {
        throw PeerFailure("the connection to rank " + std::to_string(q) + " broke at " + describe(d) + " (" +
                              what + ")",
                          {q}, false);
      }
      // Its header would have come whatever the others do: rank q really
      // did not arrive. Those after it were not read (each would cost
      // another timeout).
      std::vector<int> unread;
      for (int r = q + 1; r < p; r++) {
        if (r != c->rank) unread.push_back(r);
      }
      throw PeerFailure("rank " + std::to_string(q) + " did not arrive at " + describe(d) + " within " +
                            std::to_string(c->timeout.count()) + " ms" +
                            (unread.empty() ? "" : " (not checked: rank(s) " + ranksText(unread) + ")") +
                            " (" + what + ")",
                        {q}, true);
    }
  }
  for (int r = 0; r < p; r++) {
    if (r == c->rank) continue;
    Descriptor o;
    memcpy(&o, c->blocks.data() + blockStride() * static_cast<size_t>(r), sizeof o);
    if (sameCall(o, d)) continue;
    std::string msg = "ranks called different collectives: " + describe(d) + " here, rank " + std::to_string(r) +
                      " called " + describe(o);
    Descriptor same = o;
    same.path = d.path;
    if (sameCall(same, d)) {
      msg += " (the same call, but a timeout other than the group's sends it another way: ranks must pass equal timeouts)";
    }
    throw MismatchError(msg);
  }
}

}  // namespace bgloo
