#include "async.h"

#include "bagua_gloo.h"
#include "errors.h"

namespace bgloo {

AsyncQueue::~AsyncQueue() { stop(); }

int64_t AsyncQueue::submit(std::function<int()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return -1;
  const int64_t ticket = next_++;
  auto job = std::make_shared<Job>();
  job->fn = std::move(fn);
  jobs_.emplace(ticket, job);
  queue_.emplace_back(ticket, std::move(job));
  // Started lazily: groups that never overlap a collective keep no thread.
  if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
  cv_.notify_all();
  return ticket;
}

void AsyncQueue::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    auto job = queue_.front().second;
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    Result r;
    try {
      r.status = job->fn();
    } catch (...) {  // the C API's functions do not throw; this is a net
      r.status = fail(BAGUA_GLOO_ERR_INTERNAL, "async collective: unknown exception");
    }
    if (r.status != BAGUA_GLOO_OK) {
      // This thread's last error, for the thread that waits.
      r.message = lastError();
      r.ranks = lastErrorRanks();
    }
    lock.lock();
    job->result = std::move(r);
    job->done = true;
    busy_ = false;
    cv_.notify_all();
  }
}

int AsyncQueue::test(int64_t ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(ticket);
  if (it == jobs_.end()) return -1;
  return it->second->done ? 1 : 0;
}

bool AsyncQueue::wait(int64_t ticket, std::chrono::milliseconds timeout, Result* out, bool* known) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = jobs_.find(ticket);
  *known = it != jobs_.end();
  if (!*known) return false;
  auto job = it->second;
  if (!cv_.wait_for(lock, timeout, [&] { return job->done; })) return false;
  *out = job->result;
  jobs_.erase(ticket);
  return true;
}

bool AsyncQueue::drain(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return queue_.empty() && !busy_; });
}

void AsyncQueue::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& [ticket, job] : queue_) {
      job->result.status = BAGUA_GLOO_ERR_INVALID;
      job->result.message = "the process group was destroyed before this collective ran";
      job->done = true;
    }
    queue_.clear();
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace bgloo
