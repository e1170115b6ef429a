#pragma once

#include <algorithm>

#include "absl/time/time.h"
#include "sluice/core/random.h"

namespace sluice {

// Exponential backoff between attempts (doubling from `initial` up to `max`), with optional
// jitter: each wait is scaled by a factor in [0.8, 1.2) drawn from `random`, so many clients
// retrying against one server that just came back do not arrive together. Not thread-safe.
class Backoff {
 public:
  Backoff(absl::Duration initial, absl::Duration max, Random* random)
      : initial_(initial), max_(std::max(initial, max)), random_(random), next_(initial) {}

  absl::Duration Next() {
    absl::Duration wait = next_;
    next_ = std::min(next_ * 2, max_);
    if (random_ != nullptr) wait = wait * (0.8 + 0.4 * random_->UniformDouble());
    return wait;
  }
  void Reset() { next_ = initial_; }

 private:
  const absl::Duration initial_;
  const absl::Duration max_;
  Random* const random_;
  absl::Duration next_;
};

}  // namespace sluice
