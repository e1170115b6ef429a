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
//
// gRPC cannot cancel a connectivity watch: each ends at a state change or its deadline. The
// watches therefore share a WatchQueue with the watcher, which outlives both: destroying the
// watcher waits only for callbacks running at that moment, and watches that end later find it
// stopped and do nothing. The last one out shuts the completion queue down.
class ChannelConnectivityWatcher final : public ReadinessWatcher {
 public:
  ChannelConnectivityWatcher();
  // Stops reporting; returns once no callback is reporting any more.
  ~ChannelConnectivityWatcher() override;

  void Watch(const std::shared_ptr<EndpointHandle>& endpoint, ReadinessReporter& reporter) override;

 private:
  struct WatchQueue;
  struct WatchTag;

  std::shared_ptr<WatchQueue> queue_;
};

}  // namespace sluice::client
