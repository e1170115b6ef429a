// Picker::Pick per policy and endpoint count, from 1 and 2 threads sharing one picker; plus the
// control-plane cost of building a picker and the per-call cost of reporting to EndpointStats.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sluice/balancer/builtin_policies.h"
#include "sluice/balancer/picker.h"
#include "sluice/balancer/policy.h"
#include "sluice/core/clock.h"
#include "sluice/core/random.h"

namespace sluice {
namespace {

// A row of the benchmark: a policy and whether its endpoints have unequal weights.
struct Variant {
  std::string label;
  std::string policy;
  bool weighted;
};

// Endpoints whose stats look like a live service: a few calls in flight, latencies 1-20 ms.
std::vector<PickerEndpoint> MakeEndpoints(int n, bool weighted, const Clock& clock) {
  SeededRandom random(n);
  std::vector<PickerEndpoint> endpoints;
  endpoints.reserve(n);
  for (int i = 0; i < n; ++i) {
    PickerEndpoint e;
    e.endpoint.address =
        absl::StrCat("10.", i / 65536, ".", (i / 256) % 256, ".", i % 256, ":50051");
    e.endpoint.weight = weighted ? 1 + i % 4 : 1;
    e.stats = std::make_shared<EndpointStats>();
    e.stats->OnCallStarted();
    e.stats->OnCallFinished(true, absl::Milliseconds(1 + random.Uniform(20)), clock.Now());
    for (uint64_t k = random.Uniform(4); k > 0; --k) e.stats->OnCallStarted();
    endpoints.push_back(std::move(e));
  }
  return endpoints;
}

struct Fixture {
  std::vector<PickerEndpoint> endpoints;
  std::unique_ptr<Picker> picker;
};

class Fixtures {
 public:
  Fixtures() { RegisterBuiltinPolicies(registry_); }

  // Built once per (variant, size) and shared by the benchmark's threads.
  const Fixture& Get(const Variant& variant, int n) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = fixtures_[{variant.label, n}];
    if (slot == nullptr) {
      slot = std::make_unique<Fixture>();
      slot->endpoints = MakeEndpoints(n, variant.weighted, clock_);
      SeededRandom random(7);
      slot->picker =
          registry_.Configure(variant.policy, nullptr)->CreatePicker(slot->endpoints, random);
    }
    return *slot;
  }
  const PolicyRegistry& registry() const { return registry_; }
  const FakeClock& clock() const { return clock_; }

 private:
  PolicyRegistry registry_;
  FakeClock clock_;
  std::mutex mu_;
  std::map<std::tuple<std::string, int>, std::unique_ptr<Fixture>> fixtures_;
};

void BM_Pick(benchmark::State& state, Fixtures* fixtures, const Variant* variant) {
  const Fixture& fixture = fixtures->Get(*variant, static_cast<int>(state.range(0)));
  SeededRandom random(1234 + state.thread_index());
  PickArgs args;
  args.random = &random;
  args.now = fixtures->clock().Now() + absl::Seconds(1);
  const bool hashed = variant->policy == "ring_hash";
  for (auto _ : state) {
    if (hashed) args.hash_key = random.Next();
    PickResult result = fixture.picker->Pick(args);
    benchmark::DoNotOptimize(result);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_CreatePicker(benchmark::State& state, Fixtures* fixtures, const Variant* variant) {
  const std::vector<PickerEndpoint> endpoints =
      MakeEndpoints(static_cast<int>(state.range(0)), variant->weighted, fixtures->clock());
  const ConfiguredPolicy policy = *fixtures->registry().Configure(variant->policy, nullptr);
  SeededRandom random(1);
  for (auto _ : state) {
    std::unique_ptr<Picker> picker = policy.CreatePicker(endpoints, random);
    benchmark::DoNotOptimize(picker);
  }
}

// What every call pays on the data path besides the pick.
void BM_ReportCall(benchmark::State& state) {
  static EndpointStats* shared = nullptr;
  if (state.thread_index() == 0) shared = new EndpointStats();
  FakeClock clock;
  int64_t i = 0;
  for (auto _ : state) {
    shared->OnCallStarted();
    shared->OnCallFinished(true, absl::Microseconds(500 + (++i & 255)), clock.Now());
  }
  if (state.thread_index() == 0) {
    delete shared;
    shared = nullptr;
  }
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  using sluice::Fixtures;
  using sluice::Variant;
  // Explicit registration here rather than static initialisers, like the library itself.
  const std::vector<Variant> variants = {
      {"round_robin", "round_robin", false},
      {"random", "random", false},
      {"random_weighted", "random", true},
      {"least_request", "least_request", false},
      {"least_request_weighted", "least_request", true},
      {"peak_ewma", "peak_ewma", false},
      {"weighted_round_robin", "weighted_round_robin", true},
      {"ring_hash", "ring_hash", false},
  };
  Fixtures fixtures_storage;
  Fixtures* fixtures = &fixtures_storage;
  for (const Variant& variant : variants) {
    benchmark::RegisterBenchmark(absl::StrCat("BM_Pick/", variant.label).c_str(), sluice::BM_Pick,
                                 fixtures, &variant)
        ->Arg(1)
        ->Arg(10)
        ->Arg(1000)
        ->Arg(10000)
        ->Threads(1)
        ->Threads(2)
        ->UseRealTime();
  }
  for (const Variant& variant : variants) {
    benchmark::RegisterBenchmark(absl::StrCat("BM_CreatePicker/", variant.label).c_str(),
                                 sluice::BM_CreatePicker, fixtures, &variant)
        ->Arg(10000)
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RegisterBenchmark("BM_ReportCall", sluice::BM_ReportCall)
      ->Threads(1)
      ->Threads(2)
      ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
