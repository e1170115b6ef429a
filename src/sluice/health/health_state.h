#pragma once

#include "absl/strings/string_view.h"

namespace sluice::health {

// What an endpoint's grpc.health.v1 service last said about the checked service name.
enum class HealthState {
  // No answer yet: the check stream has not reached the backend. Not pickable, as in gRPC (a
  // subchannel with health checking is not READY before its first answer).
  kPending,
  kServing,
  kNotServing,
  // The server does not know the service name that was checked.
  kServiceUnknown,
  // The server answered with the protocol's UNKNOWN status.
  kUnknown,
  // The server has no health service (Watch and Check are UNIMPLEMENTED): counts as healthy,
  // as in gRPC, so backends that never heard of health checking keep working.
  kNoHealthService,
  // Checking is turned off for this target: counts as healthy.
  kNotChecked,
};

// Whether a balancer may send calls to an endpoint in this state.
constexpr bool IsPickable(HealthState state) {
  return state == HealthState::kServing || state == HealthState::kNoHealthService ||
         state == HealthState::kNotChecked;
}

// Lower-case names for logs, `sluice ls`, /backends and /metrics labels: "serving",
// "not_serving", "service_unknown", "unknown", "no_health_service", "not_checked", "pending".
absl::string_view HealthStateName(HealthState state);

}  // namespace sluice::health
