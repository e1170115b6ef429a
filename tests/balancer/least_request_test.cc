#include <deque>

#include "test_util.h"

namespace sluice {
namespace {

using LeastRequestTest = testing::PolicyTest;

void SetInFlight(const PickerEndpoint& e, int n) {
  for (int i = 0; i < n; ++i) e.stats->OnCallStarted();
}

TEST_F(LeastRequestTest, IdleEndpointsShareEvenly) {
  auto picker = Build("least_request", testing::MakeEndpoints(3));
  SeededRandom random(1);
  for (int c : CountPicks(*picker, 3, 30000, random)) EXPECT_NEAR(c, 10000, 300);
}

TEST_F(LeastRequestTest, AnEndpointWithManyCallsInFlightGetsFarLessThanItsShare) {
  const auto endpoints = testing::MakeEndpoints(3);
  SetInFlight(endpoints[1], 10);
  auto picker = Build("least_request", endpoints);
  SeededRandom random(2);
  const std::vector<int> counts = CountPicks(*picker, 3, 30000, random);
  // Picked only when both candidates are it: 1/9 of picks, against a fair 1/3.
  EXPECT_NEAR(counts[1], 30000 / 9, 250);
  EXPECT_NEAR(counts[0], 30000 * 4 / 9, 400);
  EXPECT_NEAR(counts[2], 30000 * 4 / 9, 400);
}

TEST_F(LeastRequestTest, MoreChoicesAvoidTheBusyEndpointHarder) {
  const auto endpoints = testing::MakeEndpoints(3);
  SetInFlight(endpoints[1], 10);
  auto picker = Build("least_request", endpoints, {{"choice_count", 3}});
  SeededRandom random(3);
  // All three candidates must be it: 1/27.
  EXPECT_NEAR(CountPicks(*picker, 3, 30000, random)[1], 30000 / 27, 150);
}

TEST_F(LeastRequestTest, ZeroBiasIgnoresLoadWithEqualWeights) {
  const auto endpoints = testing::MakeEndpoints(3);
  SetInFlight(endpoints[1], 10);
  auto picker = Build("least_request", endpoints, {{"active_request_bias", 0.0}});
  SeededRandom random(8);
  for (int c : CountPicks(*picker, 3, 30000, random)) EXPECT_NEAR(c, 10000, 300);
}

TEST_F(LeastRequestTest, ZeroBiasIgnoresLoad) {
  const auto endpoints = testing::MakeWeightedEndpoints({1, 1, 2});
  SetInFlight(endpoints[2], 50);
  auto picker = Build("least_request", endpoints, {{"active_request_bias", 0}});
  SeededRandom random(4);
  const std::vector<int> counts = CountPicks(*picker, 3, 40000, random);
  EXPECT_NEAR(counts[0], 10000, 400);
  EXPECT_NEAR(counts[1], 10000, 400);
  EXPECT_NEAR(counts[2], 20000, 500);
}

TEST_F(LeastRequestTest, WeightedSharesFollowWeightsWhenIdle) {
  auto picker = Build("least_request", testing::MakeWeightedEndpoints({1, 2, 3, 4}));
  SeededRandom random(5);
  const std::vector<int> counts = CountPicks(*picker, 4, 50000, random);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(counts[i], 5000 * (i + 1), 400) << "endpoint " << i;
}

TEST_F(LeastRequestTest, WeightedSharesFollowWeightsUnderLoad) {
  // 16 calls always in flight; each pick starts one and a random one of them ends.
  const auto endpoints = testing::MakeWeightedEndpoints({1, 2, 3, 4});
  auto picker = Build("least_request", endpoints);
  SeededRandom random(6);
  PickArgs args;
  args.random = &random;
  std::vector<size_t> outstanding;
  std::vector<int> counts(4, 0);
  constexpr int kPicks = 100000;
  for (int i = 0; i < kPicks; ++i) {
    const size_t chosen = picker->Pick(args).index();
    ++counts[chosen];
    endpoints[chosen].stats->OnCallStarted();
    outstanding.push_back(chosen);
    if (outstanding.size() > 16) {
      const size_t k = random.Uniform(outstanding.size());
      endpoints[outstanding[k]].stats->OnCallFinished(true, absl::Milliseconds(1),
                                                      absl::UnixEpoch());
      outstanding[k] = outstanding.back();
      outstanding.pop_back();
    }
  }
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(counts[i], kPicks / 10 * (i + 1), kPicks / 100) << "endpoint " << i;
  }
}

TEST_F(LeastRequestTest, ABusyHeavyEndpointShedsItsShare) {
  const auto endpoints = testing::MakeWeightedEndpoints({1, 1, 2});
  SetInFlight(endpoints[2], 20);
  auto picker = Build("least_request", endpoints);
  SeededRandom random(7);
  const std::vector<int> counts = CountPicks(*picker, 3, 40000, random);
  // Its fair share is half; drawn twice in a row it still wins: (1/2)^2 = 1/4.
  EXPECT_NEAR(counts[2], 10000, 400);
}

}  // namespace
}  // namespace sluice
