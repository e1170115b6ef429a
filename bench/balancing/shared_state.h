#pragma once

// The state the simulated backends share with the benchmark's load drivers through one
// memory-mapped file: the scenario's start and each backend's true queue length, which only the
// oracle arm reads (a real balancer never sees it).

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace sluice::bench {

inline constexpr int kMaxSimulatedBackends = 16;

struct SharedState {
  // steady_clock nanoseconds (CLOCK_MONOTONIC, the same in every process) at which scenario time
  // 0 begins; 0 until a load driver sets it.
  std::atomic<int64_t> epoch_ns;
  // Calls in service plus calls waiting, per backend.
  std::atomic<int32_t> queue_length[kMaxSimulatedBackends];
  // Calls answered (any status), per backend.
  std::atomic<int64_t> answered[kMaxSimulatedBackends];
  // Calls that reached each backend, and calls the oracle arm's drivers sent to it: their
  // difference is what is still on the way, which the oracle counts as queued already (without
  // it, a burst of picks all see the same short queue before any of them arrives).
  std::atomic<int64_t> arrived[kMaxSimulatedBackends];
  std::atomic<int64_t> dispatched[kMaxSimulatedBackends];
};
static_assert(std::atomic<int64_t>::is_always_lock_free &&
                  std::atomic<int32_t>::is_always_lock_free,
              "the shared state must be lock-free to be shared between processes");

// Maps the file at `path`, creating and zeroing it when `create`. The mapping lives as long as
// the process.
absl::StatusOr<SharedState*> MapSharedState(const std::string& path, bool create);

// steady_clock now, in nanoseconds.
int64_t MonotonicNanos();

}  // namespace sluice::bench
