#include "blame.h"

#include <gloo/common/error.h>
#include <string.h>
#include <sys/socket.h>

#include "attribution.h"

namespace bgloo {
namespace {

const uint32_t kVerdictMagic = 0x42475631;  // "BGV1"

std::string list(const std::vector<int>& rs) {
  std::string s;
  for (size_t i = 0; i < rs.size(); i++) s += (i ? ", " : "") + std::to_string(rs[i]);
  return s;
}

}  // namespace

void sendVerdicts(bagua_gloo_context* c) {
  if (c->verdictSend.empty()) return;
  Descriptor v;
  memset(&v, 0, sizeof v);
  v.kind = 5;
  v.seq = c->seq;
  v.magic = kVerdictMagic;
  memcpy(c->verdicts.data() + sizeof v * static_cast<size_t>(c->rank), &v, sizeof v);
  for (int q = 0; q < c->size; q++) {
    if (q == c->rank) continue;
    try {
      c->verdictSend[q]->send(0, sizeof v);
      c->verdictSend[q]->waitSend();
    } catch (const std::exception&) {
      // that peer's connection is gone already: it learns nothing from us
    }
  }
}

std::vector<int> silentPeers(bagua_gloo_context* c, const std::vector<int>& suspects, std::string* why) {
  // The suspects first (the connection that failed here): a dead peer's
  // connection answers at once, a live one only once it fails too.
  std::vector<int> order;
  for (int q : suspects) {
    if (q != c->rank && q >= 0 && q < c->size) order.push_back(q);
  }
  for (int q = 0; q < c->size; q++) {
    bool seen = q == c->rank;
    for (int o : order) seen = seen || o == q;
    if (!seen) order.push_back(q);
  }
  std::vector<int> died, silent, unread;
  for (size_t i = 0; i < order.size() && !c->verdictRecv.empty(); i++) {
    const int q = order[i];
    if (!died.empty() || !silent.empty()) {
      // Found the cause: the rest would only add waiting.
      unread.push_back(q);
      continue;
    }
    try {
      // Returns at once when the verdict came already (read while waiting
      // for something else); throws when the connection is broken first.
      c->verdictRecv[q]->waitRecv();
    } catch (const gloo::IoException& e) {
      (mentionsTimeout(e.what()) ? silent : died).push_back(q);
    } catch (const std::exception&) {
      died.push_back(q);
    }
  }
  // The group is unusable now: drop what peers sent that will never be read
  // (ring pieces sent ahead). Closing a socket with unread data sends a
  // reset instead of an end of stream, and a reset makes the peer's kernel
  // drop what it had not read yet, this rank's verdict included: the peer
  // would think this rank died when this process exits.
  for (int fd : c->syncFds) {
    if (fd < 0) continue;
    static thread_local char sink[1 << 16];
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
  }
  std::vector<int> out(died);
  out.insert(out.end(), silent.begin(), silent.end());
  std::string s;
  if (!died.empty()) {
    s += "rank " + list(died) + " closed its connection without reporting a failure: it died (or gave up waiting for this rank)";
  }
  if (!silent.empty()) s += "rank " + list(silent) + " neither answered nor reported a failure";
  if (s.empty()) s = "every peer reported a failure too: which rank caused it is unknown";
  if (!unread.empty()) s += " (rank(s) " + list(unread) + " not checked)";
  *why = s;
  return out;
}

}  // namespace bgloo
