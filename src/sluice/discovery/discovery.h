#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <condition_variable>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/core/clock.h"
#include "sluice/core/endpoint.h"
#include "sluice/discovery/target.h"

namespace sluice::discovery {

// Gets every change of a service's endpoints: the complete new set and what changed.
// Called serially (never concurrently) from the discovery's own thread; it must not block long
// and must not destroy the Discovery.
using EndpointSetCallback =
    std::function<void(const EndpointSet& current, const EndpointSetDiff& diff)>;

struct DiscoveryOptions {
  Clock* clock = &SystemClock::Instance();
  // dns: how often names are resolved again.
  absl::Duration dns_refresh_interval = absl::Seconds(5);
  // etcd: per-call timeout, and the backoff between attempts while etcd is unreachable.
  absl::Duration etcd_call_timeout = absl::Seconds(2);
  absl::Duration retry_initial_backoff = absl::Milliseconds(100);
  absl::Duration retry_max_backoff = absl::Seconds(2);
  // etcd auth (optional).
  std::string etcd_username;
  std::string etcd_password;
};

// Turns a target into a live stream of complete EndpointSet snapshots. Sources report full
// sets only; this base class computes the diff and drops reports that change nothing. On a
// source error the last good set stays in force.
class Discovery {
 public:
  virtual ~Discovery() = default;

  // Starts delivering updates to `callback`. The first call carries the first set found
  // (possibly empty, for an etcd prefix with no keys). Call once.
  virtual void Start(EndpointSetCallback callback) = 0;
  // Stops the source; no callback runs after Stop() returns. Idempotent; the destructor calls it.
  virtual void Stop() = 0;

  // The last good set, and whether any set was reported yet.
  EndpointSet Current() const;
  bool HasReported() const;
  // Blocks until the first report or the timeout; true if a report came.
  bool WaitForFirstReport(absl::Duration timeout) const;

 protected:
  // Sources call this with each complete snapshot they read; serially, from one thread.
  void Publish(EndpointSet set);
  void SetCallback(EndpointSetCallback callback);
  void ClearCallback();

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable reported_cv_;
  EndpointSetCallback callback_;
  std::optional<EndpointSet> current_;
};

absl::StatusOr<std::unique_ptr<Discovery>> CreateDiscovery(const Target& target,
                                                           DiscoveryOptions options = {});
// ParseTarget + CreateDiscovery.
absl::StatusOr<std::unique_ptr<Discovery>> CreateDiscovery(absl::string_view target,
                                                           DiscoveryOptions options = {});

}  // namespace sluice::discovery
