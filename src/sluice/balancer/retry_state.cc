#include "sluice/balancer/retry_state.h"

#include <algorithm>

namespace sluice {

const char* GiveUpReasonName(GiveUpReason reason) {
  switch (reason) {
    case GiveUpReason::kSucceeded:
      return "succeeded";
    case GiveUpReason::kNotRetryable:
      return "not retryable";
    case GiveUpReason::kNotResendable:
      return "request can no longer be resent";
    case GiveUpReason::kAttemptsUsed:
      return "max attempts reached";
    case GiveUpReason::kBudgetExhausted:
      return "retry budget exhausted";
    case GiveUpReason::kDeadlinePassed:
      return "deadline passed";
  }
  return "unknown";
}

RetryState::RetryState(RetryBudget& budget, const RetryPolicy& policy, bool idempotent,
                       absl::Time deadline)
    : budget_(budget),
      policy_(policy),
      idempotent_(idempotent),
      deadline_(deadline),
      transparent_backoff_(policy.transparent_backoff) {
  budget_.CallStarted();
}

absl::Time RetryState::StartAttempt(absl::Time now) {
  phase_ = Phase::kAttemptInFlight;
  ++attempts_;
  attempt_deadline_ = deadline_;
  if (idempotent_ && policy_.attempt_timeout != absl::InfiniteDuration()) {
    attempt_deadline_ = std::min(deadline_, now + policy_.attempt_timeout);
  }
  return attempt_deadline_;
}

RetryDecision RetryState::OnAttemptEnded(AttemptEnd end, absl::StatusCode code, absl::Time now,
                                         bool resendable) {
  if (phase_ == Phase::kFinished) return {.why = GiveUpReason::kNotResendable};
  phase_ = Phase::kBetweenAttempts;
  // The ended attempt's slot goes back first: the budget bounds retries in flight, and a
  // further retry asks for a slot of its own.
  if (holds_retry_slot_) {
    budget_.EndRetry();
    holds_retry_slot_ = false;
  }
  if (end == AttemptEnd::kAnswered && code == absl::StatusCode::kOk) {
    return GiveUp(GiveUpReason::kSucceeded);
  }
  if (end == AttemptEnd::kNeverReached) ++transparent_retries_;
  if (!resendable) return GiveUp(GiveUpReason::kNotResendable);
  if (now >= deadline_) return GiveUp(GiveUpReason::kDeadlinePassed);
  if (end == AttemptEnd::kNeverReached) return DecideTransparent(now);
  // The library never cancels an attempt itself (its deadline gives DEADLINE_EXCEEDED), so a
  // CANCELLED comes from the server, typically one that began shutting down as the call came.
  const bool retryable_code = end == AttemptEnd::kTimedOut ||
                              code == absl::StatusCode::kUnavailable ||
                              code == absl::StatusCode::kCancelled;
  if (!idempotent_ || !retryable_code) return GiveUp(GiveUpReason::kNotRetryable);
  if (counted_attempts() >= policy_.max_attempts) return GiveUp(GiveUpReason::kAttemptsUsed);
  if (!budget_.TryStartRetry()) return GiveUp(GiveUpReason::kBudgetExhausted);
  holds_retry_slot_ = true;
  return {.verdict = RetryDecision::Verdict::kRetryNow};
}

RetryDecision RetryState::DecideTransparent(absl::Time now) {
  if (transparent_retries_ <= policy_.immediate_transparent_retries) {
    return {.verdict = RetryDecision::Verdict::kRetryNow};
  }
  // Every candidate refused: wait a little longer each time, within the deadline. A call
  // without a deadline would wait forever, so it gives up here.
  const absl::Time retry_at = now + transparent_backoff_.Next();
  if (deadline_ == absl::InfiniteFuture() || retry_at >= deadline_) {
    return GiveUp(GiveUpReason::kDeadlinePassed);
  }
  return {.verdict = RetryDecision::Verdict::kRetryLater, .retry_at = retry_at};
}

RetryDecision RetryState::GiveUp(GiveUpReason why) {
  Finish();
  return {.verdict = RetryDecision::Verdict::kGiveUp, .why = why};
}

void RetryState::Finish() {
  if (phase_ == Phase::kFinished) return;
  phase_ = Phase::kFinished;
  if (holds_retry_slot_) {
    budget_.EndRetry();
    holds_retry_slot_ = false;
  }
  budget_.CallEnded();
}

}  // namespace sluice
