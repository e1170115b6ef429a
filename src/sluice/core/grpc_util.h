#pragma once

// The small gRPC helpers that the client library and the etcd client share. A library of its
// own (sluice_grpc_util) so that sluice_core itself stays free of gRPC.

#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "sluice/core/clock.h"
#include "sluice/core/transport_state.h"

namespace sluice {

TransportState ToTransportState(grpc_connectivity_state state);

// gRPC wants a wall-clock deadline; Sluice keeps its deadlines on the injected monotonic clock
// (whose absolute times lie decades from the wall clock's). Converts through the time left.
std::chrono::system_clock::time_point ToGrpcDeadline(absl::Time deadline, const Clock& clock);
// The same, with the injected clock's time already read by the caller.
std::chrono::system_clock::time_point ToGrpcDeadline(absl::Time deadline, absl::Time now);

// The two status types share their codes.
inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}
// "UNAVAILABLE", as gRPC's docs and tools spell the code; "CODE_n" for a number past the list.
std::string StatusCodeName(grpc::StatusCode code);
inline absl::StatusCode ToAbslCode(grpc::StatusCode code) {
  return static_cast<absl::StatusCode>(code);
}

}  // namespace sluice
