#include <optional>
#include <vector>

#include "sluice/balancer/hot_cold.h"
#include "sluice/core/clock.h"
#include "test_util.h"

namespace sluice {
namespace {

constexpr double kMs = 1e6;

size_t Choose(const std::vector<CandidateLoad>& pool, double hot_quantile = 0.75) {
  return ChooseHotCold(pool.data(), pool.size(), hot_quantile);
}

// ---- the hot-cold rule, exactly ----------------------------------------------------------------

TEST(HotColdRuleTest, AboveTheMedianIsHotAndTheLowestLatencyAmongTheRestWins) {
  // RIFs 0, 5, 1: the 0.75 quantile of three is the median, 1; the 5 is hot although fastest.
  EXPECT_EQ(Choose({{0, 10 * kMs}, {5, 1 * kMs}, {1, 20 * kMs}}), 0u);
  EXPECT_EQ(Choose({{0, 30 * kMs}, {5, 1 * kMs}, {1, 20 * kMs}}), 2u);
}

TEST(HotColdRuleTest, EqualLoadsLeaveNobodyHot) {
  EXPECT_EQ(Choose({{2, 30 * kMs}, {2, 10 * kMs}, {2, 20 * kMs}}), 1u);
}

TEST(HotColdRuleTest, TiesGoToFewerCallsThenToTheEarlierCandidate) {
  EXPECT_EQ(Choose({{1, 10 * kMs}, {0, 10 * kMs}, {1, 10 * kMs}}), 1u);
  EXPECT_EQ(Choose({{1, 10 * kMs}, {1, 10 * kMs}, {1, 10 * kMs}}), 0u);
}

TEST(HotColdRuleTest, TheQuantileSetsHowMuchLoadIsTolerated) {
  const std::vector<CandidateLoad> pool = {
      {0, 50 * kMs}, {3, 20 * kMs}, {9, 5 * kMs}, {4, 10 * kMs}, {1, 40 * kMs}};
  // Sorted RIFs 0 1 3 4 9; the threshold is sorted[floor(q x 4)].
  EXPECT_EQ(Choose(pool, 1.0), 2u);   // 9: nothing hot, latency alone
  EXPECT_EQ(Choose(pool, 0.75), 3u);  // 4: the 9 is hot
  EXPECT_EQ(Choose(pool, 0.5), 1u);   // 3: the 9 and the 4 are hot
  EXPECT_EQ(Choose(pool, 0.25), 4u);  // 1
  EXPECT_EQ(Choose(pool, 0.0), 0u);   // 0: least requests only
  // Out of range is clamped.
  EXPECT_EQ(Choose(pool, 7.0), 2u);
  EXPECT_EQ(Choose(pool, -1.0), 0u);
}

TEST(HotColdRuleTest, OfTwoTheLessLoadedWinsWhateverItsLatency) {
  // floor(0.75 x 1) = 0: the threshold is the smaller RIF.
  EXPECT_EQ(Choose({{2, 1 * kMs}, {1, 90 * kMs}}), 1u);
  EXPECT_EQ(Choose({{1, 90 * kMs}, {1, 1 * kMs}}), 1u);
}

TEST(HotColdRuleTest, OneCandidateIsChosen) { EXPECT_EQ(Choose({{100, 1e12}}), 0u); }

// ---- what one candidate looks like -------------------------------------------------------------

TEST(CandidateLoadTest, CombinesOwnCountsLatencyAndAFreshReport) {
  FakeClock clock;
  EndpointStats stats(absl::Seconds(1));
  const int64_t now = absl::ToUnixNanos(clock.Now());
  // No sample yet: the default latency.
  CandidateLoad load = EstimateCandidateLoad(stats, now, 30 * kMs, std::nullopt, absl::Seconds(1));
  EXPECT_EQ(load.requests_in_flight, 0);
  EXPECT_EQ(load.latency_ns, 30 * kMs);

  stats.OnCallStarted();
  stats.OnCallFinished(true, absl::Milliseconds(40), clock.Now());
  stats.OnCallStarted();
  stats.OnCallStarted();
  load = EstimateCandidateLoad(stats, now, 30 * kMs, std::nullopt, absl::Seconds(1));
  EXPECT_EQ(load.requests_in_flight, 2);
  EXPECT_EQ(load.latency_ns, 40 * kMs);

  // One decay constant later the estimate has shrunk by e.
  clock.Advance(absl::Seconds(1));
  const int64_t later = absl::ToUnixNanos(clock.Now());
  load = EstimateCandidateLoad(stats, later, 30 * kMs, std::nullopt, absl::Seconds(1));
  EXPECT_NEAR(load.latency_ns, 40 * kMs / std::exp(1.0), 1.0);

  // A report counts every caller's calls: it raises the count while fresh...
  ReportedLoad report{7, clock.Now() - absl::Milliseconds(500)};
  EXPECT_EQ(
      EstimateCandidateLoad(stats, later, 30 * kMs, report, absl::Seconds(1)).requests_in_flight,
      7);
  // ...never lowers it below what this caller has in flight...
  ReportedLoad low{1, clock.Now()};
  EXPECT_EQ(EstimateCandidateLoad(stats, later, 30 * kMs, low, absl::Seconds(1)).requests_in_flight,
            2);
  // ...and is ignored once older than report_max_age.
  ReportedLoad stale{7, clock.Now() - absl::Milliseconds(1001)};
  EXPECT_EQ(
      EstimateCandidateLoad(stats, later, 30 * kMs, stale, absl::Seconds(1)).requests_in_flight, 2);
}

// ---- the policy ---------------------------------------------------------------------------------

class PrequalTest : public testing::PolicyTest {
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

// Picks with every picked call left in flight, from three endpoints of latencies 10, 20, 30 ms.
std::vector<size_t> SequenceWithCallsInFlight(const Picker& picker,
                                              const std::vector<PickerEndpoint>& endpoints,
                                              absl::Time now, uint64_t seed) {
  SeededRandom random(seed);
  PickArgs args;
  args.random = &random;
  args.now = now;
  std::vector<size_t> sequence;
  for (int i = 0; i < 9; ++i) {
    const size_t chosen = picker.Pick(args).index();
    endpoints[chosen].stats->OnCallStarted();
    sequence.push_back(chosen);
  }
  for (size_t chosen : sequence) {
    endpoints[chosen].stats->OnCallFinished(true, absl::Milliseconds(10 * (chosen + 1)), now);
  }
  return sequence;
}

TEST_F(PrequalTest, ByDefaultTheLeastLoadedAreColdAndLatencyOrdersThem) {
  const auto endpoints = testing::MakeEndpoints(3);
  for (int k = 0; k < 3; ++k) Finish(endpoints[k], absl::Milliseconds(10 * (k + 1)));
  auto picker = Build("prequal", endpoints);
  // The default quantile keeps only the candidates with the fewest calls in flight cold: each
  // round fills the fastest first, whatever the seed.
  for (uint64_t seed : {1, 2, 3}) {
    EXPECT_EQ(SequenceWithCallsInFlight(*picker, endpoints, clock_.Now(), seed),
              (std::vector<size_t>{0, 1, 2, 0, 1, 2, 0, 1, 2}))
        << "seed " << seed;
  }
}

TEST_F(PrequalTest, WithTheMedianAsThresholdTheTwoFastestAlternateExactly) {
  const auto endpoints = testing::MakeEndpoints(3);
  for (int k = 0; k < 3; ++k) Finish(endpoints[k], absl::Milliseconds(10 * (k + 1)));
  auto picker = Build("prequal", endpoints, {{"hot_quantile", 0.75}});
  // The fastest is hot as soon as it has one call more than the median, so the two fastest take
  // turns, and the slowest, never above the median, never has the lowest latency of the cold.
  for (uint64_t seed : {1, 2, 3}) {
    EXPECT_EQ(SequenceWithCallsInFlight(*picker, endpoints, clock_.Now(), seed),
              (std::vector<size_t>{0, 1, 0, 1, 0, 1, 0, 1, 0}))
        << "seed " << seed;
  }
}

TEST_F(PrequalTest, AHotEndpointLosesToColdSlowerOnes) {
  const auto endpoints = testing::MakeEndpoints(3);
  Finish(endpoints[0], absl::Milliseconds(10));
  Finish(endpoints[1], absl::Milliseconds(50));
  Finish(endpoints[2], absl::Milliseconds(60));
  for (int i = 0; i < 5; ++i) endpoints[0].stats->OnCallStarted();
  auto picker = Build("prequal", endpoints);
  EXPECT_EQ(Count(*picker, 3, 1000, 7), (std::vector<int>{0, 1000, 0}));
  // With hot_quantile 1 nothing is hot: latency alone decides.
  auto latency_only = Build("prequal", endpoints, {{"hot_quantile", 1.0}});
  EXPECT_EQ(Count(*latency_only, 3, 1000, 7), (std::vector<int>{1000, 0, 0}));
}

TEST_F(PrequalTest, TwoProbesOfTenPickByLatencyRankInProportion) {
  // Idle endpoints with latencies 1..10 ms, 2 distinct probes per pick: endpoint k wins when it
  // is probed with a slower one, P = (2/10) x (9 - k)/9 = (9 - k)/45.
  const auto endpoints = testing::MakeEndpoints(10);
  for (int k = 0; k < 10; ++k) Finish(endpoints[k], absl::Milliseconds(k + 1));
  auto picker = Build("prequal", endpoints, {{"probes", 2}});
  const int picks = 45000;
  const std::vector<int> counts = Count(*picker, 10, picks, 11);
  for (int k = 0; k < 10; ++k) {
    // Binomial standard deviation <= sqrt(45000 x 0.2 x 0.8) = 85; allow 5 of them.
    EXPECT_NEAR(counts[k], 1000 * (9 - k), 425) << "endpoint " << k;
  }
  EXPECT_EQ(counts[9], 0);
}

TEST_F(PrequalTest, ProbesAreSpreadUniformlyWhenAllLookAlike) {
  const auto endpoints = testing::MakeEndpoints(8);
  auto picker = Build("prequal", endpoints, {{"probes", 3}});
  // No samples: every endpoint costs default_rtt and has nothing in flight; the first probe
  // wins each tie, and probes come in random order: each endpoint gets 1/8.
  const std::vector<int> counts = Count(*picker, 8, 40000, 12);
  for (int c : counts) EXPECT_NEAR(c, 5000, 350);  // sd 66
}

TEST_F(PrequalTest, ASlowEndpointIsProbedAgainOnceItsEstimateDecays) {
  const auto endpoints = testing::MakeEndpoints(2);
  Finish(endpoints[0], absl::Milliseconds(300));
  Finish(endpoints[1], absl::Milliseconds(20));
  auto picker = Build("prequal", endpoints, {{"hot_quantile", 1.0}});
  EXPECT_EQ(Count(*picker, 2, 100, 4)[0], 0);
  // Four decay constants (1 s) of silence on both: 300 ms x e^-4 = 5.5 ms; but endpoint 1 keeps
  // answering in 20 ms, so the silent one now looks faster and gets the next call: the probe.
  clock_.Advance(absl::Seconds(4));
  Finish(endpoints[1], absl::Milliseconds(20));
  EXPECT_EQ(Count(*picker, 2, 100, 5)[0], 100);
}

TEST_F(PrequalTest, EndpointsWithoutSamplesCostTheDefaultRtt) {
  const auto endpoints = testing::MakeEndpoints(2);
  Finish(endpoints[1], absl::Milliseconds(100));
  EXPECT_EQ(Count(*Build("prequal", endpoints, {{"hot_quantile", 1.0}}), 2, 500, 5)[0], 500);
  auto picker = Build("prequal", endpoints, {{"hot_quantile", 1.0}, {"default_rtt", "200ms"}});
  EXPECT_EQ(Count(*picker, 2, 500, 6)[0], 0);
}

TEST_F(PrequalTest, TheConfiguredDecayGovernsTheStats) {
  const auto endpoints = testing::MakeEndpoints(2);
  Build("prequal", endpoints);
  for (const auto& e : endpoints) EXPECT_EQ(e.stats->ewma_decay(), absl::Seconds(1));
  Build("prequal", endpoints, {{"decay", "250ms"}});
  for (const auto& e : endpoints) EXPECT_EQ(e.stats->ewma_decay(), absl::Milliseconds(250));
}

TEST_F(PrequalTest, BadConfigsAreNamed) {
  auto error = [&](const nlohmann::json& config) {
    auto configured = registry_.Configure("prequal", config);
    return configured.ok() ? std::string("OK") : std::string(configured.status().message());
  };
  EXPECT_EQ(error({{"probes", 4}, {"hot_quantile", 0.9}, {"report_max_age", "2s"}}), "OK");
  EXPECT_EQ(error({{"probes", 1}}), "prequal: probes: must be an integer from 2 to 16, got 1");
  EXPECT_EQ(error({{"hot_quantile", 1.5}}),
            "prequal: hot_quantile: must be a number from 0 to 1, got 1.5");
  EXPECT_EQ(error({{"decay", "0s"}}),
            "prequal: decay: must be a positive duration such as \"250ms\" or \"10s\", got \"0s\"");
  EXPECT_EQ(error({{"probe", 3}}),
            "prequal: probe: unknown field (known: probes, hot_quantile, default_rtt, decay, "
            "report_max_age)");
}

}  // namespace
}  // namespace sluice
