// gloo's rendezvous Store, backed by the bagua store (./store_client.h)
// under a key prefix. A wait that times out says which ranks never
// published their address (RendezvousTimeout).
#pragma once

#include <gloo/rendezvous/store.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "context.h"
#include "store_client.h"

namespace bgloo {

class PrefixedStore : public gloo::rendezvous::Store {
 public:
  PrefixedStore(bagua::StoreClient& client, std::string prefix, int size, milliseconds timeout)
      : client_(client), prefix_(std::move(prefix)), size_(size), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const milliseconds& timeout) override;

  // The value get() returned for key, if it did.
  bool cached(const std::string& key, std::vector<char>* out) const;

 private:
  std::string full(const std::string& key) const { return prefix_ + "/" + key; }

  bagua::StoreClient& client_;
  std::string prefix_;
  int size_;
  milliseconds timeout_;
  std::map<std::string, std::vector<char>> cache_;
};

}  // namespace bgloo
