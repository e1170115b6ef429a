#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "sluice/balancer/builtin_policies.h"
#include "sluice/balancer/config_reader.h"
#include "sluice/balancer/pickable.h"

namespace sluice {
namespace {

constexpr absl::string_view kPolicyName = "round_robin";

class RoundRobinConfig final : public PolicyConfig {};

// gRPC's shape: an immutable list plus one relaxed atomic counter.
class RoundRobinPicker final : public Picker {
 public:
  RoundRobinPicker(std::vector<uint32_t> indices, uint64_t start)
      : indices_(std::move(indices)), next_(start) {}

  PickResult Pick(const PickArgs& /*args*/) const override {
    if (indices_.empty()) return PickResult::None();
    const uint64_t n = next_.fetch_add(1, std::memory_order_relaxed);
    return PickResult::Chosen(indices_[n % indices_.size()]);
  }

 private:
  const std::vector<uint32_t> indices_;
  // Its own cache line: every pick writes it, and the list above is read-only.
  alignas(64) mutable std::atomic<uint64_t> next_;
};

class RoundRobinFactory final : public PolicyFactory {
 public:
  absl::string_view name() const override { return kPolicyName; }

  absl::StatusOr<std::shared_ptr<const PolicyConfig>> ParseConfig(
      const nlohmann::json& config) const override {
    absl::StatusOr<JsonReader> reader = ReadPolicyConfig(kPolicyName, config, {});
    if (!reader.ok()) return reader.status();
    return std::make_shared<const RoundRobinConfig>();
  }

  std::unique_ptr<Picker> CreatePicker(std::vector<PickerEndpoint> endpoints,
                                       const PolicyConfig& /*config*/,
                                       Random& random) const override {
    PickableSet set = SelectPickable(endpoints);
    std::vector<uint32_t> indices;
    indices.reserve(set.size());
    for (const PickableEndpoint& e : set.endpoints) indices.push_back(e.index);
    // A random start, so clients that rebuild at the same moment spread their first calls.
    const uint64_t start = indices.empty() ? 0 : random.Uniform(indices.size());
    return std::make_unique<RoundRobinPicker>(std::move(indices), start);
  }
};

}  // namespace

void RegisterRoundRobinPolicy(PolicyRegistry& registry) {
  registry.Register(std::make_unique<RoundRobinFactory>());
}

}  // namespace sluice
