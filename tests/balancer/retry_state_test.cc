#include "sluice/balancer/retry_state.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "sluice/core/clock.h"

namespace sluice {
namespace {

using Verdict = RetryDecision::Verdict;
constexpr auto kUnavailable = absl::StatusCode::kUnavailable;

RetryPolicy Policy(int max_attempts = 3, double ratio = 0.2, int min = 10) {
  RetryPolicy policy;
  policy.idempotent_methods = {"/Greeter/*"};
  policy.max_attempts = max_attempts;
  policy.budget_ratio = ratio;
  policy.budget_min = min;
  return policy;
}

TEST(RetryBudgetTest, BoundsRetriesInFlightByRatioOfCallsPlusMin) {
  RetryBudget budget(0.2, 1);
  EXPECT_EQ(budget.limit(), 1);
  for (int i = 0; i < 10; ++i) budget.CallStarted();
  EXPECT_EQ(budget.limit(), 3);  // 0.2 x 10 + 1
  EXPECT_TRUE(budget.TryStartRetry());
  EXPECT_TRUE(budget.TryStartRetry());
  EXPECT_TRUE(budget.TryStartRetry());
  EXPECT_FALSE(budget.TryStartRetry());
  budget.EndRetry();
  EXPECT_TRUE(budget.TryStartRetry());
  EXPECT_EQ(budget.retries_in_flight(), 3);
}

TEST(RetryBudgetTest, ManyThreadsNeverExceedTheLimit) {
  RetryBudget budget(0.0, 8);
  std::atomic<int64_t> peak{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        if (!budget.TryStartRetry()) continue;
        int64_t now = budget.retries_in_flight();
        int64_t seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        budget.EndRetry();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(peak.load(), 8);
  EXPECT_EQ(budget.retries_in_flight(), 0);
}

TEST(RetryStateTest, CountsTheCallInTheBudgetForItsWholeLife) {
  RetryBudget budget(0.2, 10);
  const RetryPolicy policy = Policy();
  FakeClock clock;
  {
    RetryState state(budget, policy, true, clock.Now() + absl::Seconds(1));
    EXPECT_EQ(budget.calls_in_flight(), 1);
    state.StartAttempt(clock.Now());
    RetryDecision decision =
        state.OnAttemptEnded(AttemptEnd::kAnswered, absl::StatusCode::kOk, clock.Now());
    EXPECT_EQ(decision.verdict, Verdict::kGiveUp);
    EXPECT_EQ(decision.why, GiveUpReason::kSucceeded);
    EXPECT_EQ(state.phase(), RetryState::Phase::kFinished);
    EXPECT_EQ(budget.calls_in_flight(), 0);
  }
  {
    RetryState abandoned(budget, policy, true, clock.Now() + absl::Seconds(1));
    EXPECT_EQ(budget.calls_in_flight(), 1);
  }
  EXPECT_EQ(budget.calls_in_flight(), 0);  // the destructor ends it
}

TEST(RetryStateTest, ARetryHoldsItsSlotUntilItsAttemptEnds) {
  RetryBudget budget(0.0, 1);
  const RetryPolicy policy = Policy();
  FakeClock clock;
  RetryState state(budget, policy, true, clock.Now() + absl::Seconds(10));
  state.StartAttempt(clock.Now());
  RetryDecision first = state.OnAttemptEnded(AttemptEnd::kAnswered, kUnavailable, clock.Now());
  ASSERT_EQ(first.verdict, Verdict::kRetryNow);
  EXPECT_TRUE(state.holds_retry_slot());
  EXPECT_EQ(budget.retries_in_flight(), 1);
  // The retry's attempt runs: the slot stays taken, so another call cannot retry meanwhile.
  state.StartAttempt(clock.Now());
  EXPECT_EQ(budget.retries_in_flight(), 1);
  RetryState other(budget, policy, true, clock.Now() + absl::Seconds(10));
  other.StartAttempt(clock.Now());
  EXPECT_EQ(other.OnAttemptEnded(AttemptEnd::kAnswered, kUnavailable, clock.Now()).why,
            GiveUpReason::kBudgetExhausted);
  // Only when the retry's attempt ends is the slot free again.
  RetryDecision second =
      state.OnAttemptEnded(AttemptEnd::kAnswered, absl::StatusCode::kOk, clock.Now());
  EXPECT_EQ(second.why, GiveUpReason::kSucceeded);
  EXPECT_EQ(budget.retries_in_flight(), 0);
}

TEST(RetryStateTest, FinishReleasesARetryThatNeverStarted) {
  RetryBudget budget(0.0, 1);
  const RetryPolicy policy = Policy();
  FakeClock clock;
  RetryState state(budget, policy, true, clock.Now() + absl::Seconds(10));
  state.StartAttempt(clock.Now());
  ASSERT_TRUE(state.OnAttemptEnded(AttemptEnd::kAnswered, kUnavailable, clock.Now()).retry());
  EXPECT_EQ(budget.retries_in_flight(), 1);
  state.Finish();  // e.g. no endpoint could be picked for the retry
  EXPECT_EQ(budget.retries_in_flight(), 0);
  EXPECT_EQ(budget.calls_in_flight(), 0);
  state.Finish();
  EXPECT_EQ(budget.calls_in_flight(), 0);
}

TEST(RetryStateTest, StopsAtMaxAttempts) {
  RetryBudget budget(0.2, 10);
  const RetryPolicy policy = Policy(/*max_attempts=*/3);
  FakeClock clock;
  RetryState state(budget, policy, true, clock.Now() + absl::Seconds(10));
  for (int i = 1; i <= 2; ++i) {
    state.StartAttempt(clock.Now());
    ASSERT_EQ(state.OnAttemptEnded(AttemptEnd::kAnswered, kUnavailable, clock.Now()).verdict,
              Verdict::kRetryNow)
        << "attempt " << i;
  }
  state.StartAttempt(clock.Now());
  RetryDecision last = state.OnAttemptEnded(AttemptEnd::kAnswered, kUnavailable, clock.Now());
  EXPECT_EQ(last.why, GiveUpReason::kAttemptsUsed);
  EXPECT_EQ(state.attempts(), 3);
  EXPECT_EQ(budget.retries_in_flight(), 0);
}

TEST(RetryStateTest, OnlyIdempotentMethodsRetryStatusesThatMayChange) {
  RetryBudget budget(0.2, 10);
  const RetryPolicy policy = Policy();
  FakeClock clock;
  const absl::Time deadline = clock.Now() + absl::Seconds(10);
  {
    RetryState state(budget, policy, /*idempotent=*/false, deadline);
    state.StartAttempt(clock.Now());
    EXPECT_EQ(state.OnAttemptEnded(AttemptEnd::kAnswered, kUnavailable, clock.Now()).why,
              GiveUpReason::kNotRetryable);
  }
  for (absl::StatusCode code : {absl::StatusCode::kInvalidArgument, absl::StatusCode::kInternal,
                                absl::StatusCode::kDeadlineExceeded}) {
    RetryState state(budget, policy, true, deadline);
    state.StartAttempt(clock.Now());
    EXPECT_EQ(state.OnAttemptEnded(AttemptEnd::kAnswered, code, clock.Now()).why,
              GiveUpReason::kNotRetryable);
  }
  for (absl::StatusCode code : {kUnavailable, absl::StatusCode::kCancelled}) {
    RetryState state(budget, policy, true, deadline);
    state.StartAttempt(clock.Now());
    EXPECT_TRUE(state.OnAttemptEnded(AttemptEnd::kAnswered, code, clock.Now()).retry());
  }
}

TEST(RetryStateTest, NothingIsRetriedPastTheDeadlineOrOnceTheRequestIsGone) {
  RetryBudget budget(0.2, 10);
  const RetryPolicy policy = Policy();
  FakeClock clock;
  RetryState late(budget, policy, true, clock.Now() + absl::Seconds(1));
  late.StartAttempt(clock.Now());
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(late.OnAttemptEnded(AttemptEnd::kAnswered, kUnavailable, clock.Now()).why,
            GiveUpReason::kDeadlinePassed);
  RetryState gone(budget, policy, true, clock.Now() + absl::Seconds(1));
  gone.StartAttempt(clock.Now());
  EXPECT_EQ(gone.OnAttemptEnded(AttemptEnd::kNeverReached, kUnavailable, clock.Now(),
                                /*resendable=*/false)
                .why,
            GiveUpReason::kNotResendable);
}

TEST(RetryStateTest, AttemptTimeoutShortensIdempotentAttemptsOnlyAndIsRetried) {
  RetryBudget budget(0.2, 10);
  RetryPolicy policy = Policy();
  policy.attempt_timeout = absl::Milliseconds(200);
  FakeClock clock;
  const absl::Time deadline = clock.Now() + absl::Seconds(5);
  RetryState plain(budget, policy, false, deadline);
  EXPECT_EQ(plain.StartAttempt(clock.Now()), deadline);
  EXPECT_FALSE(plain.IsAttemptTimeout(absl::StatusCode::kDeadlineExceeded));

  RetryState state(budget, policy, true, deadline);
  EXPECT_EQ(state.StartAttempt(clock.Now()), clock.Now() + absl::Milliseconds(200));
  EXPECT_TRUE(state.IsAttemptTimeout(absl::StatusCode::kDeadlineExceeded));
  EXPECT_FALSE(state.IsAttemptTimeout(kUnavailable));
  clock.Advance(absl::Milliseconds(200));
  EXPECT_TRUE(
      state.OnAttemptEnded(AttemptEnd::kTimedOut, absl::StatusCode::kDeadlineExceeded, clock.Now())
          .retry());
  // Near the call's deadline the attempt gets only what is left.
  clock.Advance(absl::Milliseconds(4700));
  EXPECT_EQ(state.StartAttempt(clock.Now()), deadline);
  EXPECT_FALSE(state.IsAttemptTimeout(absl::StatusCode::kDeadlineExceeded));
}

TEST(RetryStateTest, TransparentRetriesUseNoAttemptsNorBudgetThenPauseUntilTheDeadline) {
  RetryBudget budget(0.0, 0);  // no counted retry is ever allowed
  const RetryPolicy policy = Policy(/*max_attempts=*/1);
  FakeClock clock;
  const absl::Time deadline = clock.Now() + absl::Seconds(1);
  RetryState state(budget, policy, /*idempotent=*/false, deadline);
  for (int i = 0; i < policy.immediate_transparent_retries; ++i) {
    state.StartAttempt(clock.Now());
    RetryDecision decision =
        state.OnAttemptEnded(AttemptEnd::kNeverReached, kUnavailable, clock.Now());
    ASSERT_EQ(decision.verdict, Verdict::kRetryNow) << i;
  }
  EXPECT_EQ(budget.retries_in_flight(), 0);
  EXPECT_EQ(state.counted_attempts(), 0);
  // Then the pauses grow: 10 ms, 20 ms, 40 ms ... up to 500 ms, until the deadline.
  absl::Duration expected = absl::Milliseconds(10);
  absl::Duration waited;
  int paused = 0;
  while (true) {
    state.StartAttempt(clock.Now());
    RetryDecision decision =
        state.OnAttemptEnded(AttemptEnd::kNeverReached, kUnavailable, clock.Now());
    if (!decision.retry()) {
      EXPECT_EQ(decision.why, GiveUpReason::kDeadlinePassed);
      break;
    }
    ASSERT_EQ(decision.verdict, Verdict::kRetryLater);
    EXPECT_EQ(decision.retry_at - clock.Now(), expected);
    expected = std::min(expected * 2, absl::Milliseconds(500));
    waited += decision.retry_at - clock.Now();
    clock.Advance(decision.retry_at - clock.Now());
    ++paused;
  }
  EXPECT_EQ(paused, 6);  // 10+20+40+80+160+320 = 630 ms; the next 500 ms would pass 1 s
  EXPECT_EQ(waited, absl::Milliseconds(630));
  // A counted failure after all that still gets its max_attempts (1 here: none left).
  EXPECT_EQ(state.counted_attempts(), 0);
}

TEST(RetryStateTest, TransparentRetryWithoutADeadlineGivesUpInsteadOfPausing) {
  RetryBudget budget(0.2, 10);
  const RetryPolicy policy = Policy();
  FakeClock clock;
  RetryState state(budget, policy, true, absl::InfiniteFuture());
  for (int i = 0; i < policy.immediate_transparent_retries; ++i) {
    state.StartAttempt(clock.Now());
    ASSERT_TRUE(state.OnAttemptEnded(AttemptEnd::kNeverReached, kUnavailable, clock.Now()).retry());
  }
  state.StartAttempt(clock.Now());
  EXPECT_EQ(state.OnAttemptEnded(AttemptEnd::kNeverReached, kUnavailable, clock.Now()).why,
            GiveUpReason::kDeadlinePassed);
}

TEST(RetryStateTest, TransparentRetriesDoNotUseUpCountedAttempts) {
  RetryBudget budget(0.2, 10);
  const RetryPolicy policy = Policy(/*max_attempts=*/2);
  FakeClock clock;
  RetryState state(budget, policy, true, clock.Now() + absl::Seconds(10));
  for (int i = 0; i < 3; ++i) {
    state.StartAttempt(clock.Now());
    ASSERT_TRUE(state.OnAttemptEnded(AttemptEnd::kNeverReached, kUnavailable, clock.Now()).retry());
  }
  state.StartAttempt(clock.Now());
  EXPECT_TRUE(state.OnAttemptEnded(AttemptEnd::kAnswered, kUnavailable, clock.Now()).retry());
  state.StartAttempt(clock.Now());
  EXPECT_EQ(state.OnAttemptEnded(AttemptEnd::kAnswered, kUnavailable, clock.Now()).why,
            GiveUpReason::kAttemptsUsed);
  EXPECT_EQ(state.attempts(), 5);
  EXPECT_EQ(state.counted_attempts(), 2);
}

TEST(RetryStateTest, BudgetOfOneFifthKeepsAttemptsNearCalls) {
  // Many calls in flight against a service where every attempt fails: with ratio 0.2 and no
  // floor, at most a fifth of the calls in flight can be retrying at any moment.
  RetryBudget budget(0.2, 0);
  const RetryPolicy policy = Policy(/*max_attempts=*/3, 0.2, 0);
  FakeClock clock;
  constexpr int kInFlight = 50;
  constexpr int kCalls = 3000;
  std::vector<std::unique_ptr<RetryState>> slots(kInFlight);
  int started_calls = 0, attempts = 0;
  // Round by round, each slot's attempt fails; a finished call is replaced by a new one.
  while (started_calls < kCalls ||
         std::any_of(slots.begin(), slots.end(), [](const auto& s) { return s != nullptr; })) {
    for (auto& slot : slots) {
      if (slot == nullptr) {
        if (started_calls == kCalls) continue;
        slot = std::make_unique<RetryState>(budget, policy, true, clock.Now() + absl::Hours(1));
        ++started_calls;
      }
      slot->StartAttempt(clock.Now());
      ++attempts;
    }
    for (auto& slot : slots) {
      if (slot == nullptr) continue;
      if (!slot->OnAttemptEnded(AttemptEnd::kAnswered, kUnavailable, clock.Now()).retry()) {
        slot.reset();
      }
    }
  }
  EXPECT_LE(attempts, kCalls * 13 / 10);
  EXPECT_GT(attempts, kCalls);  // the budget does allow some retries
  EXPECT_EQ(budget.calls_in_flight(), 0);
  EXPECT_EQ(budget.retries_in_flight(), 0);
}

TEST(RetryPolicyTest, ValidationAndIdempotentPatterns) {
  RetryPolicy policy = Policy();
  EXPECT_TRUE(ValidateRetryPolicy(policy).ok());
  policy.idempotent_methods.push_back("/pkg.Svc/Get");
  EXPECT_TRUE(IsIdempotentMethod(policy, "/Greeter/SayHello"));
  EXPECT_TRUE(IsIdempotentMethod(policy, "/pkg.Svc/Get"));
  EXPECT_FALSE(IsIdempotentMethod(policy, "/pkg.Svc/Put"));
  policy.idempotent_methods.push_back("Greeter");
  absl::Status bad = ValidateRetryPolicy(policy);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("'Greeter'"), std::string::npos);
  RetryPolicy zero = Policy(0);
  EXPECT_NE(ValidateRetryPolicy(zero).message().find("max_attempts"), std::string::npos);
}

}  // namespace
}  // namespace sluice
