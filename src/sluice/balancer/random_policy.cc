#include <memory>
#include <vector>

#include "sluice/balancer/builtin_policies.h"
#include "sluice/balancer/config_reader.h"
#include "sluice/balancer/pickable.h"

namespace sluice {
namespace {

constexpr absl::string_view kPolicyName = "random";

class RandomConfig final : public PolicyConfig {};

class RandomPicker final : public Picker {
 public:
  explicit RandomPicker(PickableSet set)
      : set_(std::move(set)),
        sampler_(set_.equal_weights ? WeightedSampler() : WeightedSampler(set_.endpoints)) {}

  PickResult Pick(const PickArgs& args) const override {
    if (set_.empty()) return PickResult::None();
    const size_t i = set_.equal_weights ? static_cast<size_t>(args.random->Uniform(set_.size()))
                                        : sampler_.Draw(*args.random);
    return PickResult::Chosen(set_.endpoints[i].index);
  }

 private:
  const PickableSet set_;
  const WeightedSampler sampler_;  // empty when all weights are equal
};

class RandomFactory final : public PolicyFactory {
 public:
  absl::string_view name() const override { return kPolicyName; }

  absl::StatusOr<std::shared_ptr<const PolicyConfig>> ParseConfig(
      const nlohmann::json& config) const override {
    absl::StatusOr<JsonReader> reader = ReadPolicyConfig(kPolicyName, config, {});
    if (!reader.ok()) return reader.status();
    return std::make_shared<const RandomConfig>();
  }

  std::unique_ptr<Picker> CreatePicker(std::vector<PickerEndpoint> endpoints,
                                       const PolicyConfig& /*config*/,
                                       Random& /*random*/) const override {
    return std::make_unique<RandomPicker>(SelectPickable(endpoints));
  }
};

}  // namespace

void RegisterRandomPolicy(PolicyRegistry& registry) {
  registry.Register(std::make_unique<RandomFactory>());
}

}  // namespace sluice
