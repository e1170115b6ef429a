#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sluice/core/backoff.h"

namespace sluice {

// When a failed call is sent again, for the client library and `sluice proxy` alike.
struct RetryPolicy {
  // Methods that may be retried on UNAVAILABLE even after they reached a backend:
  // "/package.Service/Method", or "/package.Service/*" for every method of a service.
  // Calls that never reached a backend are retried whatever the method.
  std::vector<std::string> idempotent_methods;
  // Attempts per call that reached a backend, the first included.
  int max_attempts = 3;
  // Retries in flight are bounded by budget_ratio x calls in flight + budget_min, so a sick
  // service is not hit by a retry storm. The floor is 10, not Envoy's 3: a backend killed
  // under load fails every call stuck on it at once, and with few callers that is all of them
  // (round robin sends each caller on to the dead backend while its calls hang); 3 left the
  // fourth of four callers' calls failed.
  double budget_ratio = 0.2;
  int budget_min = 10;
  // Each attempt of an idempotent method gets at most this long (within the call's deadline);
  // when it runs out, the attempt counts as a failure of its endpoint and the call is retried
  // elsewhere. Catches a backend that accepts calls but never answers (paused, wedged), which
  // no status code reveals. Infinite: an attempt may use the whole deadline.
  absl::Duration attempt_timeout = absl::InfiniteDuration();
  // Attempts that never reached a backend (refused connection or stream) count neither against
  // max_attempts nor against the budget, as in gRPC: a backend killed moments ago stays
  // registered until its lease expires, and refusals must not use up the calls that try it.
  // This many are retried at once; after that every candidate looks down, so the call pauses
  // (growing by transparent_backoff) and tries again until its deadline.
  int immediate_transparent_retries = 5;
  BackoffOptions transparent_backoff{.initial = absl::Milliseconds(10),
                                     .multiplier = 2.0,
                                     .max = absl::Milliseconds(500),
                                     .jitter = 0.0};
};

// InvalidArgument naming the bad field and what it must be.
absl::Status ValidateRetryPolicy(const RetryPolicy& policy);

// True if `method` ("/package.Service/Method") matches one of policy.idempotent_methods.
bool IsIdempotentMethod(const RetryPolicy& policy, absl::string_view method);

}  // namespace sluice
