#include "sluice/core/clock.h"
#include "test_util.h"

namespace sluice {
namespace {

class PeakEwmaTest : public testing::PolicyTest {
 protected:
  void Finish(const PickerEndpoint& e, absl::Duration latency) {
    e.stats->OnCallStarted();
    e.stats->OnCallFinished(true, latency, clock_.Now());
  }
  std::vector<int> Count(const Picker& picker, size_t n, int picks, uint64_t seed) {
    SeededRandom random(seed);
    PickArgs args;
    args.random = &random;
    args.now = clock_.Now();
    std::vector<int> counts(n, 0);
    for (int i = 0; i < picks; ++i) ++counts[picker.Pick(args).index()];
    return counts;
  }

  FakeClock clock_;
};

TEST_F(PeakEwmaTest, NeverPicksTheSlowEndpointAgainstFasterOnes) {
  const auto endpoints = testing::MakeEndpoints(3);
  Finish(endpoints[0], absl::Milliseconds(500));
  Finish(endpoints[1], absl::Milliseconds(10));
  Finish(endpoints[2], absl::Milliseconds(10));
  auto picker = Build("peak_ewma", endpoints);
  // Two distinct candidates per pick: the slow one always loses.
  const std::vector<int> counts = Count(*picker, 3, 30000, 1);
  EXPECT_EQ(counts[0], 0);
  EXPECT_NEAR(counts[1], 15000, 400);
  EXPECT_NEAR(counts[2], 15000, 400);
}

TEST_F(PeakEwmaTest, CostGrowsWithCallsInFlight) {
  const auto endpoints = testing::MakeEndpoints(3);
  for (const auto& e : endpoints) Finish(e, absl::Milliseconds(10));
  // 10 ms x (2 + 1) against 10 ms x (0 + 1).
  endpoints[2].stats->OnCallStarted();
  endpoints[2].stats->OnCallStarted();
  auto picker = Build("peak_ewma", endpoints);
  EXPECT_EQ(Count(*picker, 3, 10000, 2)[2], 0);
  // But a much slower endpoint loses to a busy fast one: 10 x 3 = 30 < 40 x 1.
  Finish(endpoints[0], absl::Milliseconds(40));
  Finish(endpoints[1], absl::Milliseconds(40));
  const std::vector<int> counts = Count(*picker, 3, 30000, 3);
  EXPECT_NEAR(counts[2], 20000, 400);
}

TEST_F(PeakEwmaTest, ASlowEndpointIsProbedAgainOnceItsEstimateDecays) {
  const auto endpoints = testing::MakeEndpoints(2);
  Finish(endpoints[0], absl::Milliseconds(500));
  auto picker = Build("peak_ewma", endpoints);
  clock_.Advance(absl::Seconds(60));
  Finish(endpoints[1], absl::Milliseconds(10));
  // 500 ms x e^-6 = 1.24 ms, now below the fresh 10 ms: the pick's `now` decays it.
  EXPECT_EQ(Count(*picker, 2, 1000, 4)[0], 1000);
}

TEST_F(PeakEwmaTest, AnEndpointWithoutSamplesIsProbedAtOnce) {
  const auto endpoints = testing::MakeEndpoints(2);
  // The measured endpoint answers in 1 us, far under the 30 ms default; the new one still wins
  // while it has nothing in flight, so a scale-up reaches even a lightly loaded client.
  Finish(endpoints[1], absl::Microseconds(1));
  EXPECT_EQ(Count(*Build("peak_ewma", endpoints), 2, 1000, 5)[0], 1000);
}

TEST_F(PeakEwmaTest, AnEndpointThatOnlyFailedCostsTheDefaultRtt) {
  const auto endpoints = testing::MakeEndpoints(2);
  Finish(endpoints[1], absl::Milliseconds(10));
  // A fast failure leaves no latency sample; it must not look like a new endpoint (free), or a
  // backend failing from its first call would draw every call.
  endpoints[0].stats->OnCallStarted();
  endpoints[0].stats->OnCallFinished(false, absl::Milliseconds(1), clock_.Now());
  EXPECT_EQ(Count(*Build("peak_ewma", endpoints), 2, 1000, 7)[0], 0);
}

TEST_F(PeakEwmaTest, AnUnmeasuredEndpointWithACallInFlightCostsTheDefaultRtt) {
  const auto endpoints = testing::MakeEndpoints(2);
  Finish(endpoints[1], absl::Milliseconds(100));
  endpoints[0].stats->OnCallStarted();
  // 30 ms x 2 = 60 ms < 100 ms: the probing endpoint still wins.
  EXPECT_EQ(Count(*Build("peak_ewma", endpoints), 2, 1000, 5)[0], 1000);
  // 200 ms x 2 > 100 ms: it waits for its first answer.
  auto picker = Build("peak_ewma", endpoints, {{"default_rtt", "200ms"}});
  EXPECT_EQ(Count(*picker, 2, 1000, 6)[0], 0);
}

TEST_F(PeakEwmaTest, LatenciesUnderMinRttCompareByCallsInFlight) {
  const auto endpoints = testing::MakeEndpoints(2);
  Finish(endpoints[0], absl::Microseconds(200));
  Finish(endpoints[1], absl::Microseconds(600));
  // Both under the 5 ms floor: equal cost, so the first of the two candidates drawn wins and
  // calls spread evenly instead of all going to the one that was faster by 0.4 ms.
  const std::vector<int> spread = Count(*Build("peak_ewma", endpoints), 2, 10000, 8);
  EXPECT_NEAR(spread[0], 5000, 250);
  // A call in flight still counts: 5 ms x 2 against 5 ms x 1.
  endpoints[0].stats->OnCallStarted();
  EXPECT_EQ(Count(*Build("peak_ewma", endpoints), 2, 1000, 9)[0], 0);
  // With the floor lowered below both, the faster one wins again: 200 us x 2 < 600 us x 1.
  auto unfloored = Build("peak_ewma", endpoints, {{"min_rtt", "100us"}});
  EXPECT_EQ(Count(*unfloored, 2, 1000, 10)[0], 1000);
}

TEST_F(PeakEwmaTest, AnEndpointSilentForProbeAfterIsProbedAndItsAnswerReplacesTheEstimate) {
  const auto endpoints = testing::MakeEndpoints(2);
  Finish(endpoints[0], absl::Milliseconds(100));  // one slow (cold) answer
  Finish(endpoints[1], absl::Microseconds(500));
  auto picker = Build("peak_ewma", endpoints);
  EXPECT_EQ(Count(*picker, 2, 1000, 11)[0], 0);
  // The fast one keeps answering; the slow one, never picked, goes silent for 2 s.
  clock_.Advance(absl::Milliseconds(1999));
  Finish(endpoints[1], absl::Microseconds(500));
  EXPECT_EQ(Count(*picker, 2, 1000, 12)[0], 0);
  clock_.Advance(absl::Milliseconds(1));
  Finish(endpoints[1], absl::Microseconds(500));
  // 2 s of silence: probed (free while nothing is in flight to it)...
  EXPECT_EQ(Count(*picker, 2, 1000, 13)[0], 1000);
  // ...only one probe at a time...
  endpoints[0].stats->OnCallStarted();
  EXPECT_EQ(Count(*picker, 2, 1000, 14)[0], 0);
  // ...and a fast answer replaces the 100 ms estimate (blended, it would still be ~82 ms): both
  // are now under the 5 ms floor and share the calls.
  endpoints[0].stats->OnCallFinished(true, absl::Microseconds(400), clock_.Now());
  EXPECT_NEAR(Count(*picker, 2, 10000, 15)[0], 5000, 250);
}

TEST_F(PeakEwmaTest, AnUnansweredCallInFlightDoesNotKeepAnEndpointOutForGood) {
  const auto endpoints = testing::MakeEndpoints(2);
  // Endpoint 0's first call is a stream that never ends (a health Watch forwarded by a proxy,
  // say); endpoint 1 answers quickly.
  endpoints[0].stats->OnCallStarted();
  Finish(endpoints[1], absl::Microseconds(500));
  auto picker = Build("peak_ewma", endpoints);
  EXPECT_EQ(Count(*picker, 2, 1000, 21)[0], 0);  // the default rtt x 2: never chosen
  // probe_after (2 s) later, one probe goes beside the stream; only one per period.
  clock_.Advance(absl::Seconds(2));
  Finish(endpoints[1], absl::Microseconds(500));
  EXPECT_EQ(Count(*picker, 2, 1000, 22)[0], 1);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Count(*picker, 2, 1000, 23)[0], 0);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Count(*picker, 2, 1000, 24)[0], 1);
  // The probe answers: measured now, it competes on cost like any endpoint, its stream counting
  // as one call in flight: against endpoint 1 with a call of its own in flight, they tie.
  endpoints[0].stats->OnCallStarted();
  endpoints[0].stats->OnCallFinished(true, absl::Microseconds(400), clock_.Now());
  endpoints[1].stats->OnCallStarted();
  EXPECT_NEAR(Count(*picker, 2, 10000, 25)[0], 5000, 250);
}

TEST_F(PeakEwmaTest, TheConfiguredDecayGovernsTheStats) {
  const auto endpoints = testing::MakeEndpoints(2);
  Build("peak_ewma", endpoints, {{"decay", "1.5s"}});
  for (const auto& e : endpoints) EXPECT_EQ(e.stats->ewma_decay(), absl::Milliseconds(1500));
}

}  // namespace
}  // namespace sluice
