#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/client/balancer.h"
#include "sluice/proxy/metrics.h"
#include "sluice/proxy/proxy.h"
#include "sluice/proxy/router.h"

namespace sluice::proxy {

// One event-loop thread: its own listener (SO_REUSEPORT), client connections, backend
// connections and calls. Nothing in it is shared with other workers except the router's
// balancers (their pickers are lock-free) and the metrics (atomics).
class Worker {
 public:
  Worker(int index, const ProxyOptions& options, const Router* router, ProxyMetrics* metrics);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Binds this worker's listener on ip:port (port 0: a free one) and returns the bound port.
  // Called before Run, from the control thread.
  absl::StatusOr<int> Listen(const std::string& ip, int port);
  // The loop; returns after BeginShutdown once every client connection has closed.
  void Run();
  // Thread-safe: stop accepting, GOAWAY every client, close what is left at `deadline`.
  void BeginShutdown(absl::Time deadline);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::proxy
