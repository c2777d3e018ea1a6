#include "errors.h"

#include <string.h>

#include <algorithm>
#include <utility>

namespace bgloo {
namespace {
thread_local std::string tlsLastError;
thread_local std::vector<int> tlsLastErrorRanks;
}  // namespace

int fail(int code, const std::string& msg, std::vector<int> ranks) {
  tlsLastError = msg;
  tlsLastErrorRanks = std::move(ranks);
  return code;
}

const std::string& lastError() { return tlsLastError; }
const std::vector<int>& lastErrorRanks() { return tlsLastErrorRanks; }

void copyError(char* err, int cap, const std::string& msg) {
  if (err == nullptr || cap <= 0) return;
  size_t n = std::min(msg.size(), static_cast<size_t>(cap - 1));
  memcpy(err, msg.data(), n);
  err[n] = '\0';
}

}  // namespace bgloo
