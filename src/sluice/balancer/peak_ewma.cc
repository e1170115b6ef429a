#include <cstdint>
#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "sluice/balancer/builtin_policies.h"
#include "sluice/balancer/config_reader.h"
#include "sluice/balancer/pickable.h"

namespace sluice {
namespace {

constexpr absl::string_view kPolicyName = "peak_ewma";

class PeakEwmaConfig final : public PolicyConfig {
 public:
  absl::Duration default_rtt = absl::Milliseconds(30);
  absl::Duration decay = EndpointStats::kDefaultEwmaDecay;
};

// Linkerd's balancer: two distinct random candidates, the cheaper wins, where
// cost = peak-EWMA latency (decayed to args.now) x (in_flight + 1). Latency and queue depth
// together: a slow endpoint and a swamped one both look expensive.
class PeakEwmaPicker final : public Picker {
 public:
  PeakEwmaPicker(PickableSet set, const PeakEwmaConfig& config)
      : set_(std::move(set)), default_rtt_ns_(absl::ToDoubleNanoseconds(config.default_rtt)) {}

  PickResult Pick(const PickArgs& args) const override {
    const size_t n = set_.size();
    if (n == 0) return PickResult::None();
    if (n == 1) return PickResult::Chosen(set_.endpoints[0].index);
    Random& random = *args.random;
    // Two distinct positions, uniformly: b skips over a.
    const size_t a = static_cast<size_t>(random.Uniform(n));
    size_t b = static_cast<size_t>(random.Uniform(n - 1));
    if (b >= a) ++b;
    const int64_t now_ns = absl::ToUnixNanos(args.now);
    const PickableEndpoint& ea = set_.endpoints[a];
    const PickableEndpoint& eb = set_.endpoints[b];
    return PickResult::Chosen(Cost(eb, now_ns) < Cost(ea, now_ns) ? eb.index : ea.index);
  }

 private:
  double Cost(const PickableEndpoint& e, int64_t now_ns) const {
    return e.stats->ReadEstimateNanos(now_ns, default_rtt_ns_) *
           static_cast<double>(e.stats->in_flight() + 1);
  }

  const PickableSet set_;
  const double default_rtt_ns_;
};

class PeakEwmaFactory final : public PolicyFactory {
 public:
  absl::string_view name() const override { return kPolicyName; }

  absl::StatusOr<std::shared_ptr<const PolicyConfig>> ParseConfig(
      const nlohmann::json& config) const override {
    absl::StatusOr<ConfigReader> reader =
        ConfigReader::Create(kPolicyName, config, {"default_rtt", "decay"});
    if (!reader.ok()) return reader.status();
    auto parsed = std::make_shared<PeakEwmaConfig>();
    if (absl::Status s = reader->ReadPositiveDuration("default_rtt", &parsed->default_rtt);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = reader->ReadPositiveDuration("decay", &parsed->decay); !s.ok()) {
      return s;
    }
    return std::shared_ptr<const PolicyConfig>(std::move(parsed));
  }

  std::unique_ptr<Picker> CreatePicker(std::vector<PickerEndpoint> endpoints,
                                       const PolicyConfig& config,
                                       Random& /*random*/) const override {
    const PeakEwmaConfig defaults;
    const PeakEwmaConfig& typed = ConfigAs(config, kPolicyName, defaults);
    PickableSet set = SelectPickable(endpoints);
    // The stats fold in samples with this policy's time constant from now on.
    for (const auto& stats : set.owned_stats) stats->set_ewma_decay(typed.decay);
    return std::make_unique<PeakEwmaPicker>(std::move(set), typed);
  }
};

}  // namespace

void RegisterPeakEwmaPolicy(PolicyRegistry& registry) {
  registry.Register(std::make_unique<PeakEwmaFactory>());
}

}  // namespace sluice
