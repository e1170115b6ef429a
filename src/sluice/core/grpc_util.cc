#include "sluice/core/grpc_util.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sluice {

TransportState ToTransportState(grpc_connectivity_state state) {
  switch (state) {
    case GRPC_CHANNEL_IDLE:
      return TransportState::kIdle;
    case GRPC_CHANNEL_CONNECTING:
      return TransportState::kConnecting;
    case GRPC_CHANNEL_READY:
      return TransportState::kReady;
    case GRPC_CHANNEL_TRANSIENT_FAILURE:
      return TransportState::kTransientFailure;
    case GRPC_CHANNEL_SHUTDOWN:
      return TransportState::kShutdown;
  }
  return TransportState::kShutdown;
}

std::string StatusCodeName(grpc::StatusCode code) {
  std::string name = absl::StatusCodeToString(ToAbslCode(code));
  if (name.empty()) return absl::StrCat("CODE_", static_cast<int>(code));
  return name;
}

std::chrono::system_clock::time_point ToGrpcDeadline(absl::Time deadline, const Clock& clock) {
  if (deadline == absl::InfiniteFuture()) return std::chrono::system_clock::time_point::max();
  return ToGrpcDeadline(deadline, clock.Now());
}

std::chrono::system_clock::time_point ToGrpcDeadline(absl::Time deadline, absl::Time now) {
  if (deadline == absl::InfiniteFuture()) return std::chrono::system_clock::time_point::max();
  const absl::Duration remaining = std::max(deadline - now, absl::ZeroDuration());
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(remaining);
}

}  // namespace sluice
