#pragma once

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "sluice/balancer/retry_budget.h"
#include "sluice/balancer/retry_policy.h"
#include "sluice/core/backoff.h"

namespace sluice {

// How one attempt ended, as far as retrying is concerned.
enum class AttemptEnd {
  kAnswered,      // the backend answered with a status (OK or not)
  kNeverReached,  // the backend never saw the call: refused connection or stream
  kTimedOut,      // no answer within the policy's attempt_timeout
};

// Why a call is not sent again.
enum class GiveUpReason {
  kSucceeded,        // the attempt answered OK
  kNotRetryable,     // a status no retry can change, or a method not marked idempotent
  kNotResendable,    // the caller can no longer resend the request (answer started, client gone)
  kAttemptsUsed,     // max_attempts attempts reached a backend
  kBudgetExhausted,  // the service's retry budget has no free slot
  kDeadlinePassed,   // the call's deadline has passed, or would before a paused retry starts
};
const char* GiveUpReasonName(GiveUpReason reason);

struct RetryDecision {
  enum class Verdict { kRetryNow, kRetryLater, kGiveUp };
  Verdict verdict = Verdict::kGiveUp;
  absl::Time retry_at = absl::InfinitePast();      // kRetryLater: when the next attempt may start
  GiveUpReason why = GiveUpReason::kNotRetryable;  // kGiveUp
  bool retry() const { return verdict != Verdict::kGiveUp; }
};

// The retry state of one call across its attempts: the one place that decides whether a failed
// attempt is sent again, for the library's blocking, async and streaming calls and for the
// proxy. Counts the call in the service's RetryBudget for its whole life, and a granted retry
// holds a budget slot until that retry's attempt ends.
//
// Not thread-safe: one call's attempts follow one another, and whoever runs the call (a caller's
// thread, gRPC's callbacks, a proxy worker's event loop) drives it. The budget is shared and
// atomic. Times come from the caller's injected clock.
class RetryState {
 public:
  enum class Phase { kBetweenAttempts, kAttemptInFlight, kFinished };

  // `budget` and `policy` must outlive the state. `deadline` is the call's (InfiniteFuture:
  // none).
  RetryState(RetryBudget& budget, const RetryPolicy& policy, bool idempotent, absl::Time deadline);
  RetryState(const RetryState&) = delete;
  RetryState& operator=(const RetryState&) = delete;
  ~RetryState() { Finish(); }

  // An attempt starts now; returns its deadline: the call's, or sooner by attempt_timeout for
  // idempotent methods (cutting a non-idempotent call short could not be retried anyway).
  absl::Time StartAttempt(absl::Time now);

  // Whether a DEADLINE_EXCEEDED attempt ran out of attempt_timeout rather than the call's own
  // deadline (for callers whose transport reports both the same way, like gRPC).
  bool IsAttemptTimeout(absl::StatusCode code) const {
    return code == absl::StatusCode::kDeadlineExceeded && attempt_deadline_ < deadline_;
  }

  // The attempt in flight ended with `code`. Releases the budget slot it held, then decides.
  // `resendable`: the caller could still send the whole request again. On kGiveUp the state is
  // finished (see Finish); on a retry the caller starts the next attempt (StartAttempt), at
  // once or at retry_at.
  RetryDecision OnAttemptEnded(AttemptEnd end, absl::StatusCode code, absl::Time now,
                               bool resendable = true);

  // The call is over (given up, or a granted retry never got to start: no endpoint, client
  // gone): releases any budget slot and the call's place in the budget. Idempotent.
  void Finish();

  Phase phase() const { return phase_; }
  bool idempotent() const { return idempotent_; }
  absl::Time deadline() const { return deadline_; }
  // Of the attempt in flight, or the last one.
  absl::Time attempt_deadline() const { return attempt_deadline_; }
  // Attempts started, transparent ones included.
  int attempts() const { return attempts_; }
  int transparent_retries() const { return transparent_retries_; }
  // Attempts that reached a backend: what max_attempts limits.
  int counted_attempts() const { return attempts_ - transparent_retries_; }
  bool holds_retry_slot() const { return holds_retry_slot_; }

 private:
  RetryDecision GiveUp(GiveUpReason why);
  RetryDecision DecideTransparent(absl::Time now);

  RetryBudget& budget_;
  const RetryPolicy& policy_;
  const bool idempotent_;
  const absl::Time deadline_;
  Phase phase_ = Phase::kBetweenAttempts;
  absl::Time attempt_deadline_ = absl::InfiniteFuture();
  int attempts_ = 0;
  int transparent_retries_ = 0;
  bool holds_retry_slot_ = false;
  // Pauses between transparent retries once the immediate ones are used up.
  Backoff transparent_backoff_;
};

}  // namespace sluice
