// Failures of the C API: the thread's last error (message and the peer
// ranks at fault, read by bagua_gloo_last_error and
// bagua_gloo_last_error_ranks), and the guard that turns every exception of
// a collective into a status code.
#pragma once

#include <gloo/common/error.h>

#include <string>
#include <vector>

#include "attribution.h"
#include "blame.h"
#include "context.h"

namespace bgloo {

// Records msg and the group ranks at fault as this thread's last error; returns code.
int fail(int code, const std::string& msg, std::vector<int> ranks = {});

const std::string& lastError();
const std::vector<int>& lastErrorRanks();

// Copies msg into a caller's buffer (NUL-terminated, truncated to cap).
void copyError(char* err, int cap, const std::string& msg);

// Runs fn, translating every exception into a status code and message, and
// marks the context unusable after a transport failure (gloo leaves the
// transport in an unknown state after an error).
template <typename Fn>
int guarded(bagua_gloo_context* c, const char* what, Fn&& fn) {
  if (c == nullptr) return fail(BAGUA_GLOO_ERR_INVALID, std::string(what) + ": null context");
  if (!c->ctx) return fail(BAGUA_GLOO_ERR_INVALID, std::string(what) + ": context is destroyed");
  if (!c->broken.empty()) {
    return fail(BAGUA_GLOO_ERR_INVALID,
                std::string(what) + ": the group is unusable after an earlier failure (" +
                    c->broken + ")");
  }
  int code = BAGUA_GLOO_ERR_INTERNAL;
  std::string msg;
  try {
    fn();
    return BAGUA_GLOO_OK;
  } catch (const MismatchError& e) {
    return fail(BAGUA_GLOO_ERR_INVALID, std::string(what) + ": " + e.what());
  } catch (const PeerFailure& e) {
    // Seen by the shim itself. A header that never came is definitive; a
    // broken connection may be a peer that failed after another one died.
    c->broken = e.what();
    sendVerdicts(c);
    if (e.timeout) {
      return fail(BAGUA_GLOO_ERR_TIMEOUT, std::string(what) + ": " + e.what(), e.ranks);
    }
    std::string why;
    std::vector<int> ranks = silentPeers(c, e.ranks, &why);
    return fail(BAGUA_GLOO_ERR_IO, std::string(what) + ": " + e.what() + " [" + why + "]", ranks);
  } catch (const gloo::IoException& e) {
    msg = e.what();
    code = mentionsTimeout(msg) ? BAGUA_GLOO_ERR_TIMEOUT : BAGUA_GLOO_ERR_IO;
  } catch (const gloo::EnforceNotMet& e) {
    msg = std::string("gloo assertion: ") + e.what();
  } catch (const std::exception& e) {
    msg = e.what();
  } catch (...) {
    msg = "unknown exception";
  }
  c->broken = msg;
  sendVerdicts(c);
  if (code != BAGUA_GLOO_ERR_INTERNAL) {
    // gloo's message names the connection that failed here; the verdicts
    // say which peer failed first.
    std::string why;
    std::vector<int> ranks = silentPeers(c, peersIn(c, msg), &why);
    return fail(code, std::string(what) + ": " + msg + " [" + why + "]", ranks);
  }
  return fail(code, std::string(what) + ": " + msg);
}

}  // namespace bgloo
