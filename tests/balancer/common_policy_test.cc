// Properties every policy must have, checked on all six.
#include <set>

#include "sluice/core/log.h"
#include "test_util.h"

namespace sluice {
namespace {

class EveryPolicyTest : public testing::PolicyTest,
                        public ::testing::WithParamInterface<std::string> {
 protected:
  // The set of endpoints `picker` picks over `picks` picks (varying the hash key).
  static std::set<size_t> PickedSet(const Picker& picker, int picks) {
    SeededRandom random(17);
    PickArgs args;
    args.random = &random;
    std::set<size_t> picked;
    for (int i = 0; i < picks; ++i) {
      args.hash_key = random.Next();
      const PickResult r = picker.Pick(args);
      EXPECT_TRUE(r.has_endpoint());
      if (r.has_endpoint()) picked.insert(r.index());
    }
    return picked;
  }
};

TEST_P(EveryPolicyTest, NoEndpointsPicksNone) {
  auto picker = Build(GetParam(), {});
  SeededRandom random(1);
  PickArgs args;
  args.random = &random;
  args.hash_key = 42;
  EXPECT_FALSE(picker->Pick(args).has_endpoint());
  EXPECT_EQ(picker->Pick(args), PickResult::None());
}

TEST_P(EveryPolicyTest, OnlyDrainingEndpointsPicksNone) {
  auto endpoints = testing::MakeEndpoints(3);
  for (auto& e : endpoints) e.endpoint.draining = true;
  auto picker = Build(GetParam(), endpoints);
  SeededRandom random(1);
  PickArgs args;
  args.random = &random;
  EXPECT_FALSE(picker->Pick(args).has_endpoint());
}

TEST_P(EveryPolicyTest, DrainingEndpointsAreNeverPicked) {
  auto endpoints = testing::MakeEndpoints(5);
  endpoints[1].endpoint.draining = true;
  endpoints[3].endpoint.draining = true;
  EXPECT_EQ(PickedSet(*Build(GetParam(), endpoints), 2000), (std::set<size_t>{0, 2, 4}));
}

TEST_P(EveryPolicyTest, ZeroWeightIsNeverPickedUnlessAllAreZero) {
  auto endpoints = testing::MakeWeightedEndpoints({0, 3, 0, 1});
  EXPECT_EQ(PickedSet(*Build(GetParam(), endpoints), 2000), (std::set<size_t>{1, 3}));
  endpoints = testing::MakeWeightedEndpoints({0, 0, 0});
  EXPECT_EQ(PickedSet(*Build(GetParam(), endpoints), 2000), (std::set<size_t>{0, 1, 2}));
}

TEST_P(EveryPolicyTest, ASingleEndpointIsAlwaysPicked) {
  auto endpoints = testing::MakeEndpoints(2);
  endpoints[0].endpoint.draining = true;
  EXPECT_EQ(PickedSet(*Build(GetParam(), endpoints), 100), (std::set<size_t>{1}));
}

TEST_P(EveryPolicyTest, EndpointsWithoutStatsArePickable) {
  auto endpoints = testing::MakeEndpoints(3);
  for (auto& e : endpoints) e.stats = nullptr;
  EXPECT_EQ(PickedSet(*Build(GetParam(), endpoints), 2000), (std::set<size_t>{0, 1, 2}));
}

TEST_P(EveryPolicyTest, AnotherPolicysConfigFallsBackToDefaults) {
  const PolicyFactory* factory = registry_.Find(GetParam());
  ASSERT_NE(factory, nullptr);
  const std::string other = GetParam() == "random" ? "ring_hash" : "random";
  auto config = registry_.Find(other)->ParseConfig(nullptr);
  ASSERT_TRUE(config.ok());
  std::vector<std::string> errors;
  LogSink previous = SetLogSink([&](LogLevel level, absl::string_view message) {
    if (level == LogLevel::kError) errors.emplace_back(message);
  });
  SeededRandom random(1);
  auto picker = factory->CreatePicker(testing::MakeEndpoints(3), **config, random);
  SetLogSink(std::move(previous));
  EXPECT_EQ(PickedSet(*picker, 2000), (std::set<size_t>{0, 1, 2}));
  // Policies that read their config say it was the wrong one.
  const std::set<std::string> configurable = {"least_request", "peak_ewma", "ring_hash", "prequal",
                                              "weighted_round_robin"};
  if (configurable.count(GetParam()) > 0) {
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0], absl::StrCat(GetParam(),
                                      ": CreatePicker was given another policy's config; using "
                                      "the defaults"));
  } else {
    EXPECT_TRUE(errors.empty());
  }
}

INSTANTIATE_TEST_SUITE_P(Balancer, EveryPolicyTest,
                         ::testing::Values("round_robin", "random", "least_request", "peak_ewma",
                                           "weighted_round_robin", "ring_hash", "prequal"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace sluice
