#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
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
  EXPECT_EQ(ConfigError("random", json::array()), "random: config must be a JSON object, got []");
  EXPECT_EQ(ConfigError("weighted_round_robin", "fast"),
            "weighted_round_robin: config must be a JSON object, got \"fast\"");
  EXPECT_EQ(ConfigError("least_request", 2), "least_request: config must be a JSON object, got 2");
}

TEST_F(PolicyRegistryTest, UnknownFieldsAreNamedWithTheKnownOnes) {
  EXPECT_EQ(ConfigError("round_robin", {{"start", 0}}),
            "round_robin: unknown config field 'start'; this policy takes no config fields");
  EXPECT_EQ(ConfigError("random", {{"seed", 1}}),
            "random: unknown config field 'seed'; this policy takes no config fields");
  EXPECT_EQ(ConfigError("weighted_round_robin", {{"weights", json::array()}}),
            "weighted_round_robin: unknown config field 'weights'; known fields: "
            "blackout_period, error_utilization_penalty, weight_expiration_period, "
            "weight_update_period");
  EXPECT_EQ(ConfigError("least_request", {{"choise_count", 2}}),
            "least_request: unknown config field 'choise_count'; known fields: "
            "active_request_bias, choice_count");
  EXPECT_EQ(ConfigError("peak_ewma", {{"decay_time", "10s"}}),
            "peak_ewma: unknown config field 'decay_time'; known fields: decay, default_rtt, "
            "min_rtt, probe_after");
  EXPECT_EQ(ConfigError("ring_hash", {{"ring_size", 10}}),
            "ring_hash: unknown config field 'ring_size'; known fields: max_ring_size, "
            "min_ring_size");
}

TEST_F(PolicyRegistryTest, LeastRequestRejectsBadValues) {
  EXPECT_EQ(ConfigError("least_request", {{"choice_count", 1}}),
            "least_request: 'choice_count' must be an integer >= 2 and <= 64, got 1");
  EXPECT_EQ(ConfigError("least_request", {{"choice_count", 65}}),
            "least_request: 'choice_count' must be an integer >= 2 and <= 64, got 65");
  EXPECT_EQ(ConfigError("least_request", {{"choice_count", 2.5}}),
            "least_request: 'choice_count' must be an integer >= 2 and <= 64, got 2.5");
  EXPECT_EQ(ConfigError("least_request", {{"choice_count", "2"}}),
            "least_request: 'choice_count' must be an integer >= 2 and <= 64, got \"2\"");
  EXPECT_EQ(ConfigError("least_request", {{"choice_count", 18446744073709551615u}}),
            "least_request: 'choice_count' must be an integer >= 2 and <= 64, got "
            "18446744073709551615");
  EXPECT_EQ(ConfigError("least_request", {{"active_request_bias", -1}}),
            "least_request: 'active_request_bias' must be a number >= 0 and <= 10, got -1");
  EXPECT_EQ(ConfigError("least_request", {{"active_request_bias", true}}),
            "least_request: 'active_request_bias' must be a number >= 0 and <= 10, got true");
}

TEST_F(PolicyRegistryTest, PeakEwmaRejectsBadDurations) {
  EXPECT_EQ(ConfigError("peak_ewma", {{"decay", 5}}),
            "peak_ewma: 'decay' must be a positive duration string such as \"250ms\" or "
            "\"10s\", got 5");
  EXPECT_EQ(ConfigError("peak_ewma", {{"default_rtt", "fast"}}),
            "peak_ewma: 'default_rtt' must be a positive duration string such as \"250ms\" or "
            "\"10s\", got \"fast\"");
  EXPECT_EQ(ConfigError("peak_ewma", {{"default_rtt", "-1s"}}),
            "peak_ewma: 'default_rtt' must be a positive duration string such as \"250ms\" or "
            "\"10s\", got \"-1s\"");
  EXPECT_EQ(ConfigError("peak_ewma", {{"decay", "0s"}}),
            "peak_ewma: 'decay' must be a positive duration string such as \"250ms\" or "
            "\"10s\", got \"0s\"");
  EXPECT_EQ(ConfigError("peak_ewma", {{"decay", "inf"}}),
            "peak_ewma: 'decay' must be a positive duration string such as \"250ms\" or "
            "\"10s\", got \"inf\"");
}

TEST_F(PolicyRegistryTest, RingHashRejectsBadSizes) {
  EXPECT_EQ(ConfigError("ring_hash", {{"min_ring_size", 0}}),
            "ring_hash: 'min_ring_size' must be an integer >= 1 and <= 8388608, got 0");
  EXPECT_EQ(ConfigError("ring_hash", {{"max_ring_size", 9000000}}),
            "ring_hash: 'max_ring_size' must be an integer >= 1 and <= 8388608, got 9000000");
  EXPECT_EQ(ConfigError("ring_hash", {{"min_ring_size", 4096}, {"max_ring_size", 1024}}),
            "ring_hash: 'min_ring_size' (4096) must be <= 'max_ring_size' (1024)");
}

TEST_F(PolicyRegistryTest, ErrorsNeverThrowOnInvalidUtf8) {
  const std::string bad_utf8 = "\xff\xfe";
  const std::string error = ConfigError("peak_ewma", {{"decay", bad_utf8}});
  EXPECT_NE(error.find("peak_ewma: 'decay' must be a positive duration"), std::string::npos);
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
