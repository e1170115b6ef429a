#include <algorithm>

#include "sluice/core/clock.h"
#include "test_util.h"

namespace sluice {
namespace {

using WeightedRoundRobinTest = testing::PolicyTest;

// Checks that `got` is `cycle` repeated, entered at the creation Random's first draw.
void ExpectCycle(const std::vector<size_t>& got, const std::vector<size_t>& cycle, uint64_t seed) {
  SeededRandom same_seed(seed);
  const size_t start = same_seed.Uniform(cycle.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i], cycle[(start + i) % cycle.size()]) << "pick " << i;
  }
}

TEST_F(WeightedRoundRobinTest, FiveOneOneIsASmoothExactCycle) {
  auto picker = Build("weighted_round_robin", testing::MakeWeightedEndpoints({5, 1, 1}), nullptr,
                      /*seed=*/3);
  // Deadlines: a at 0.1 0.3 0.5 0.7 0.9, b and c at 0.5 (ties to the earlier endpoint).
  ExpectCycle(PickSequence(*picker, 21), {0, 0, 0, 1, 2, 0, 0}, 3);
}

TEST_F(WeightedRoundRobinTest, WeightsAreReducedByTheirCommonDivisor) {
  auto picker =
      Build("weighted_round_robin", testing::MakeWeightedEndpoints({100, 200}), nullptr, 5);
  // 1:2 -> b at 0.25 and 0.75, a at 0.5.
  ExpectCycle(PickSequence(*picker, 9), {1, 0, 1}, 5);
}

TEST_F(WeightedRoundRobinTest, SharesOverACycleEqualWeightsAndPicksAreSpread) {
  auto endpoints = testing::MakeWeightedEndpoints({3, 7, 0, 2, 5});
  endpoints[4].endpoint.draining = true;
  auto picker = Build("weighted_round_robin", endpoints);
  const std::vector<size_t> sequence = PickSequence(*picker, 12 * 5);
  for (int cycle = 0; cycle < 5; ++cycle) {
    std::vector<int> counts(5, 0);
    for (int i = 0; i < 12; ++i) ++counts[sequence[cycle * 12 + i]];
    EXPECT_EQ(counts, (std::vector<int>{3, 7, 0, 2, 0})) << "cycle " << cycle;
  }
  // Smooth: the heaviest endpoint never waits more than twice its mean gap.
  int gap = 0, max_gap = 0;
  for (size_t s : sequence) {
    gap = s == 1 ? 0 : gap + 1;
    max_gap = std::max(max_gap, gap);
  }
  EXPECT_LE(max_gap, 2);
}

TEST_F(WeightedRoundRobinTest, AllZeroWeightsShareEqually) {
  auto picker = Build("weighted_round_robin", testing::MakeWeightedEndpoints({0, 0, 0}));
  std::vector<size_t> sequence = PickSequence(*picker, 3);
  std::sort(sequence.begin(), sequence.end());
  EXPECT_EQ(sequence, (std::vector<size_t>{0, 1, 2}));
}

TEST_F(WeightedRoundRobinTest, HugeWeightsAreScaledToABoundedCycle) {
  // Coprime weights summing past the 2^20 cycle cap: scaled down, ratio kept.
  auto picker = Build("weighted_round_robin", testing::MakeWeightedEndpoints({2000001, 1000000}));
  SeededRandom random(1);
  const std::vector<int> counts = CountPicks(*picker, 2, 1 << 20, random);
  EXPECT_NEAR(static_cast<double>(counts[0]) / counts[1], 2.0, 0.001);
}

// Feeds each endpoint one report per 100 ms for `duration`: qps 100 at the given utilization.
void Report(std::vector<PickerEndpoint>& endpoints, const std::vector<double>& utilization,
            FakeClock& clock, absl::Duration duration, double eps = 0) {
  for (absl::Duration t; t < duration; t += absl::Milliseconds(100)) {
    clock.Advance(absl::Milliseconds(100));
    for (size_t i = 0; i < endpoints.size(); ++i) {
      if (utilization[i] > 0)
        endpoints[i].stats->OnLoadReport(100, eps, utilization[i], clock.Now());
    }
  }
}

// Counts `picks` picks at `now`, after the 64 picks within which a due weight update lands.
std::vector<int> CountPicksAt(const Picker& picker, size_t endpoints, int picks, absl::Time now) {
  std::vector<int> counts(endpoints, 0);
  PickArgs args;
  args.now = now;
  for (int i = 0; i < 64; ++i) picker.Pick(args);
  for (int i = 0; i < picks; ++i) ++counts[picker.Pick(args).index()];
  return counts;
}

TEST_F(WeightedRoundRobinTest, SteersAwayFromABackendReportingHighUtilization) {
  FakeClock clock;
  auto endpoints = testing::MakeEndpoints(3);
  auto picker = Build("weighted_round_robin", endpoints);
  // Utilization 0.9 vs 0.3 at equal qps: weights 111 : 333 : 333, shares 1/7 : 3/7 : 3/7.
  Report(endpoints, {0.9, 0.3, 0.3}, clock, absl::Seconds(5));
  // Still in the 10 s blackout: Metadata.weight (all 1), round robin.
  std::vector<int> before = CountPicksAt(*picker, 3, 700, clock.Now());
  std::sort(before.begin(), before.end());
  EXPECT_EQ(before, (std::vector<int>{233, 233, 234}));
  Report(endpoints, {0.9, 0.3, 0.3}, clock, absl::Seconds(6));
  clock.Advance(absl::Seconds(1));  // the next weight update is due
  const std::vector<int> counts = CountPicksAt(*picker, 3, 7000, clock.Now());
  EXPECT_NEAR(counts[0], 1000, 30);
  EXPECT_NEAR(counts[1], 3000, 30);
  EXPECT_NEAR(counts[2], 3000, 30);
}

TEST_F(WeightedRoundRobinTest, ErrorsCountAsUtilization) {
  FakeClock clock;
  auto endpoints = testing::MakeEndpoints(2);
  auto picker = Build("weighted_round_robin", endpoints, {{"error_utilization_penalty", 2.0}});
  // Endpoint 0: 0.2 + 2 * 10/100 = 0.4 -> weight 250; endpoint 1: 0.4 + 0.2 = 0.6 -> 166.7.
  endpoints[0].stats->OnLoadReport(100, 10, 0.2, clock.Now());
  endpoints[1].stats->OnLoadReport(100, 10, 0.4, clock.Now());
  Report(endpoints, {0.2, 0.4}, clock, absl::Seconds(11), /*eps=*/10);
  const std::vector<int> counts = CountPicksAt(*picker, 2, 5000, clock.Now());
  EXPECT_NEAR(counts[0], 3000, 30);
  EXPECT_NEAR(counts[1], 2000, 30);
}

TEST_F(WeightedRoundRobinTest, StaleReportsExpireBackToMetadataWeights) {
  FakeClock clock;
  auto endpoints = testing::MakeWeightedEndpoints({1, 3});
  auto picker = Build("weighted_round_robin", endpoints,
                      {{"blackout_period", "1s"}, {"weight_expiration_period", "5s"}});
  Report(endpoints, {0.25, 1.0}, clock, absl::Seconds(2));  // reported weights 400 : 100
  std::vector<int> counts = CountPicksAt(*picker, 2, 500, clock.Now());
  EXPECT_EQ(counts, (std::vector<int>{400, 100}));
  // Five quiet seconds: the reports expire and Metadata.weight (1 : 3) is back.
  clock.Advance(absl::Seconds(5));
  counts = CountPicksAt(*picker, 2, 400, clock.Now());
  EXPECT_EQ(counts, (std::vector<int>{100, 300}));
  // Fresh reports start a new blackout before they count again.
  Report(endpoints, {0.25, 1.0}, clock, absl::Milliseconds(500));
  // At +0.5 s a weight update is due (1 s after the last), but the new run is 0.9 s old.
  counts = CountPicksAt(*picker, 2, 400, clock.Now() + absl::Milliseconds(500));
  EXPECT_EQ(counts, (std::vector<int>{100, 300}));
  // Past the blackout, at the next update: the reported weights steer again.
  Report(endpoints, {0.25, 1.0}, clock, absl::Milliseconds(1000));
  counts = CountPicksAt(*picker, 2, 500, clock.Now() + absl::Milliseconds(500));
  EXPECT_EQ(counts, (std::vector<int>{400, 100}));
}

TEST_F(WeightedRoundRobinTest, OneReportingEndpointIsNotEnoughAndSilentOnesGetTheMean) {
  FakeClock clock;
  auto endpoints = testing::MakeEndpoints(3);
  auto picker = Build("weighted_round_robin", endpoints, {{"blackout_period", "1s"}});
  Report(endpoints, {0.5, 0, 0}, clock, absl::Seconds(2));
  EXPECT_EQ(CountPicksAt(*picker, 3, 300, clock.Now()), (std::vector<int>{100, 100, 100}));
  // Two report (weights 200 and 100); the silent third gets their mean, 150.
  Report(endpoints, {0.5, 1.0, 0}, clock, absl::Seconds(2));
  const std::vector<int> counts = CountPicksAt(*picker, 3, 4500, clock.Now() + absl::Seconds(1));
  EXPECT_NEAR(counts[0], 2000, 20);
  EXPECT_NEAR(counts[1], 1000, 20);
  EXPECT_NEAR(counts[2], 1500, 20);
}

TEST_F(WeightedRoundRobinTest, ConfigErrorsNameTheField) {
  auto bad = registry_.Configure("weighted_round_robin", {{"blackout_period", "soon"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("blackout_period"), std::string::npos) << bad.status();
  bad = registry_.Configure("weighted_round_robin", {{"error_utilization_penalty", -1}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("error_utilization_penalty"), std::string::npos);
  bad = registry_.Configure("weighted_round_robin", {{"weight", 1}});
  EXPECT_FALSE(bad.ok());
}

TEST(EndpointStatsLoadReportTest, IgnoresReportsWithoutQpsOrUtilization) {
  EndpointStats stats;
  const absl::Time t0 = absl::UnixEpoch() + absl::Hours(1);
  stats.OnLoadReport(0, 0, 0.5, t0);
  stats.OnLoadReport(100, 0, 0, t0);
  stats.OnLoadReport(100, 0, std::nan(""), t0);
  EXPECT_EQ(stats.ReadReportedWeight(t0 + absl::Hours(1), absl::ZeroDuration(), 1.0), 0);
  stats.OnLoadReport(100, 0, 0.5, t0);
  EXPECT_DOUBLE_EQ(stats.ReadReportedWeight(t0, absl::ZeroDuration(), 1.0), 200);
  EXPECT_EQ(stats.ReadReportedWeight(t0, absl::Seconds(1), 1.0), 0) << "in the blackout";
}

}  // namespace
}  // namespace sluice
