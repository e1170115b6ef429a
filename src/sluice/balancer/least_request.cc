#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "sluice/balancer/builtin_policies.h"
#include "sluice/balancer/config_reader.h"
#include "sluice/balancer/pickable.h"

namespace sluice {
namespace {

constexpr absl::string_view kPolicyName = "least_request";
constexpr int64_t kMaxChoiceCount = 64;
constexpr double kMaxActiveRequestBias = 10.0;

class LeastRequestConfig final : public PolicyConfig {
 public:
  int64_t choice_count = 2;
  double active_request_bias = 1.0;
};

// Envoy's power of N choices, extended to weights so that traffic follows weights even when
// nothing is in flight: candidates are drawn in proportion to weight (uniformly when weights are
// equal, exactly Envoy's unweighted P2C) and the winner is the one with the least load per unit
// of weight, load = (in_flight + 1)^bias - 1. Ties keep the earlier candidate, so an idle set
// splits by weight; a busy endpoint loses comparisons and sheds its share. (Comparing Envoy's
// effective weight, weight / (in_flight + 1)^bias, between uniformly drawn candidates would
// give a weight-1 vs weight-9 pair a 25/75 split at any load: both candidates are the light
// one a quarter of the time.)
class LeastRequestPicker final : public Picker {
 public:
  LeastRequestPicker(PickableSet set, const LeastRequestConfig& config)
      : set_(std::move(set)),
        sampler_(set_.equal_weights ? WeightedSampler() : WeightedSampler(set_.endpoints)),
        choice_count_(static_cast<int>(config.choice_count)),
        bias_(config.active_request_bias) {}

  PickResult Pick(const PickArgs& args) const override {
    const size_t n = set_.size();
    if (n == 0) return PickResult::None();
    if (n == 1) return PickResult::Chosen(set_.endpoints[0].index);
    Random& random = *args.random;
    if (bias_ == 0.0) {
      // Load ignored: every comparison would tie, and ties keep the first draw.
      const size_t i =
          set_.equal_weights ? static_cast<size_t>(random.Uniform(n)) : sampler_.Draw(random);
      return PickResult::Chosen(set_.endpoints[i].index);
    }
    if (set_.equal_weights) return PickDistinct(n, random);
    const PickableEndpoint* best = &set_.endpoints[sampler_.Draw(random)];
    double best_load = LoadPerWeight(*best);
    for (int i = 1; i < choice_count_; ++i) {
      const PickableEndpoint* c = &set_.endpoints[sampler_.Draw(random)];
      const double load = LoadPerWeight(*c);
      if (load < best_load) {
        best = c;
        best_load = load;
      }
    }
    return PickResult::Chosen(best->index);
  }

 private:
  // Fewest in flight among choice_count distinct candidates (a bias > 0 cannot change an order
  // between equal weights). Distinct, as in Linkerd's P2C: drawing with replacement, as Envoy
  // does, sends the busiest of n endpoints 1/n^choice_count of all calls however slow it is (a
  // tenth of the calls to a 10x slower backend out of three).
  PickResult PickDistinct(size_t n, Random& random) const {
    if (static_cast<size_t>(choice_count_) >= n) {
      // Every endpoint is a candidate; start the scan at random so ties spread.
      const size_t start = static_cast<size_t>(random.Uniform(n));
      size_t best = start;
      int64_t best_load = set_.endpoints[start].stats->in_flight();
      for (size_t k = 1; k < n; ++k) {
        const size_t i = (start + k) % n;
        const int64_t load = set_.endpoints[i].stats->in_flight();
        if (load < best_load) {
          best = i;
          best_load = load;
        }
      }
      return PickResult::Chosen(set_.endpoints[best].index);
    }
    // choice_count distinct positions in a uniformly random order (ties keep the first
    // candidate); the positions live on the stack.
    size_t drawn[kMaxChoiceCount];
    DrawDistinctPositions(n, static_cast<size_t>(choice_count_), random, drawn);
    const PickableEndpoint* best = nullptr;
    int64_t best_load = 0;
    for (int d = 0; d < choice_count_; ++d) {
      const PickableEndpoint* c = &set_.endpoints[drawn[d]];
      const int64_t load = c->stats->in_flight();
      if (best == nullptr || load < best_load) {
        best = c;
        best_load = load;
      }
    }
    return PickResult::Chosen(best->index);
  }

  double LoadPerWeight(const PickableEndpoint& e) const {
    const double in_flight = static_cast<double>(e.stats->in_flight());
    const double load = bias_ == 1.0 ? in_flight : std::pow(in_flight + 1.0, bias_) - 1.0;
    return load / static_cast<double>(e.weight);
  }

  const PickableSet set_;
  const WeightedSampler sampler_;  // empty when all weights are equal
  const int choice_count_;
  const double bias_;
};

class LeastRequestFactory final : public PolicyFactory {
 public:
  absl::string_view name() const override { return kPolicyName; }

  absl::StatusOr<std::shared_ptr<const PolicyConfig>> ParseConfig(
      const nlohmann::json& config) const override {
    absl::StatusOr<JsonReader> reader =
        ReadPolicyConfig(kPolicyName, config, {"choice_count", "active_request_bias"});
    if (!reader.ok()) return reader.status();
    auto parsed = std::make_shared<LeastRequestConfig>();
    if (absl::Status s = reader->ReadInt("choice_count", 2, kMaxChoiceCount, &parsed->choice_count);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = reader->ReadDouble("active_request_bias", 0.0, kMaxActiveRequestBias,
                                            &parsed->active_request_bias);
        !s.ok()) {
      return s;
    }
    return std::shared_ptr<const PolicyConfig>(std::move(parsed));
  }

  std::unique_ptr<Picker> CreatePicker(std::vector<PickerEndpoint> endpoints,
                                       const PolicyConfig& config,
                                       Random& /*random*/) const override {
    const LeastRequestConfig defaults;
    return std::make_unique<LeastRequestPicker>(SelectPickable(endpoints),
                                                ConfigAs(config, kPolicyName, defaults));
  }
};

}  // namespace

void RegisterLeastRequestPolicy(PolicyRegistry& registry) {
  registry.Register(std::make_unique<LeastRequestFactory>());
}

}  // namespace sluice
