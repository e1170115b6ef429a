#include "sluice/health/health_state.h"

namespace sluice::health {

absl::string_view HealthStateName(HealthState state) {
  switch (state) {
    case HealthState::kPending:
      return "pending";
    case HealthState::kServing:
      return "serving";
    case HealthState::kNotServing:
      return "not_serving";
    case HealthState::kServiceUnknown:
      return "service_unknown";
    case HealthState::kUnknown:
      return "unknown";
    case HealthState::kNoHealthService:
      return "no_health_service";
    case HealthState::kNotChecked:
      return "not_checked";
  }
  return "invalid";
}

}  // namespace sluice::health
