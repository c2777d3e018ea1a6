// A blocking TCP client of the bagua rendezvous store (see
// packages/comm/src/store-protocol.ts for the wire protocol).
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace bagua {

// Thrown by StoreClient; `timeout` tells a deadline apart from other failures.
struct StoreError : std::runtime_error {
  StoreError(const std::string& msg, bool timeout)
      : std::runtime_error(msg), timeout(timeout) {}
  bool timeout;
};

// Every request is bounded: a store that accepts but never answers (a stray
// listener on the port, a stopped node 0) fails it with an error naming the
// store and the request. A wait gets its own timeout plus this grace, for the
// store to answer TIMEOUT itself (same as the TypeScript client).
constexpr std::chrono::milliseconds kWaitGrace{500};

class StoreClient {
 public:
  using Clock = std::chrono::steady_clock;

  // Connects (retrying refused connections until the deadline: the store may
  // start a moment after its clients) and authenticates when token is set.
  StoreClient(const std::string& host, int port, const std::string& token,
              std::chrono::milliseconds timeout);
  ~StoreClient();
  StoreClient(const StoreClient&) = delete;
  StoreClient& operator=(const StoreClient&) = delete;

  void set(const std::string& key, const std::vector<char>& value,
           std::chrono::milliseconds timeout);
  // Returns false when the key does not exist.
  bool get(const std::string& key, std::vector<char>* value,
           std::chrono::milliseconds timeout);
  // Returns false when some key is still missing after `timeout`.
  bool wait(const std::vector<std::string>& keys,
            std::chrono::milliseconds timeout);
  int64_t add(const std::string& key, int64_t delta,
              std::chrono::milliseconds timeout);

  // The local IP address of the connection ("127.0.0.1", "10.0.0.5", "::1").
  const std::string& localAddress() const { return localAddress_; }
  std::string endpoint() const;

 private:
  // `what` names the request in errors ("get bagua/x"); `bound` is the time
  // it was given, for the message.
  void request(const std::vector<char>& payload, std::vector<char>* reply,
               Clock::time_point deadline, const std::string& what,
               std::chrono::milliseconds bound);
  void sendAll(const char* p, size_t n, Clock::time_point deadline);
  void recvAll(char* p, size_t n, Clock::time_point deadline);
  void waitFd(short events, Clock::time_point deadline);

  std::string host_;
  int port_;
  int fd_ = -1;
  std::string localAddress_;
  std::string what_;  // the request in flight, for errors
  std::chrono::milliseconds bound_{0};
};

}  // namespace bagua
