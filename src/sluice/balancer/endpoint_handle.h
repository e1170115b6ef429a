#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "sluice/balancer/endpoint_stats.h"
#include "sluice/core/endpoint.h"

namespace sluice {

// One endpoint as the balancer tracks it, without its transport: the endpoint, its statistics
// and the data-plane flags of outlier detection. Callers derive their own kind (the library's
// client::Backend adds the gRPC channel) and the EndpointManager hands theirs back in picks.
// Shared (shared_ptr) by the manager, the pickers' snapshots and the calls in flight on it.
class EndpointHandle {
 public:
  EndpointHandle(Endpoint endpoint, std::shared_ptr<EndpointStats> stats)
      : endpoint_(std::move(endpoint)), stats_(std::move(stats)) {}
  virtual ~EndpointHandle() = default;
  EndpointHandle(const EndpointHandle&) = delete;
  EndpointHandle& operator=(const EndpointHandle&) = delete;

  const Endpoint& endpoint() const { return endpoint_; }
  const std::string& address() const { return endpoint_.address; }
  EndpointStats& stats() const { return *stats_; }
  const std::shared_ptr<EndpointStats>& shared_stats() const { return stats_; }

  // Data plane: failures in a row, for outlier detection.
  std::atomic<int> consecutive_failures{0};
  std::atomic<bool> ejection_requested{false};
  // Set when the endpoint left the set (removed, or replaced by an update): whoever watches
  // its transport stops.
  std::atomic<bool> removed{false};

 private:
  const Endpoint endpoint_;
  const std::shared_ptr<EndpointStats> stats_;
};

}  // namespace sluice
