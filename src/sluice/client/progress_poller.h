#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace sluice::client {

// gRPC (epoll1, as Debian builds it) makes socket progress only while some thread polls: one
// inside a call, one of the callback API's threads, or its 5 s backup poller. While the
// balancer waits for connections (endpoints connecting, picks waiting for a ready endpoint)
// nobody may be polling, so this thread polls then, and only then: a poller that always runs
// competes with gRPC's own threads for the same sockets (measured: about a tenth fewer
// calls/s with 64 calls in flight). SLUICE_ALWAYS_POLL in the environment makes it always run.
class ProgressPoller {
 public:
  ProgressPoller();
  ~ProgressPoller();

  // A pick starts (+1) or stops (-1) waiting for an endpoint.
  void Demand(int delta);
  // How many endpoints are not connected yet.
  void SetNotReady(size_t count);

 private:
  bool Needed() const;
  void Run();

  const bool always_;
  std::atomic<int> demand_{0};
  std::atomic<size_t> not_ready_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stopping_{false};
  grpc::CompletionQueue cq_;
  std::thread thread_;
};

}  // namespace sluice::client
