#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
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

// Weights from server load reports, as in gRFC A58; Metadata.weight until there are any.
class WeightedRoundRobinConfig final : public PolicyConfig {
 public:
  // A backend must report continuously this long before its reported weight is used.
  absl::Duration blackout_period = absl::Seconds(10);
  // A reported weight older than this is dropped (then the blackout applies again).
  absl::Duration weight_expiration_period = absl::Minutes(3);
  // How often a picker recomputes its weights from the latest reports (at least 100 ms).
  absl::Duration weight_update_period = absl::Seconds(1);
  // Errors per query count as this much extra utilization.
  double error_utilization_penalty = 1.0;
};

constexpr absl::Duration kMinWeightUpdatePeriod = absl::Milliseconds(100);

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

// Which weights a picker follows now.
enum class WeightSource : uint8_t {
  kMetadata,  // Metadata.weight, through the precomputed EDF schedule
  kReported,  // weights from load reports, through the stride scheduler
};

// Reported weights scaled so the largest is kMaxScaledWeight, the stride scheduler's period.
constexpr uint32_t kMaxScaledWeight = 65535;
// How often a pick looks at the clock for a due weight update.
constexpr uint64_t kPicksPerClockCheck = 64;

class WeightedRoundRobinPicker final : public Picker {
 public:
  WeightedRoundRobinPicker(PickableSet pickable, std::vector<uint32_t> schedule, uint64_t start,
                           const WeightedRoundRobinConfig& config)
      : pickable_(std::move(pickable)),
        schedule_(std::move(schedule)),
        config_(config),
        scaled_(pickable_.size()),
        next_(start),
        sequence_(start) {
    for (auto& w : scaled_) w.store(kMaxScaledWeight, std::memory_order_relaxed);
    for (const auto& stats : pickable_.owned_stats) {
      stats->set_report_expiration(config_.weight_expiration_period);
    }
  }

  PickResult Pick(const PickArgs& args) const override {
    if (schedule_.empty()) return PickResult::None();
    uint64_t n;
    size_t chosen;
    if (source_.load(std::memory_order_acquire) == WeightSource::kMetadata) {
      n = next_.fetch_add(1, std::memory_order_relaxed);
      chosen = schedule_[n % schedule_.size()];
    } else {
      n = StridePick();
      chosen = pickable_.endpoints[n % scaled_.size()].index;
    }
    // The clock is read on one pick in kPicksPerClockCheck, which keeps a pick at a few
    // nanoseconds; a due weight update therefore lands within that many picks.
    if (n % kPicksPerClockCheck == 0) [[unlikely]] {
      MaybeUpdateWeights(args.now);
    }
    return PickResult::Chosen(chosen);
  }

 private:
  // Stride scheduling (gRFC A58's static stride scheduler): the sequence walks the endpoints
  // in generations of n picks; endpoint i, of scaled weight w out of M, takes its turn in
  // generation g when (w*g + offset_i) mod M >= M - w, i.e. when its accumulated credit w/M
  // crosses a whole number, which happens exactly w times in M generations. The heaviest
  // endpoint (w = M) takes every turn, so a pick ends within n steps. Lock-free.
  // Returns the sequence number of the turn taken; the endpoint is that number mod n.
  uint64_t StridePick() const {
    const size_t n = scaled_.size();
    for (;;) {
      const uint64_t s = sequence_.fetch_add(1, std::memory_order_relaxed);
      const size_t i = s % n;
      const uint64_t generation = (s / n) % kMaxScaledWeight;
      const uint64_t w = scaled_[i].load(std::memory_order_relaxed);
      // A fixed per-endpoint offset keeps light endpoints from all taking the same generation.
      const uint64_t offset = (i * 40503u) % kMaxScaledWeight;
      if ((w * generation + offset) % kMaxScaledWeight >= kMaxScaledWeight - w) return s;
    }
  }

  // Every weight_update_period, one pick (whoever wins the race for the due time) reads the
  // latest reports. Fewer than two endpoints with usable reports: back to Metadata.weight.
  // Endpoints without one get the mean of the others, as in A58.
  // Out of line: the rare path stays out of the pick's instructions.
  [[gnu::noinline]] void MaybeUpdateWeights(absl::Time now) const {
    const int64_t now_ns = absl::ToUnixNanos(now);
    int64_t due = next_update_ns_.load(std::memory_order_relaxed);
    if (now_ns < due) return;
    const int64_t next_due = now_ns + absl::ToInt64Nanoseconds(config_.weight_update_period);
    if (!next_update_ns_.compare_exchange_strong(due, next_due, std::memory_order_relaxed)) {
      return;
    }
    const size_t n = pickable_.size();
    auto weight_of = [&](size_t i) {
      return pickable_.endpoints[i].stats->ReadReportedWeight(now, config_.blackout_period,
                                                              config_.error_utilization_penalty);
    };
    // Two passes instead of a buffer, so a pick never allocates; a report landing in between
    // only moves one weight a little (the clamp below keeps it in range).
    double sum = 0, max = 0;
    size_t reporting = 0;
    for (size_t i = 0; i < n; ++i) {
      const double w = weight_of(i);
      if (w > 0) {
        ++reporting;
        sum += w;
        max = std::max(max, w);
      }
    }
    if (reporting < 2) {
      source_.store(WeightSource::kMetadata, std::memory_order_release);
      return;
    }
    const double mean = sum / static_cast<double>(reporting);
    for (size_t i = 0; i < n; ++i) {
      const double reported = weight_of(i);
      const double w = reported > 0 ? reported : mean;
      const double scaled = std::round(w / max * kMaxScaledWeight);
      scaled_[i].store(static_cast<uint32_t>(std::clamp(scaled, 1.0, double{kMaxScaledWeight})),
                       std::memory_order_relaxed);
    }
    source_.store(WeightSource::kReported, std::memory_order_release);
  }

  const PickableSet pickable_;
  const std::vector<uint32_t> schedule_;
  const WeightedRoundRobinConfig config_;
  mutable std::vector<std::atomic<uint32_t>> scaled_;
  mutable std::atomic<WeightSource> source_{WeightSource::kMetadata};
  alignas(64) mutable std::atomic<int64_t> next_update_ns_{std::numeric_limits<int64_t>::min()};
  alignas(64) mutable std::atomic<uint64_t> next_;
  alignas(64) mutable std::atomic<uint64_t> sequence_;
};

class WeightedRoundRobinFactory final : public PolicyFactory {
 public:
  absl::string_view name() const override { return kPolicyName; }
  bool UsesLoadReports() const override { return true; }

  absl::StatusOr<std::shared_ptr<const PolicyConfig>> ParseConfig(
      const nlohmann::json& config) const override {
    absl::StatusOr<JsonReader> reader =
        ReadPolicyConfig(kPolicyName, config,
                         {"blackout_period", "weight_expiration_period", "weight_update_period",
                          "error_utilization_penalty"});
    if (!reader.ok()) return reader.status();
    auto parsed = std::make_shared<WeightedRoundRobinConfig>();
    for (absl::Status s : {
             reader->ReadPositiveDuration("blackout_period", &parsed->blackout_period),
             reader->ReadPositiveDuration("weight_expiration_period",
                                          &parsed->weight_expiration_period),
             reader->ReadPositiveDuration("weight_update_period", &parsed->weight_update_period),
             reader->ReadDouble("error_utilization_penalty", 0, 1e6,
                                &parsed->error_utilization_penalty),
         }) {
      if (!s.ok()) return s;
    }
    // As in gRPC: shorter update periods are raised to the floor, not rejected.
    parsed->weight_update_period = std::max(parsed->weight_update_period, kMinWeightUpdatePeriod);
    return std::shared_ptr<const PolicyConfig>(std::move(parsed));
  }

  std::unique_ptr<Picker> CreatePicker(std::vector<PickerEndpoint> endpoints,
                                       const PolicyConfig& config, Random& random) const override {
    static const WeightedRoundRobinConfig kDefaults;
    PickableSet pickable = SelectPickable(endpoints);
    std::vector<uint32_t> schedule = BuildSchedule(pickable.endpoints);
    // Every client follows the same cycle; a random entry point keeps them out of step.
    const uint64_t start = schedule.empty() ? 0 : random.Uniform(schedule.size());
    return std::make_unique<WeightedRoundRobinPicker>(
        std::move(pickable), std::move(schedule), start,
        ConfigAs<WeightedRoundRobinConfig>(config, kPolicyName, kDefaults));
  }
};

}  // namespace

void RegisterWeightedRoundRobinPolicy(PolicyRegistry& registry) {
  registry.Register(std::make_unique<WeightedRoundRobinFactory>());
}

}  // namespace sluice
