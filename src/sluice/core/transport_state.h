#pragma once

namespace sluice {

// A transport's state, named as gRPC names a channel's connectivity (gRPC-free, so that the
// balancer's endpoint manager and the proxy can use it too).
enum class TransportState { kIdle, kConnecting, kReady, kTransientFailure, kShutdown };

// "idle", "connecting", "ready", "transient_failure", "shutdown".
inline const char* TransportStateName(TransportState state) {
  switch (state) {
    case TransportState::kIdle:
      return "idle";
    case TransportState::kConnecting:
      return "connecting";
    case TransportState::kReady:
      return "ready";
    case TransportState::kTransientFailure:
      return "transient_failure";
    case TransportState::kShutdown:
      return "shutdown";
  }
  return "unknown";
}

}  // namespace sluice
