#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "sluice/balancer/builtin_policies.h"
#include "sluice/balancer/policy.h"

namespace sluice {
namespace {

using nlohmann::json;

class PolicyRegistryTest : public ::testing::Test {
 protected:
  PolicyRegistryTest() { RegisterBuiltinPolicies(registry_); }

  // The error ParseConfig gives for `config`, or "OK".
  std::string ConfigError(const std::string& policy, const json& config) {
    absl::StatusOr<ConfiguredPolicy> configured = registry_.Configure(policy, config);
    if (configured.ok()) return "OK";
    EXPECT_EQ(configured.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(configured.status().message());
  }

  PolicyRegistry registry_;
};

TEST_F(PolicyRegistryTest, KnowsTheSevenBuiltinPolicies) {
  EXPECT_EQ(registry_.Names(),
            (std::vector<std::string>{"least_request", "peak_ewma", "prequal", "random",
                                      "ring_hash", "round_robin", "weighted_round_robin"}));
  for (const std::string& name : registry_.Names()) {
    const PolicyFactory* factory = registry_.Find(name);
    ASSERT_NE(factory, nullptr) << name;
    EXPECT_EQ(factory->name(), name);
  }
}

TEST_F(PolicyRegistryTest, UnknownPolicyErrorListsTheKnownOnes) {
  EXPECT_EQ(registry_.Find("least_requests"), nullptr);
  absl::StatusOr<const PolicyFactory*> found = registry_.Lookup("least_requests");
  ASSERT_FALSE(found.ok());
  EXPECT_EQ(found.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(found.status().message(),
            "unknown load-balancing policy 'least_requests'; known policies: least_request, "
            "peak_ewma, prequal, random, ring_hash, round_robin, weighted_round_robin");
  EXPECT_EQ(ConfigError("pick_first", nullptr),
            "unknown load-balancing policy 'pick_first'; known policies: least_request, "
            "peak_ewma, prequal, random, ring_hash, round_robin, weighted_round_robin");
}

TEST_F(PolicyRegistryTest, AnEmptyRegistrySaysSo) {
  PolicyRegistry empty;
  EXPECT_EQ(empty.Lookup("random").status().message(),
            "unknown load-balancing policy 'random'; known policies: (none registered)");
}

class FixedPicker final : public Picker {
 public:
  PickResult Pick(const PickArgs&) const override { return PickResult::Chosen(0); }
};

class OverridingFactory final : public PolicyFactory {
 public:
  absl::string_view name() const override { return "random"; }
  absl::StatusOr<std::shared_ptr<const PolicyConfig>> ParseConfig(const json&) const override {
    return std::make_shared<const PolicyConfig>();
  }
  std::unique_ptr<Picker> CreatePicker(std::vector<PickerEndpoint>, const PolicyConfig&,
                                       Random&) const override {
    return std::make_unique<FixedPicker>();
  }
};

TEST_F(PolicyRegistryTest, RegisteringANameAgainReplacesIt) {
  auto replacement = std::make_unique<OverridingFactory>();
  const PolicyFactory* expected = replacement.get();
  registry_.Register(std::move(replacement));
  EXPECT_EQ(registry_.Find("random"), expected);
  EXPECT_EQ(registry_.Names().size(), 7u);
}

TEST_F(PolicyRegistryTest, NullOrEmptyConfigGivesDefaults) {
  for (const std::string& name : registry_.Names()) {
    EXPECT_EQ(ConfigError(name, nullptr), "OK") << name;
    EXPECT_EQ(ConfigError(name, json::object()), "OK") << name;
  }
}

TEST_F(PolicyRegistryTest, ValidConfigsParse) {
  EXPECT_EQ(ConfigError("least_request", {{"choice_count", 3}, {"active_request_bias", 0.5}}),
            "OK");
  EXPECT_EQ(ConfigError("least_request", {{"choice_count", 4.0}}), "OK");
  EXPECT_EQ(ConfigError("peak_ewma", {{"default_rtt", "5ms"}, {"decay", "1m"}}), "OK");
  EXPECT_EQ(ConfigError("ring_hash", {{"min_ring_size", 64}, {"max_ring_size", 4096}}), "OK");
  // JSON null for a field means "use the default".
  EXPECT_EQ(ConfigError("ring_hash", {{"min_ring_size", nullptr}}), "OK");
}

TEST_F(PolicyRegistryTest, ConfigMustBeAnObject) {
  EXPECT_EQ(ConfigError("random", json::array()), "random: must be a JSON object, got []");
  EXPECT_EQ(ConfigError("weighted_round_robin", "fast"),
            "weighted_round_robin: must be a JSON object, got \"fast\"");
  EXPECT_EQ(ConfigError("least_request", 2), "least_request: must be a JSON object, got 2");
}

TEST_F(PolicyRegistryTest, UnknownFieldsAreNamedWithTheKnownOnes) {
  EXPECT_EQ(ConfigError("round_robin", {{"start", 0}}),
            "round_robin: start: unknown field (no fields are taken here)");
  EXPECT_EQ(ConfigError("random", {{"seed", 1}}),
            "random: seed: unknown field (no fields are taken here)");
  EXPECT_EQ(ConfigError("weighted_round_robin", {{"weights", json::array()}}),
            "weighted_round_robin: weights: unknown field (known: blackout_period, "
            "weight_expiration_period, weight_update_period, error_utilization_penalty)");
  EXPECT_EQ(ConfigError("least_request", {{"choise_count", 2}}),
            "least_request: choise_count: unknown field (known: choice_count, "
            "active_request_bias)");
  EXPECT_EQ(ConfigError("peak_ewma", {{"decay_time", "10s"}}),
            "peak_ewma: decay_time: unknown field (known: default_rtt, decay, min_rtt, "
            "probe_after)");
  EXPECT_EQ(ConfigError("ring_hash", {{"ring_size", 10}}),
            "ring_hash: ring_size: unknown field (known: min_ring_size, max_ring_size)");
}

TEST_F(PolicyRegistryTest, LeastRequestRejectsBadValues) {
  EXPECT_EQ(ConfigError("least_request", {{"choice_count", 1}}),
            "least_request: choice_count: must be an integer from 2 to 64, got 1");
  EXPECT_EQ(ConfigError("least_request", {{"choice_count", 65}}),
            "least_request: choice_count: must be an integer from 2 to 64, got 65");
  EXPECT_EQ(ConfigError("least_request", {{"choice_count", 2.5}}),
            "least_request: choice_count: must be an integer from 2 to 64, got 2.5");
  EXPECT_EQ(ConfigError("least_request", {{"choice_count", "2"}}),
            "least_request: choice_count: must be an integer from 2 to 64, got \"2\"");
  EXPECT_EQ(ConfigError("least_request", {{"choice_count", 18446744073709551615u}}),
            "least_request: choice_count: must be an integer from 2 to 64, got "
            "18446744073709551615");
  EXPECT_EQ(ConfigError("least_request", {{"active_request_bias", -1}}),
            "least_request: active_request_bias: must be a number from 0 to 10, got -1");
  EXPECT_EQ(ConfigError("least_request", {{"active_request_bias", true}}),
            "least_request: active_request_bias: must be a number from 0 to 10, got true");
  // 4.0 is an integer to a user.
  EXPECT_EQ(ConfigError("least_request", {{"choice_count", 4.0}}), "OK");
}

TEST_F(PolicyRegistryTest, PeakEwmaRejectsBadDurations) {
  for (auto [field, value, shown] :
       std::vector<std::tuple<std::string, json, std::string>>{{"decay", 5, "5"},
                                                               {"default_rtt", "fast", "\"fast\""},
                                                               {"default_rtt", "-1s", "\"-1s\""},
                                                               {"decay", "0s", "\"0s\""},
                                                               {"decay", "inf", "\"inf\""}}) {
    EXPECT_EQ(
        ConfigError("peak_ewma", {{field, value}}),
        absl::StrCat("peak_ewma: ", field,
                     ": must be a positive duration such as \"250ms\" or \"10s\", got ", shown));
  }
}

TEST_F(PolicyRegistryTest, RingHashRejectsBadSizes) {
  EXPECT_EQ(ConfigError("ring_hash", {{"min_ring_size", 0}}),
            "ring_hash: min_ring_size: must be an integer from 1 to 8388608, got 0");
  EXPECT_EQ(ConfigError("ring_hash", {{"max_ring_size", 9000000}}),
            "ring_hash: max_ring_size: must be an integer from 1 to 8388608, got 9000000");
  EXPECT_EQ(ConfigError("ring_hash", {{"min_ring_size", 4096}, {"max_ring_size", 1024}}),
            "ring_hash: min_ring_size: must not be more than max_ring_size (1024), got 4096");
}

TEST_F(PolicyRegistryTest, ErrorsNeverThrowOnInvalidUtf8) {
  const std::string bad_utf8 = "\xff\xfe";
  const std::string error = ConfigError("peak_ewma", {{"decay", bad_utf8}});
  EXPECT_NE(error.find("peak_ewma: decay: must be a positive duration"), std::string::npos);
}

TEST_F(PolicyRegistryTest, ConfiguredPolicyBuildsPickers) {
  absl::StatusOr<ConfiguredPolicy> configured =
      registry_.Configure("least_request", {{"choice_count", 3}});
  ASSERT_TRUE(configured.ok());
  EXPECT_EQ(configured->factory->name(), "least_request");
  std::vector<PickerEndpoint> endpoints(2);
  endpoints[0].endpoint.address = "10.0.0.1:1";
  endpoints[1].endpoint.address = "10.0.0.2:1";
  SeededRandom random(1);
  auto picker = configured->CreatePicker(endpoints, random);
  PickArgs args;
  args.random = &random;
  EXPECT_TRUE(picker->Pick(args).has_endpoint());
}

}  // namespace
}  // namespace sluice
