#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/core/clock.h"
#include "sluice/core/random.h"
#include "sluice/health/health_state.h"

namespace sluice::health {

// How one target checks its endpoints' health (grpc.health.v1.Health).
struct HealthCheckOptions {
  // Off: no stream is opened and endpoints report kNotChecked (pickable).
  bool enabled = true;
  // The service name asked about; "" asks about the server as a whole.
  std::string service;
  // Waits between attempts after a check stream fails, doubling from initial to max.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // How often Check is polled on servers whose Watch is UNIMPLEMENTED, and the timeout of each.
  absl::Duration poll_interval = absl::Seconds(1);
  absl::Duration check_timeout = absl::Seconds(1);
  // How long a server without any health service is left alone before it is asked again (it
  // may have been restarted with one).
  absl::Duration no_service_recheck = absl::Seconds(30);
  // Timestamps answers (last_answer_time) and decides when a stream lived long enough to reset
  // the backoff.
  Clock* clock = &SystemClock::Instance();
  // Jitter for the backoff; must be thread-safe (LockedRandom). Null: no jitter.
  Random* random = nullptr;
};

// InvalidArgument naming the option when one is out of range.
absl::Status ValidateHealthCheckOptions(const HealthCheckOptions& options);

// Called with every change of an endpoint's health state, on a gRPC callback thread, one call
// at a time per watcher. It must not destroy the watcher that calls it.
using HealthListener = std::function<void(HealthState)>;

// Watches one endpoint's health over a channel to it: one grpc.health.v1 Watch stream for as
// long as the watcher lives, falling back to polling Check when the server does not implement
// Watch, and to kNoHealthService when it implements neither. A broken stream is reopened after
// a backoff (the channel itself reconnects; the stream waits for it), and the state keeps its
// last answer meanwhile: a backend that said NOT_SERVING and then went away stays not pickable.
class HealthWatcher {
 public:
  // Starts watching at once. The listener is called for every change, starting from kPending
  // (not reported) to the first answer; with checks off it is called once with kNotChecked.
  static absl::StatusOr<std::unique_ptr<HealthWatcher>> Start(
      std::shared_ptr<grpc::Channel> channel, HealthCheckOptions options, HealthListener listener);
  // Cancels the stream or poll and waits for gRPC to hand it back: no listener call after this.
  ~HealthWatcher();

  HealthState state() const;
  // When the server last answered (the injected clock), or InfinitePast before any answer.
  absl::Time last_answer_time() const;

  class Impl;

 private:
  explicit HealthWatcher(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice::health
