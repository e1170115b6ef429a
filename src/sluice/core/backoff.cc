#include "sluice/core/backoff.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sluice {

absl::Status ValidateBackoff(const BackoffOptions& options, absl::string_view owner) {
  if (options.initial <= absl::ZeroDuration() || options.max < options.initial) {
    return absl::InvalidArgumentError(absl::StrCat(
        owner, ": initial (", absl::FormatDuration(options.initial),
        ") must be positive and not above max (", absl::FormatDuration(options.max), ")"));
  }
  if (!(options.multiplier >= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(owner, ": multiplier (", options.multiplier, ") must be at least 1"));
  }
  if (!(options.jitter >= 0.0 && options.jitter < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(owner, ": jitter (", options.jitter, ") must be in [0, 1)"));
  }
  return absl::OkStatus();
}

Backoff::Backoff(const BackoffOptions& options, Random* random)
    : options_(options), random_(random), next_(options.initial) {}

absl::Duration Backoff::Next() {
  absl::Duration wait = next_;
  next_ = std::min(next_ * options_.multiplier, std::max(options_.initial, options_.max));
  ++waits_;
  if (random_ != nullptr && options_.jitter > 0) {
    wait = wait * (1.0 - options_.jitter + 2.0 * options_.jitter * random_->UniformDouble());
  }
  return wait;
}

void Backoff::Reset() {
  next_ = options_.initial;
  waits_ = 0;
}

}  // namespace sluice
