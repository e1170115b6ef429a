#pragma once

#include <grpc/grpc.h>

#include <condition_variable>
#include <memory>
#include <mutex>

#include "sluice/balancer/readiness.h"

namespace sluice::client {

// Adapts gRPC channel connectivity to the balancer's readiness interface: watches each
// Backend's channel and reports its state, keeping every endpoint connected (an idle channel is
// told to connect again). Connectivity changes arrive as callbacks on gRPC's own threads: a
// thread of ours waiting on a polling queue would also do the channels' socket I/O, competing
// with gRPC's threads (measured: ~9% of the CPU and a tenth fewer calls/s with 64 calls in
// flight). The handles watched must be client::Backend.
class ChannelConnectivityWatcher final : public ReadinessWatcher {
 public:
  ChannelConnectivityWatcher();
  // Waits for the watches in flight (each ends within a slice) and shuts the queue down.
  ~ChannelConnectivityWatcher() override;

  void Watch(const std::shared_ptr<EndpointHandle>& endpoint, ReadinessReporter& reporter) override;

 private:
  struct WatchTag;
  struct QueueShutdown : grpc_completion_queue_functor {
    ChannelConnectivityWatcher* watcher;
    static void Run(grpc_completion_queue_functor* functor, int ok);
  };

  void Arm(const std::shared_ptr<EndpointHandle>& endpoint, ReadinessReporter& reporter,
           grpc_connectivity_state last);
  void OnFired(const WatchTag& tag);

  QueueShutdown queue_shutdown_;
  grpc_completion_queue* queue_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t watches_in_flight_ = 0;  // guarded by mu_
  bool stopping_ = false;          // guarded by mu_
  bool queue_shut_down_ = false;   // guarded by mu_
};

}  // namespace sluice::client
