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
  absl::Duration min_rtt = absl::Milliseconds(5);
  absl::Duration probe_after = absl::Seconds(2);
};

// Linkerd's balancer: two distinct random candidates, the cheaper wins, where
// cost = peak-EWMA latency (decayed to args.now) x (in_flight + 1). Latency and queue depth
// together: a slow endpoint and a swamped one both look expensive.
// An endpoint that has not answered any call yet costs nothing while it has no call in flight,
// so a new or returning backend is probed at once (as Finagle's peak EWMA does); with a call in
// flight, or after answers that were all failures, it costs default_rtt x (in_flight + 1).
// Without this, a fresh endpoint priced at default_rtt would lose every comparison to backends
// answering in well under it, and a scale-up would never reach a lightly loaded client.
// An endpoint that has answered nothing for probe_after (it lost every comparison since) is
// probed the same way: free while nothing is in flight to it, and its answer replaces the old
// estimate. One whose calls in flight have gone unanswered for probe_after (a long-lived stream
// is one such call; a stuck backend has several) gets one probe per probe_after beside them.
// Without these, one slow answer (a cold first call) kept a backend out of a lightly loaded
// client's picks for up to decay x ln(slow / usual), a minute or more, and one never-ending
// first call (a long-lived stream) kept it out for good.
// Estimates under min_rtt count as min_rtt: sub-millisecond differences on a fast network are
// noise, and comparing them would send nearly every call of a lightly loaded client to
// whichever backend happened to answer fastest lately; floored, such backends compare by calls
// in flight alone (least_request), which spreads calls and still follows load.
class PeakEwmaPicker final : public Picker {
 public:
  PeakEwmaPicker(PickableSet set, const PeakEwmaConfig& config)
      : set_(std::move(set)),
        default_rtt_ns_(absl::ToDoubleNanoseconds(config.default_rtt)),
        min_rtt_ns_(absl::ToDoubleNanoseconds(config.min_rtt)),
        probe_after_ns_(absl::ToInt64Nanoseconds(config.probe_after)) {}

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
    const double cost_a = Cost(ea, now_ns);
    const double cost_b = Cost(eb, now_ns);
    const bool take_b = cost_b < cost_a;
    const PickableEndpoint& chosen = take_b ? eb : ea;
    // A probe sent beside calls already in flight: the next one only after probe_after again.
    if ((take_b ? cost_b : cost_a) == 0.0 && chosen.stats->in_flight() > 0) {
      chosen.stats->ClaimProbe(now_ns);
    }
    return PickResult::Chosen(chosen.index);
  }

 private:
  double Cost(const PickableEndpoint& e, int64_t now_ns) const {
    const int64_t in_flight = e.stats->in_flight();
    double latency_ns = e.stats->ReadEstimateNanos(now_ns, kUnmeasured);
    if (latency_ns == kUnmeasured) {
      if (e.stats->calls() == 0) {
        // Never answered at all: free while nothing is in flight to it, so it is tried. With a
        // first call out and unanswered (a long-lived stream, say) for probe_after: probed.
        if (in_flight == 0 || e.stats->ProbeDue(now_ns, probe_after_ns_)) return 0.0;
      }
      // Otherwise (its first call still running, or answers that were all failures, which
      // leave no latency sample) the default, so a backend failing from its first call is not
      // mistaken for a new one and sent every call.
      latency_ns = default_rtt_ns_;
    } else if (e.stats->AnswerIsStale(now_ns, probe_after_ns_) &&
               (in_flight == 0 || e.stats->ProbeDue(now_ns, probe_after_ns_))) {
      return 0.0;  // a probe
    } else if (latency_ns < min_rtt_ns_) {
      latency_ns = min_rtt_ns_;
    }
    return latency_ns * static_cast<double>(in_flight + 1);
  }

  static constexpr double kUnmeasured = -1.0;

  const PickableSet set_;
  const double default_rtt_ns_;
  const double min_rtt_ns_;
  const int64_t probe_after_ns_;
};

class PeakEwmaFactory final : public PolicyFactory {
 public:
  absl::string_view name() const override { return kPolicyName; }

  absl::StatusOr<std::shared_ptr<const PolicyConfig>> ParseConfig(
      const nlohmann::json& config) const override {
    absl::StatusOr<JsonReader> reader =
        ReadPolicyConfig(kPolicyName, config, {"default_rtt", "decay", "min_rtt", "probe_after"});
    if (!reader.ok()) return reader.status();
    auto parsed = std::make_shared<PeakEwmaConfig>();
    if (absl::Status s = reader->ReadPositiveDuration("default_rtt", &parsed->default_rtt);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = reader->ReadPositiveDuration("decay", &parsed->decay); !s.ok()) {
      return s;
    }
    if (absl::Status s = reader->ReadPositiveDuration("min_rtt", &parsed->min_rtt); !s.ok()) {
      return s;
    }
    if (absl::Status s = reader->ReadPositiveDuration("probe_after", &parsed->probe_after);
        !s.ok()) {
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
    for (const auto& stats : set.owned_stats) {
      stats->set_ewma_decay(typed.decay);
      stats->set_replace_after(typed.probe_after);
    }
    return std::make_unique<PeakEwmaPicker>(std::move(set), typed);
  }
};

}  // namespace

void RegisterPeakEwmaPolicy(PolicyRegistry& registry) {
  registry.Register(std::make_unique<PeakEwmaFactory>());
}

}  // namespace sluice
