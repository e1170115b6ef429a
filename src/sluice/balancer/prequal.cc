#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "sluice/balancer/builtin_policies.h"
#include "sluice/balancer/config_reader.h"
#include "sluice/balancer/hot_cold.h"
#include "sluice/balancer/pickable.h"

namespace sluice {
namespace {

constexpr absl::string_view kPolicyName = "prequal";
constexpr int64_t kMaxProbes = 16;

class PrequalConfig final : public PolicyConfig {
 public:
  int64_t probes = 3;
  // Low, so that calls in flight (known at once) rule and latency (known one call later) only
  // chooses among the least loaded; docs/balancing.md shows what a high quantile did.
  double hot_quantile = 0.25;
  absl::Duration default_rtt = absl::Milliseconds(30);
  absl::Duration decay = absl::Seconds(1);
  absl::Duration report_max_age = absl::Seconds(1);
};

// Prequal's selection on the caller's own signals: probe `probes` distinct random endpoints
// (reading the caller's live statistics of each, which costs nothing and is never stale for
// requests in flight), then apply the hot-cold rule (hot_cold.h): skip the candidates whose
// requests in flight are above the hot quantile of the pool, take the lowest latency among the
// rest. An endpoint that has not been picked for a while sees its latency estimate decay
// toward 0 when read, so it wins a pick again and is measured afresh: the real call is the probe.
class PrequalPicker final : public Picker {
 public:
  PrequalPicker(PickableSet set, const PrequalConfig& config)
      : set_(std::move(set)),
        probes_(static_cast<size_t>(config.probes)),
        hot_quantile_(config.hot_quantile),
        default_rtt_ns_(absl::ToDoubleNanoseconds(config.default_rtt)),
        report_max_age_(config.report_max_age) {}

  PickResult Pick(const PickArgs& args) const override {
    const size_t n = set_.size();
    if (n == 0) return PickResult::None();
    if (n == 1) return PickResult::Chosen(set_.endpoints[0].index);
    Random& random = *args.random;
    size_t positions[kMaxProbes];
    size_t count;
    if (probes_ >= n) {
      // Every endpoint is probed; a random starting point spreads ties.
      count = n;
      const size_t start = static_cast<size_t>(random.Uniform(n));
      for (size_t k = 0; k < n; ++k) positions[k] = (start + k) % n;
    } else {
      count = probes_;
      DrawDistinctPositions(n, count, random, positions);
    }
    const int64_t now_ns = absl::ToUnixNanos(args.now);
    CandidateLoad pool[kMaxProbes];
    for (size_t k = 0; k < count; ++k) {
      // Hook for server-reported load: no report source reaches the picker yet (see
      // ReportedLoad), so every candidate is judged on the caller's own observations.
      pool[k] = EstimateCandidateLoad(*set_.endpoints[positions[k]].stats, now_ns, default_rtt_ns_,
                                      std::nullopt, report_max_age_);
    }
    const size_t chosen = ChooseHotCold(pool, count, hot_quantile_);
    return PickResult::Chosen(set_.endpoints[positions[chosen]].index);
  }

 private:
  const PickableSet set_;
  const size_t probes_;
  const double hot_quantile_;
  const double default_rtt_ns_;
  const absl::Duration report_max_age_;
};

class PrequalFactory final : public PolicyFactory {
 public:
  absl::string_view name() const override { return kPolicyName; }

  absl::StatusOr<std::shared_ptr<const PolicyConfig>> ParseConfig(
      const nlohmann::json& config) const override {
    absl::StatusOr<JsonReader> reader = ReadPolicyConfig(
        kPolicyName, config, {"probes", "hot_quantile", "default_rtt", "decay", "report_max_age"});
    if (!reader.ok()) return reader.status();
    auto parsed = std::make_shared<PrequalConfig>();
    if (absl::Status s = reader->ReadInt("probes", 2, kMaxProbes, &parsed->probes); !s.ok()) {
      return s;
    }
    if (absl::Status s = reader->ReadDouble("hot_quantile", 0.0, 1.0, &parsed->hot_quantile);
        !s.ok()) {
      return s;
    }
    for (auto [field, out] :
         {std::pair{"default_rtt", &parsed->default_rtt}, std::pair{"decay", &parsed->decay},
          std::pair{"report_max_age", &parsed->report_max_age}}) {
      if (absl::Status s = reader->ReadPositiveDuration(field, out); !s.ok()) return s;
    }
    return std::shared_ptr<const PolicyConfig>(std::move(parsed));
  }

  std::unique_ptr<Picker> CreatePicker(std::vector<PickerEndpoint> endpoints,
                                       const PolicyConfig& config,
                                       Random& /*random*/) const override {
    const PrequalConfig defaults;
    const PrequalConfig& typed = ConfigAs(config, kPolicyName, defaults);
    PickableSet set = SelectPickable(endpoints);
    // The latency estimates follow this policy's time constant from now on.
    for (const auto& stats : set.owned_stats) stats->set_ewma_decay(typed.decay);
    return std::make_unique<PrequalPicker>(std::move(set), typed);
  }
};

}  // namespace

void RegisterPrequalPolicy(PolicyRegistry& registry) {
  registry.Register(std::make_unique<PrequalFactory>());
}

}  // namespace sluice
