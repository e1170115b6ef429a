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
  // The two candidates are distinct, so the busy one always loses and the others split evenly.
  EXPECT_EQ(counts[1], 0);
  EXPECT_NEAR(counts[0], 15000, 300);
  EXPECT_NEAR(counts[2], 15000, 300);
}

TEST_F(LeastRequestTest, CandidatesAreDistinctAndUniform) {
  // Of 10 endpoints, one holds the fewest calls: it wins whenever it is one of the two distinct
  // candidates, 2/10 of picks (with replacement it would be 1 - (9/10)^2 = 0.19).
  const auto endpoints = testing::MakeEndpoints(10);
  for (size_t i = 0; i < endpoints.size(); ++i) SetInFlight(endpoints[i], i == 4 ? 0 : 5);
  auto picker = Build("least_request", endpoints);
  SeededRandom random(9);
  const std::vector<int> counts = CountPicks(*picker, 10, 100000, random);
  EXPECT_NEAR(counts[4], 20000, 400);
  // The busiest of three with choice_count 2 among five: never picked.
  const auto five = testing::MakeEndpoints(5);
  for (size_t i = 0; i < five.size(); ++i) SetInFlight(five[i], i == 2 ? 9 : static_cast<int>(i));
  auto picker5 = Build("least_request", five);
  EXPECT_EQ(CountPicks(*picker5, 5, 20000, random)[2], 0);
}

TEST_F(LeastRequestTest, MoreChoicesAvoidTheBusyEndpointHarder) {
  const auto endpoints = testing::MakeEndpoints(3);
  SetInFlight(endpoints[1], 10);
  auto picker = Build("least_request", endpoints, {{"choice_count", 3}});
  SeededRandom random(3);
  // Three distinct candidates out of three: the busy one is never picked.
  EXPECT_EQ(CountPicks(*picker, 3, 30000, random)[1], 0);
  // With 6 endpoints, one idle: it wins whenever it is among the 3 candidates, half the picks
  // (2 candidates: a third).
  const auto six = testing::MakeEndpoints(6);
  for (size_t i = 1; i < six.size(); ++i) SetInFlight(six[i], 3);
  auto picker3 = Build("least_request", six, {{"choice_count", 3}});
  auto picker2 = Build("least_request", six);
  EXPECT_NEAR(CountPicks(*picker3, 6, 60000, random)[0], 30000, 500);
  EXPECT_NEAR(CountPicks(*picker2, 6, 60000, random)[0], 20000, 500);
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
