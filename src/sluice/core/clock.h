#pragma once

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sluice {

// The one source of time for anything that decides by time (timeouts, backoff, EWMA decay,
// ejection). Monotonic: only differences between two Now() values mean anything.
// Thread-safe: any thread may call Now().
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// The real monotonic clock (steady_clock), as an absl::Time offset from the Unix epoch.
class SystemClock final : public Clock {
 public:
  // FromUnixNanos is inline; UnixEpoch() + Duration calls into libabsl_time on every read.
  absl::Time Now() const override {
    return absl::FromUnixNanos(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
  }
  // A process-wide instance, for callers that were not handed a clock (main functions).
  static SystemClock& Instance() {
    static SystemClock clock;
    return clock;
  }
};

// A clock tests move by hand.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch() + absl::Hours(1))
      : nanos_(absl::ToUnixNanos(start)) {}
  absl::Time Now() const override {
    return absl::FromUnixNanos(nanos_.load(std::memory_order_relaxed));
  }
  void Advance(absl::Duration d) {
    nanos_.fetch_add(absl::ToInt64Nanoseconds(d), std::memory_order_relaxed);
  }

 private:
  std::atomic<int64_t> nanos_;
};

}  // namespace sluice
