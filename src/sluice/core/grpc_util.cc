#include "sluice/core/grpc_util.h"

#include <algorithm>

namespace sluice {

const char* ConnectivityStateName(grpc_connectivity_state state) {
  switch (state) {
    case GRPC_CHANNEL_IDLE:
      return "idle";
    case GRPC_CHANNEL_CONNECTING:
      return "connecting";
    case GRPC_CHANNEL_READY:
      return "ready";
    case GRPC_CHANNEL_TRANSIENT_FAILURE:
      return "transient_failure";
    case GRPC_CHANNEL_SHUTDOWN:
      return "shutdown";
  }
  return "unknown";
}

std::chrono::system_clock::time_point ToGrpcDeadline(absl::Time deadline, const Clock& clock) {
  if (deadline == absl::InfiniteFuture()) return std::chrono::system_clock::time_point::max();
  const absl::Duration remaining = std::max(deadline - clock.Now(), absl::ZeroDuration());
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(remaining);
}

}  // namespace sluice
