#include "store_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sstream>
#include <thread>

namespace bagua {
namespace {

// Must match packages/comm/src/store-protocol.ts.
enum : uint8_t { kAuth = 0, kSet = 1, kGet = 2, kAdd = 3, kWait = 4, kDelete = 5 };
enum : uint8_t { kOk = 0, kNotFound = 1, kTimeout = 2, kError = 3 };
constexpr uint32_t kMaxFrame = 16u << 20;

void putU32(std::vector<char>& b, uint32_t v) {
  for (int i = 0; i < 4; i++) b.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void putI64(std::vector<char>& b, int64_t v) {
  uint64_t u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; i++) b.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
}
void putBytes(std::vector<char>& b, const char* p, size_t n) {
  putU32(b, static_cast<uint32_t>(n));
  b.insert(b.end(), p, p + n);
}
uint32_t getU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

std::string errnoText(int e) {
  char buf[256];
  // GNU strerror_r returns a char*.
  return std::string(strerror_r(e, buf, sizeof buf));
}

std::string addrText(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  } else if (sa->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

int remainingMs(StoreClient::Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - StoreClient::Clock::now())
                  .count();
  if (left < 0) return 0;
  if (left > 1 << 30) return 1 << 30;
  return static_cast<int>(left);
}

}  // namespace

std::string StoreClient::endpoint() const {
  std::ostringstream s;
  s << host_ << ":" << port_;
  return s.str();
}

StoreClient::StoreClient(const std::string& host, int port,
                         const std::string& token,
                         std::chrono::milliseconds timeout)
    : host_(host), port_(port) {
  const auto deadline = Clock::now() + timeout;
  addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string lastError = "no address";
  auto backoff = std::chrono::milliseconds(10);
  for (;;) {
    addrinfo* res = nullptr;
    const std::string service = std::to_string(port);
    int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
    if (rc != 0) {
      lastError = std::string("cannot resolve: ") + gai_strerror(rc);
    } else {
      for (addrinfo* ai = res; ai != nullptr && fd_ < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                        ai->ai_protocol);
        if (fd < 0) {
          lastError = "socket: " + errnoText(errno);
          continue;
        }
        rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
          pollfd p{fd, POLLOUT, 0};
          int pr;
          do {
            pr = poll(&p, 1, remainingMs(deadline));
          } while (pr < 0 && errno == EINTR);
          if (pr == 0) {
            errno = ETIMEDOUT;
            rc = -1;
          } else {
            int soerr = 0;
            socklen_t len = sizeof soerr;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
            errno = soerr;
            rc = soerr == 0 ? 0 : -1;
          }
        }
        if (rc != 0) {
          lastError = errnoText(errno);
          close(fd);
          continue;
        }
        fd_ = fd;
      }
      freeaddrinfo(res);
    }
    if (fd_ >= 0) break;
    if (Clock::now() + backoff >= deadline) {
      throw StoreError("cannot connect to the store " + endpoint() + " within " +
                           std::to_string(timeout.count()) + " ms: " + lastError,
                       true);
    }
    std::this_thread::sleep_for(backoff);
    if (backoff < std::chrono::milliseconds(200)) backoff *= 2;
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_storage ss;
  socklen_t sslen = sizeof ss;
  if (getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &sslen) == 0) {
    localAddress_ = addrText(reinterpret_cast<sockaddr*>(&ss));
  }
  if (!token.empty()) {
    std::vector<char> req{static_cast<char>(kAuth)};
    putBytes(req, token.data(), token.size());
    std::vector<char> reply;
    // What is left of the connect deadline, so that joining stays within `timeout`.
    request(req, &reply, deadline, "auth", timeout);
    if (reply.empty() || reply[0] != kOk) {
      throw StoreError("the store at " + endpoint() + " refused the token", false);
    }
  }
}

StoreClient::~StoreClient() {
  if (fd_ >= 0) close(fd_);
}

void StoreClient::waitFd(short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd_, events, 0};
    int pr = poll(&p, 1, remainingMs(deadline));
    if (pr > 0) return;
    if (pr == 0) {
      throw StoreError("store " + endpoint() + " did not answer '" + what_ + "' within " +
                           std::to_string(bound_.count()) + " ms",
                       true);
    }
    if (errno != EINTR) {
      throw StoreError(std::string("poll: ") + errnoText(errno), false);
    }
  }
}

void StoreClient::sendAll(const char* p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    ssize_t w = send(fd_, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= static_cast<size_t>(w);
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      waitFd(POLLOUT, deadline);
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else {
      throw StoreError("lost the connection to the store at " + endpoint() + " during '" + what_ + "': " +
                           errnoText(errno),
                       false);
    }
  }
}

void StoreClient::recvAll(char* p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    ssize_t r = recv(fd_, p, n, 0);
    if (r > 0) {
      p += r;
      n -= static_cast<size_t>(r);
    } else if (r == 0) {
      throw StoreError("the store at " + endpoint() + " closed the connection during '" + what_ + "'", false);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      waitFd(POLLIN, deadline);
    } else if (errno != EINTR) {
      throw StoreError("lost the connection to the store at " + endpoint() + " during '" + what_ + "': " +
                           errnoText(errno),
                       false);
    }
  }
}

void StoreClient::request(const std::vector<char>& payload, std::vector<char>* reply,
                          Clock::time_point deadline, const std::string& what,
                          std::chrono::milliseconds bound) {
  what_ = what;
  bound_ = bound;
  if (fd_ < 0) {
    throw StoreError("the connection to the store " + endpoint() + " is closed (a request timed out or failed before '" +
                         what + "')",
                     false);
  }
  if (payload.size() > kMaxFrame) throw StoreError("store request too large", false);
  std::vector<char> frame;
  frame.reserve(payload.size() + 4);
  putU32(frame, static_cast<uint32_t>(payload.size()));
  frame.insert(frame.end(), payload.begin(), payload.end());
  try {
    sendAll(frame.data(), frame.size(), deadline);
    char hdr[4];
    recvAll(hdr, 4, deadline);
    uint32_t len = getU32(hdr);
    if (len == 0 || len > kMaxFrame) {
      throw StoreError("malformed reply from the store at " + endpoint(), false);
    }
    reply->resize(len);
    recvAll(reply->data(), len, deadline);
  } catch (...) {
    // The stream is out of sync after a partial exchange: drop it.
    close(fd_);
    fd_ = -1;
    throw;
  }
  if ((*reply)[0] == kError) {
    std::string msg;
    if (reply->size() >= 5) {
      uint32_t n = getU32(reply->data() + 1);
      if (5 + static_cast<size_t>(n) <= reply->size()) msg.assign(reply->data() + 5, n);
    }
    throw StoreError("the store at " + endpoint() + " answered an error: " + msg, false);
  }
}

void StoreClient::set(const std::string& key, const std::vector<char>& value,
                      std::chrono::milliseconds timeout) {
  std::vector<char> req{static_cast<char>(kSet)};
  putBytes(req, key.data(), key.size());
  putBytes(req, value.data(), value.size());
  std::vector<char> reply;
  request(req, &reply, Clock::now() + timeout, "set " + key, timeout);
  if (reply[0] != kOk) throw StoreError("store SET " + key + " failed", false);
}

bool StoreClient::get(const std::string& key, std::vector<char>* value,
                      std::chrono::milliseconds timeout) {
  std::vector<char> req{static_cast<char>(kGet)};
  putBytes(req, key.data(), key.size());
  std::vector<char> reply;
  request(req, &reply, Clock::now() + timeout, "get " + key, timeout);
  if (reply[0] == kNotFound) return false;
  if (reply[0] != kOk || reply.size() < 5) throw StoreError("store GET " + key + " failed", false);
  uint32_t n = getU32(reply.data() + 1);
  if (5 + static_cast<size_t>(n) > reply.size()) {
    throw StoreError("malformed GET reply from the store", false);
  }
  value->assign(reply.data() + 5, reply.data() + 5 + n);
  return true;
}

bool StoreClient::wait(const std::vector<std::string>& keys,
                       std::chrono::milliseconds timeout) {
  std::vector<char> req{static_cast<char>(kWait)};
  putU32(req, static_cast<uint32_t>(keys.size()));
  for (const auto& k : keys) putBytes(req, k.data(), k.size());
  long long ms = timeout.count();
  if (ms < 0) ms = 0;
  if (ms > 0xffffffffLL) ms = 0xffffffffLL;
  putU32(req, static_cast<uint32_t>(ms));
  std::vector<char> reply;
  std::string what = ms == 0 ? "check" : "wait";
  for (size_t i = 0; i < keys.size() && what.size() < 160; i++) what += (i ? "," : " ") + keys[i];
  // The server answers TIMEOUT itself; allow it a grace period to do so.
  const auto bound = std::chrono::milliseconds(ms) + kWaitGrace;
  request(req, &reply, Clock::now() + bound, what, bound);
  if (reply[0] == kTimeout) return false;
  if (reply[0] != kOk) throw StoreError("store WAIT failed", false);
  return true;
}

int64_t StoreClient::add(const std::string& key, int64_t delta,
                         std::chrono::milliseconds timeout) {
  std::vector<char> req{static_cast<char>(kAdd)};
  putBytes(req, key.data(), key.size());
  putI64(req, delta);
  std::vector<char> reply;
  request(req, &reply, Clock::now() + timeout, "add " + key, timeout);
  if (reply[0] != kOk || reply.size() < 9) throw StoreError("store ADD " + key + " failed", false);
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u |= static_cast<uint64_t>(static_cast<uint8_t>(reply[1 + i])) << (8 * i);
  return static_cast<int64_t>(u);
}

}  // namespace bagua
