// The communication thread of a context (bagua_gloo_*_start / test / wait):
// collectives started asynchronously run there, one at a time, in the order
// they were started, so every rank issues the group's calls in the same
// order while the caller's thread goes on computing. Synchronous calls on the
// caller's thread first drain this queue (the group's calls stay in one
// order, and gloo's context is never used by two threads at once).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace bgloo {

class AsyncQueue {
 public:
  // What a job leaves for wait(): the status of the C API's call and, on
  // failure, its message and the group ranks at fault (the comm thread's
  // last error, carried over to the thread that waits).
  struct Result {
    int status = 0;
    std::string message;
    std::vector<int> ranks;
  };

  AsyncQueue() = default;
  AsyncQueue(const AsyncQueue&) = delete;
  AsyncQueue& operator=(const AsyncQueue&) = delete;
  // Runs or cancels what is queued and joins the thread (stop()).
  ~AsyncQueue();

  // Queues fn (a call of the C API's synchronous path, returning its status)
  // and returns its ticket (> 0). The thread starts with the first job.
  int64_t submit(std::function<int()> fn);

  // 1 when the job has finished, 0 while queued or running, -1 for an
  // unknown ticket (never started, or already waited for).
  int test(int64_t ticket);

  // Blocks until the job finishes or `timeout` passes. Returns true and its
  // result (forgetting the ticket) when it finished; false on timeout (the
  // job stays known: wait again, or stop() runs it out).
  bool wait(int64_t ticket, std::chrono::milliseconds timeout, Result* out, bool* known);

  // Blocks until nothing is queued or running, or `timeout` passes (false).
  bool drain(std::chrono::milliseconds timeout);

  // Lets the running job finish, fails the queued ones without running them
  // (their buffers are never touched after this returns) and joins the thread.
  void stop();

 private:
  struct Job {
    std::function<int()> fn;
    Result result;
    bool done = false;
  };

  void loop();

  std::mutex mu_;
  std::condition_variable cv_;  // signalled on every change (new job, job done, stop)
  std::deque<std::pair<int64_t, std::shared_ptr<Job>>> queue_;
  std::unordered_map<int64_t, std::shared_ptr<Job>> jobs_;  // started, not yet waited for
  bool busy_ = false;
  bool stopping_ = false;
  int64_t next_ = 1;
  std::thread thread_;
};

}  // namespace bgloo
