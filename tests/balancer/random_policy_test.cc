#include "test_util.h"

namespace sluice {
namespace {

using RandomPolicyTest = testing::PolicyTest;

TEST_F(RandomPolicyTest, ThreeEndpointsGetAThirdEachWithinThreePercent) {
  auto picker = Build("random", testing::MakeEndpoints(3));
  SeededRandom random(2024);
  const std::vector<int> counts = CountPicks(*picker, 3, 30000, random);
  for (int c : counts) EXPECT_NEAR(c, 10000, 300);
}

TEST_F(RandomPolicyTest, SharesFollowWeights) {
  auto picker = Build("random", testing::MakeWeightedEndpoints({1, 2, 3, 0}));
  SeededRandom random(11);
  const std::vector<int> counts = CountPicks(*picker, 4, 60000, random);
  EXPECT_NEAR(counts[0], 10000, 400);
  EXPECT_NEAR(counts[1], 20000, 500);
  EXPECT_NEAR(counts[2], 30000, 500);
  EXPECT_EQ(counts[3], 0);
}

TEST_F(RandomPolicyTest, SameSeedSameSequence) {
  auto picker = Build("random", testing::MakeEndpoints(10));
  SeededRandom a(5), b(5);
  EXPECT_EQ(CountPicks(*picker, 10, 100, a), CountPicks(*picker, 10, 100, b));
}

}  // namespace
}  // namespace sluice
