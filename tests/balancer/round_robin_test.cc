#include <set>

#include "test_util.h"

namespace sluice {
namespace {

using RoundRobinTest = testing::PolicyTest;

TEST_F(RoundRobinTest, VisitsEachEndpointInTurnFromTheSeededStart) {
  const auto endpoints = testing::MakeEndpoints(4);
  auto picker = Build("round_robin", endpoints, nullptr, /*seed=*/7);
  // The start is the creation Random's first draw over the 4 endpoints.
  SeededRandom same_seed(7);
  const size_t start = same_seed.Uniform(4);
  const std::vector<size_t> sequence = PickSequence(*picker, 12);
  for (size_t i = 0; i < sequence.size(); ++i) {
    EXPECT_EQ(sequence[i], (start + i) % 4) << "pick " << i;
  }
}

TEST_F(RoundRobinTest, DifferentClientsStartAtDifferentEndpoints) {
  const auto endpoints = testing::MakeEndpoints(4);
  std::set<size_t> starts;
  for (uint64_t seed = 0; seed < 64; ++seed) {
    starts.insert(PickSequence(*Build("round_robin", endpoints, nullptr, seed), 1)[0]);
  }
  EXPECT_EQ(starts.size(), 4u);
}

TEST_F(RoundRobinTest, SkipsDrainingEndpointsAndIgnoresWeights) {
  auto endpoints = testing::MakeWeightedEndpoints({5, 1, 1, 1});
  endpoints[1].endpoint.draining = true;
  auto picker = Build("round_robin", endpoints);
  const std::vector<size_t> sequence = PickSequence(*picker, 9);
  // 0, 2, 3 in turn, whatever the weights.
  const std::vector<size_t> order = {0, 2, 3};
  const size_t offset = std::find(order.begin(), order.end(), sequence[0]) - order.begin();
  ASSERT_LT(offset, order.size());
  for (size_t i = 0; i < sequence.size(); ++i) {
    EXPECT_EQ(sequence[i], order[(offset + i) % 3]) << "pick " << i;
  }
}

}  // namespace
}  // namespace sluice
