#pragma once

#include <memory>

#include "sluice/balancer/endpoint_handle.h"
#include "sluice/core/transport_state.h"

namespace sluice {

// Whether an endpoint can take calls now, from what its watchers see. An endpoint is pickable
// when its transport is ready and no health check says otherwise (and outlier detection has not
// ejected it). Each input has its own watcher: the library adapts gRPC channel connectivity,
// a grpc.health.v1 watcher reports health, the proxy can report its own connection pool.

// What a health check says; kUnwatched when nobody checks (then only the transport counts),
// kPending while the check has not answered yet (not pickable, but on its way).
enum class HealthState { kUnwatched, kPending, kServing, kNotServing };

inline bool IsPickable(TransportState transport, HealthState health) {
  return transport == TransportState::kReady &&
         (health == HealthState::kUnwatched || health == HealthState::kServing);
}

// Where watchers report. Thread-safe: watchers report from their own threads; reports about an
// endpoint that has left the set (handle->removed) are ignored.
class ReadinessReporter {
 public:
  virtual ~ReadinessReporter() = default;
  virtual void ReportTransport(const std::shared_ptr<EndpointHandle>& endpoint,
                               TransportState state) = 0;
  virtual void ReportHealth(const std::shared_ptr<EndpointHandle>& endpoint, HealthState state) = 0;
};

// One input of readiness. The balancer calls Watch for every endpoint that joins the set (and
// for the new handle of an updated one); the watcher reports until handle->removed is set, then
// lets go of it. Watch must not block.
class ReadinessWatcher {
 public:
  virtual ~ReadinessWatcher() = default;
  virtual void Watch(const std::shared_ptr<EndpointHandle>& endpoint,
                     ReadinessReporter& reporter) = 0;
  // `reporter` is going away: no report to it may start after this returns, nor be under way.
  // Watchers the balancer owns outlive no reporter and need not override it.
  virtual void Unwatch(ReadinessReporter& reporter) { (void)reporter; }
};

}  // namespace sluice
