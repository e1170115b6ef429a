#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sluice/balancer/builtin_policies.h"
#include "sluice/balancer/picker.h"
#include "sluice/balancer/policy.h"
#include "sluice/core/random.h"

namespace sluice::testing {

inline std::string TestAddress(int i) {
  return absl::StrCat("10.0.", i / 250, ".", i % 250 + 1, ":50051");
}

// n endpoints with fresh stats; weights default to 1.
inline std::vector<PickerEndpoint> MakeEndpoints(int n, std::vector<uint32_t> weights = {}) {
  std::vector<PickerEndpoint> endpoints;
  for (int i = 0; i < n; ++i) {
    PickerEndpoint e;
    e.endpoint.address = TestAddress(i);
    if (!weights.empty()) e.endpoint.weight = weights[i];
    e.stats = std::make_shared<EndpointStats>();
    endpoints.push_back(std::move(e));
  }
  return endpoints;
}

inline std::vector<PickerEndpoint> MakeWeightedEndpoints(std::vector<uint32_t> weights) {
  const int n = static_cast<int>(weights.size());
  return MakeEndpoints(n, std::move(weights));
}

class PolicyTest : public ::testing::Test {
 protected:
  PolicyTest() { RegisterBuiltinPolicies(registry_); }

  // Builds a picker; the creation Random is seeded with `seed`.
  std::unique_ptr<Picker> Build(const std::string& policy,
                                const std::vector<PickerEndpoint>& endpoints,
                                const nlohmann::json& config = nullptr, uint64_t seed = 1) {
    absl::StatusOr<ConfiguredPolicy> configured = registry_.Configure(policy, config);
    EXPECT_TRUE(configured.ok()) << configured.status();
    if (!configured.ok()) return nullptr;
    SeededRandom random(seed);
    return configured->CreatePicker(endpoints, random);
  }

  // How often each endpoint is picked in `picks` picks.
  static std::vector<int> CountPicks(const Picker& picker, size_t endpoints, int picks,
                                     Random& random) {
    std::vector<int> counts(endpoints, 0);
    PickArgs args;
    args.random = &random;
    for (int i = 0; i < picks; ++i) {
      const PickResult r = picker.Pick(args);
      EXPECT_TRUE(r.has_endpoint());
      if (!r.has_endpoint()) return counts;
      EXPECT_LT(r.index(), endpoints);
      ++counts[r.index()];
    }
    return counts;
  }

  // `picks` picks as a sequence of indexes.
  static std::vector<size_t> PickSequence(const Picker& picker, int picks) {
    SeededRandom random(99);
    PickArgs args;
    args.random = &random;
    std::vector<size_t> sequence;
    for (int i = 0; i < picks; ++i) sequence.push_back(picker.Pick(args).index());
    return sequence;
  }

  PolicyRegistry registry_;
};

}  // namespace sluice::testing
