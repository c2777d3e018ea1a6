#include "store_adapter.h"

#include <sstream>

namespace bgloo {

void PrefixedStore::set(const std::string& key, const std::vector<char>& data) {
  client_.set(full(key), data, timeout_);
}

std::vector<char> PrefixedStore::get(const std::string& key) {
  auto it = cache_.find(key);
  if (it != cache_.end()) return it->second;
  wait({key}, timeout_);
  std::vector<char> value;
  if (!client_.get(full(key), &value, timeout_)) {
    throw bagua::StoreError("store key '" + full(key) + "' vanished", false);
  }
  cache_[key] = value;
  return value;
}

void PrefixedStore::wait(const std::vector<std::string>& keys, const milliseconds& timeout) {
  std::vector<std::string> fullKeys;
  for (const auto& k : keys) fullKeys.push_back(full(k));
  milliseconds t = timeout.count() > 0 ? timeout : timeout_;
  if (client_.wait(fullKeys, t)) return;
  // Which ranks never published their address? (gloo's keys are the
  // decimal ranks.)
  std::vector<int> missing;
  for (int r = 0; r < size_; r++) {
    std::vector<char> v;
    if (!client_.get(full(std::to_string(r)), &v, timeout_)) missing.push_back(r);
  }
  std::ostringstream s;
  s << "rendezvous timed out after " << t.count() << " ms waiting for store key(s)";
  for (const auto& k : fullKeys) s << " '" << k << "'";
  s << " at " << client_.endpoint();
  throw RendezvousTimeout(s.str(), missing);
}

bool PrefixedStore::cached(const std::string& key, std::vector<char>* out) const {
  auto it = cache_.find(key);
  if (it == cache_.end()) return false;
  *out = it->second;
  return true;
}

}  // namespace bgloo
