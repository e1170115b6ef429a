#include <algorithm>

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

}  // namespace
}  // namespace sluice
