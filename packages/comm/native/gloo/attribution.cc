#include "attribution.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gloo/transport/tcp/address.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "store_adapter.h"

namespace bgloo {
namespace {

// Whether `tag` occurs in msg not followed by another digit.
bool containsTag(const std::string& msg, const std::string& tag) {
  for (size_t pos = msg.find(tag); pos != std::string::npos; pos = msg.find(tag, pos + 1)) {
    size_t end = pos + tag.size();
    if (end >= msg.size() || !isdigit(static_cast<unsigned char>(msg[end]))) return true;
  }
  return false;
}

// Local endpoints ("[ip]:port") of this process's established TCP sockets
// (Linux: /proc/self/fd socket inodes joined with /proc/self/net/tcp{,6}).
std::vector<std::string> localEndpoints() {
  std::set<unsigned long> inodes;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      std::string path = std::string("/proc/self/fd/") + e->d_name;
      char target[128];
      ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      unsigned long ino = 0;
      if (sscanf(target, "socket:[%lu]", &ino) == 1) inodes.insert(ino);
    }
    closedir(d);
  }
  std::vector<std::string> out;
  for (int v6 = 0; v6 < 2; v6++) {
    FILE* f = fopen(v6 ? "/proc/self/net/tcp6" : "/proc/self/net/tcp", "r");
    if (f == nullptr) continue;
    char line[512];
    bool header = true;
    while (fgets(line, sizeof line, f) != nullptr) {
      if (header) {
        header = false;
        continue;
      }
      char local[64];
      unsigned st = 0;
      unsigned long ino = 0;
      // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
      if (sscanf(line, " %*s %63s %*s %x %*s %*s %*s %*s %*s %lu", local, &st, &ino) != 3) continue;
      if (st != 1 /* ESTABLISHED */ || inodes.count(ino) == 0) continue;
      char* colon = strchr(local, ':');
      if (colon == nullptr) continue;
      *colon = '\0';
      const int port = static_cast<int>(strtol(colon + 1, nullptr, 16));
      sockaddr_storage ss;
      memset(&ss, 0, sizeof ss);
      if (!v6 && strlen(local) == 8) {
        auto* in = reinterpret_cast<sockaddr_in*>(&ss);
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = static_cast<uint32_t>(strtoul(local, nullptr, 16));  // kernel order
        in->sin_port = htons(static_cast<uint16_t>(port));
      } else if (v6 && strlen(local) == 32) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
        in6->sin6_family = AF_INET6;
        for (int w = 0; w < 4; w++) {
          char word[9];
          memcpy(word, local + 8 * w, 8);
          word[8] = '\0';
          uint32_t x = static_cast<uint32_t>(strtoul(word, nullptr, 16));  // each word in kernel order
          memcpy(reinterpret_cast<char*>(&in6->sin6_addr) + 4 * w, &x, 4);
        }
        in6->sin6_port = htons(static_cast<uint16_t>(port));
      } else {
        continue;
      }
      for (auto& tag : endpointTags(reinterpret_cast<const sockaddr*>(&ss))) out.push_back(tag);
    }
    fclose(f);
  }
  return out;
}

}  // namespace

// "[ip]:port" tags for an endpoint, as gloo's tcp::Address::str() may print
// it: this gloo (2022) prints the port in network byte order, later ones in
// host order, so both spellings are kept.
std::vector<std::string> endpointTags(const sockaddr* sa) {
  char ip[INET6_ADDRSTRLEN] = {0};
  uint16_t port = 0;
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
    port = ntohs(in6->sin6_port);
  } else {
    return {};
  }
  const uint16_t swapped = static_cast<uint16_t>((port >> 8) | (port << 8));
  std::vector<std::string> out{"[" + std::string(ip) + "]:" + std::to_string(port)};
  if (swapped != port) out.push_back("[" + std::string(ip) + "]:" + std::to_string(swapped));
  return out;
}

void addPublishedTags(PrefixedStore& store, int rank, int size,
                      std::vector<std::vector<std::string>>* peerTags) {
  // Every listening address each peer published (one per pair).
  peerTags->resize(size);
  for (int r = 0; r < size && size > 1; r++) {
    if (r == rank) continue;
    std::vector<char> blob;
    if (!store.cached(std::to_string(r), &blob)) continue;
    size_t one = blob.size() / static_cast<size_t>(size - 1);
    for (size_t off = 0; one > 0 && off + one <= blob.size(); off += one) {
      gloo::transport::tcp::Address addr(std::vector<char>(blob.begin() + off, blob.begin() + off + one));
      for (auto& tag : endpointTags(reinterpret_cast<const sockaddr*>(&addr.getSockaddr()))) {
        (*peerTags)[r].push_back(tag);
      }
    }
  }
}

// Publishes this rank's socket endpoints and learns everyone else's, so that
// an error naming a peer's end of a connection (gloo prints whichever end it
// knows) can be traced to its rank. Only makes messages more precise.
void exchangeEndpoints(bagua_gloo_context* c, bagua::StoreClient& client, const std::string& prefix) {
  std::string text;
  for (const auto& tag : localEndpoints()) text += tag + "\n";
  client.set(prefix + "/endpoints/" + std::to_string(c->rank), std::vector<char>(text.begin(), text.end()),
             c->timeout);
  for (int r = 0; r < c->size; r++) {
    if (r == c->rank) continue;
    const std::string key = prefix + "/endpoints/" + std::to_string(r);
    std::vector<char> v;
    if (!client.wait({key}, c->timeout) || !client.get(key, &v, c->timeout)) continue;
    std::string list(v.begin(), v.end());
    size_t start = 0;
    for (size_t nl = list.find('\n'); nl != std::string::npos; nl = list.find('\n', start)) {
      if (nl > start) c->peerTags[r].push_back(list.substr(start, nl - start));
      start = nl + 1;
    }
  }
}

// The peer ranks whose socket addresses appear in a gloo message: exact
// "[ip]:port" matches, else a port that only one peer owns.
std::vector<int> peersIn(const bagua_gloo_context* c, const std::string& msg) {
  std::vector<int> out;
  for (int r = 0; r < static_cast<int>(c->peerTags.size()); r++) {
    if (r == c->rank) continue;
    for (const std::string& tag : c->peerTags[r]) {
      if (containsTag(msg, tag)) {
        out.push_back(r);
        break;
      }
    }
  }
  if (!out.empty()) return out;
  std::map<std::string, std::set<int>> owners;  // ":port" -> ranks
  for (int r = 0; r < static_cast<int>(c->peerTags.size()); r++) {
    if (r == c->rank) continue;
    for (const std::string& tag : c->peerTags[r]) {
      size_t colon = tag.rfind("]:");
      if (colon != std::string::npos) owners[tag.substr(colon + 1)].insert(r);
    }
  }
  for (const auto& kv : owners) {
    if (kv.second.size() == 1 && containsTag(msg, kv.first)) out.push_back(*kv.second.begin());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool mentionsTimeout(const std::string& msg) {
  std::string lower(msg);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return lower.find("timeout") != std::string::npos || lower.find("timed out") != std::string::npos;
}

}  // namespace bgloo
