#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/core/clock.h"
#include "sluice/core/endpoint.h"
#include "sluice/core/random.h"
#include "sluice/discovery/target.h"
#include "sluice/etcd/etcd_client.h"

namespace sluice::discovery {

// Gets every change of a service's endpoints: the complete new set and what changed.
// Called serially (never concurrently) from the discovery's own thread (a static source: from
// Start()); it must not block long and must not call Stop() or destroy the Discovery.
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
  // Optional jitter for the backoff (each wait is scaled by a factor in [0.8, 1.2)); must be
  // thread-safe (e.g. LockedRandom) if shared. Null: no jitter.
  Random* random = nullptr;
  // etcd auth (optional).
  std::string etcd_username;
  std::string etcd_password;
  // TLS to etcd (optional): CA, client certificate for mTLS.
  etcd::EtcdTlsOptions etcd_tls;
};

// Turns a target into a live stream of complete EndpointSet snapshots. Sources report full
// sets only; this base class computes the diff and drops reports that change nothing. On a
// source error the last good set stays in force.
class Discovery {
 public:
  virtual ~Discovery() = default;

  // Starts delivering updates to `callback` (may be empty: then only Current() is kept up to
  // date). The first call carries the first set found (possibly empty, for an etcd prefix with
  // no keys). Call once. A static source reports inside Start(), on the caller's thread; dns
  // and etcd sources report from their own thread.
  virtual void Start(EndpointSetCallback callback) = 0;
  // Stops the source; no callback runs after Stop() returns. Idempotent; the destructor calls it.
  // Must not be called from the callback. May wait for one etcd call / DNS lookup in flight.
  virtual void Stop() = 0;

  // The last good set (empty before the first report).
  EndpointSet Current() const;
  // Whether the first report was delivered (its callback has returned).
  bool HasReported() const;
  // Blocks until the first report was delivered or the timeout; true if it was.
  bool WaitForFirstReport(absl::Duration timeout) const;
  // Why the source's latest attempt failed (etcd unreachable, DNS lookup failed, ...), or OK
  // once an attempt succeeded again. For diagnostics: the last good set stays in force anyway.
  absl::Status LastError() const;

 protected:
  // Sources call this with each complete snapshot they read; serially. It clears LastError().
  void Publish(EndpointSet set);
  // Sources call this when an attempt failed; the set is left as it is.
  void ReportError(absl::Status status);
  void SetCallback(EndpointSetCallback callback);
  // Returns once no callback is running; no callback runs afterwards.
  void ClearCallback();

 private:
  // Held while a callback runs (and while a report is computed), so reports are delivered in
  // order and ClearCallback() can wait for a running callback to finish.
  std::mutex callback_mu_;
  EndpointSetCallback callback_;  // guarded by callback_mu_
  mutable std::mutex mu_;         // guards the fields below; never held during a callback
  mutable std::condition_variable reported_cv_;
  std::optional<EndpointSet> current_;
  bool first_delivered_ = false;
  absl::Status last_error_;
};

absl::StatusOr<std::unique_ptr<Discovery>> CreateDiscovery(const Target& target,
                                                           DiscoveryOptions options = {});
// ParseTarget + CreateDiscovery.
absl::StatusOr<std::unique_ptr<Discovery>> CreateDiscovery(absl::string_view target,
                                                           DiscoveryOptions options = {});

}  // namespace sluice::discovery
