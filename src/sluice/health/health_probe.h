#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/health/health_state.h"

namespace sluice::health {

// One-shot health checks (grpc.health.v1 Check), for tools such as `sluice ls --health`.
// Asks every address at once, over plaintext, and waits at most `timeout` for all answers.
// Each result is the state (kNoHealthService when Check is UNIMPLEMENTED, kServiceUnknown on
// NOT_FOUND), or the call's error (e.g. UNAVAILABLE: nothing listens there).
std::vector<absl::StatusOr<HealthState>> ProbeHealth(const std::vector<std::string>& addresses,
                                                     const std::string& service,
                                                     absl::Duration timeout);

}  // namespace sluice::health
