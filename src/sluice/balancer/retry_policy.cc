#include "sluice/balancer/retry_policy.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sluice {

absl::Status ValidateRetryPolicy(const RetryPolicy& policy) {
  if (policy.max_attempts < 1) {
    return absl::InvalidArgumentError("retry: 'max_attempts' must be at least 1");
  }
  if (policy.attempt_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "retry: 'attempt_timeout' must be positive (infinite: no per-attempt limit)");
  }
  if (!(policy.budget_ratio >= 0.0) || policy.budget_min < 0) {
    return absl::InvalidArgumentError(absl::StrCat("retry: budget ratio (", policy.budget_ratio,
                                                   ") and minimum (", policy.budget_min,
                                                   ") must not be negative"));
  }
  if (policy.immediate_transparent_retries < 0) {
    return absl::InvalidArgumentError("retry: 'immediate_transparent_retries' must be >= 0");
  }
  if (absl::Status backoff = ValidateBackoff(policy.transparent_backoff,
                                             "retry: transparent "
                                             "backoff");
      !backoff.ok()) {
    return backoff;
  }
  for (const auto& method : policy.idempotent_methods) {
    if (!absl::StartsWith(method, "/") || method.find('/', 1) == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("retry: idempotent method '", method,
                       "' must look like /package.Service/Method or /package.Service/*"));
    }
  }
  return absl::OkStatus();
}

bool IsIdempotentMethod(const RetryPolicy& policy, absl::string_view method) {
  for (const auto& pattern : policy.idempotent_methods) {
    if (pattern == method) return true;
    if (absl::EndsWith(pattern, "/*") &&
        absl::StartsWith(method, absl::string_view(pattern).substr(0, pattern.size() - 1))) {
      return true;
    }
  }
  return false;
}

}  // namespace sluice
