#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sluice/core/random.h"

namespace sluice {

// How the wait between two tries grows: initial, initial x multiplier, ... up to max. Each wait
// is then scaled by a factor drawn uniformly from [1 - jitter, 1 + jitter), so that many clients
// that failed together (an etcd that just came back, a backend that just died) do not all try
// again at the same moment.
struct BackoffOptions {
  absl::Duration initial = absl::Milliseconds(100);
  double multiplier = 2.0;
  absl::Duration max = absl::Seconds(2);
  double jitter = 0.2;  // 0: none
};

// InvalidArgument naming `owner` (e.g. "discovery retry backoff") and the bad field.
absl::Status ValidateBackoff(const BackoffOptions& options, absl::string_view owner);

// The waits of one streak of failures. Not thread-safe: one per loop or call. The jitter comes
// from the injected Random (which must be thread-safe if other threads share it); a null Random
// means no jitter whatever options.jitter says.
class Backoff {
 public:
  explicit Backoff(const BackoffOptions& options, Random* random = nullptr);

  // The wait before the next try; each call grows the following one.
  absl::Duration Next();
  // The streak ended (a try succeeded): the next wait is `initial` again.
  void Reset();
  // Waits handed out since the last Reset.
  int waits() const { return waits_; }

 private:
  const BackoffOptions options_;
  Random* const random_;
  absl::Duration next_;
  int waits_ = 0;
};

}  // namespace sluice
