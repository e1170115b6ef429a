#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <numeric>
#include <queue>
#include <vector>

#include "sluice/balancer/builtin_policies.h"
#include "sluice/balancer/config_reader.h"
#include "sluice/balancer/pickable.h"

namespace sluice {
namespace {

constexpr absl::string_view kPolicyName = "weighted_round_robin";
// One cycle of the schedule holds at most about this many picks (4 MiB of indexes); weights
// whose reduced sum is larger are scaled down to fit, keeping every endpoint at least once.
constexpr uint64_t kMaxCycleLength = uint64_t{1} << 20;

class WeightedRoundRobinConfig final : public PolicyConfig {};

// One cycle of earliest-deadline-first picks, as indexes into the vector the picker was built
// from. Endpoint i's k-th pick (k = 1..w_i) is due at (k - 1/2) / w_i of the cycle, the middle
// of its k-th share, so each endpoint's picks are spread evenly; ties go to the earlier
// endpoint. Weights 5,1,1 give a a a b c a a. Built once per picker, so a pick is one load.
std::vector<uint32_t> BuildSchedule(const std::vector<PickableEndpoint>& endpoints) {
  std::vector<uint64_t> weights;
  weights.reserve(endpoints.size());
  uint64_t divisor = 0;
  for (const auto& e : endpoints) {
    weights.push_back(e.weight);
    divisor = std::gcd(divisor, uint64_t{e.weight});
  }
  uint64_t total = 0;
  for (uint64_t& w : weights) total += (w /= divisor);
  if (total > kMaxCycleLength) {
    const double scale = static_cast<double>(kMaxCycleLength) / static_cast<double>(total);
    total = 0;
    for (uint64_t& w : weights) {
      w = std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<double>(w) * scale));
      total += w;
    }
  }

  struct Due {
    uint64_t twice_k_minus_1;  // deadline = twice_k_minus_1 / (2 * weight)
    uint64_t weight;
    uint32_t position;
  };
  // priority_queue pops the largest: "later" means a later deadline, then a later position.
  auto later = [](const Due& a, const Due& b) {
    const uint64_t lhs = a.twice_k_minus_1 * b.weight;
    const uint64_t rhs = b.twice_k_minus_1 * a.weight;
    return lhs != rhs ? lhs > rhs : a.position > b.position;
  };
  std::priority_queue<Due, std::vector<Due>, decltype(later)> queue(later);
  for (size_t i = 0; i < weights.size(); ++i) {
    queue.push({1, weights[i], static_cast<uint32_t>(i)});
  }
  std::vector<uint32_t> schedule;
  schedule.reserve(total);
  while (schedule.size() < total) {
    Due next = queue.top();
    queue.pop();
    schedule.push_back(endpoints[next.position].index);
    next.twice_k_minus_1 += 2;
    queue.push(next);
  }
  return schedule;
}

class WeightedRoundRobinPicker final : public Picker {
 public:
  WeightedRoundRobinPicker(std::vector<uint32_t> schedule, uint64_t start)
      : schedule_(std::move(schedule)), next_(start) {}

  PickResult Pick(const PickArgs& /*args*/) const override {
    if (schedule_.empty()) return PickResult::None();
    const uint64_t n = next_.fetch_add(1, std::memory_order_relaxed);
    return PickResult::Chosen(schedule_[n % schedule_.size()]);
  }

 private:
  const std::vector<uint32_t> schedule_;
  alignas(64) mutable std::atomic<uint64_t> next_;
};

class WeightedRoundRobinFactory final : public PolicyFactory {
 public:
  absl::string_view name() const override { return kPolicyName; }

  absl::StatusOr<std::shared_ptr<const PolicyConfig>> ParseConfig(
      const nlohmann::json& config) const override {
    absl::StatusOr<ConfigReader> reader = ConfigReader::Create(kPolicyName, config, {});
    if (!reader.ok()) return reader.status();
    return std::make_shared<const WeightedRoundRobinConfig>();
  }

  std::unique_ptr<Picker> CreatePicker(std::vector<PickerEndpoint> endpoints,
                                       const PolicyConfig& /*config*/,
                                       Random& random) const override {
    std::vector<uint32_t> schedule = BuildSchedule(SelectPickable(endpoints).endpoints);
    // Every client follows the same cycle; a random entry point keeps them out of step.
    const uint64_t start = schedule.empty() ? 0 : random.Uniform(schedule.size());
    return std::make_unique<WeightedRoundRobinPicker>(std::move(schedule), start);
  }
};

}  // namespace

void RegisterWeightedRoundRobinPolicy(PolicyRegistry& registry) {
  registry.Register(std::make_unique<WeightedRoundRobinFactory>());
}

}  // namespace sluice
