// Pickers are read from many threads while the control plane swaps in new ones: the shape the
// Balancer and the proxy use. Meant to run clean under ThreadSanitizer (-DSLUICE_SANITIZE=thread).
#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "sluice/core/clock.h"
#include "test_util.h"

namespace sluice {
namespace {

// One picker generation with the endpoint vector its indexes refer to.
struct Generation {
  std::vector<PickerEndpoint> endpoints;
  std::unique_ptr<Picker> picker;
};

// Publication by a mutex-guarded shared_ptr copy: the lock covers one refcount increment, and
// the pick itself runs outside it. (libstdc++ 12's std::atomic<std::shared_ptr> locks with a bit
// of the pointer word that ThreadSanitizer cannot see, so it reports false races:
// google/sanitizers#1558.)
class GenerationSlot {
 public:
  std::shared_ptr<const Generation> load() const {
    std::lock_guard<std::mutex> lock(mu_);
    return current_;
  }
  void store(std::shared_ptr<const Generation> next) {
    std::lock_guard<std::mutex> lock(mu_);
    current_.swap(next);
    // The old generation is released outside the lock (here, as `next` goes out of scope).
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const Generation> current_;
};

TEST(PickerConcurrencyTest, ThreadsPickWhileAnotherThreadSwapsPickers) {
  PolicyRegistry registry;
  RegisterBuiltinPolicies(registry);
  const std::vector<std::string> policies = registry.Names();
  // The stats outlive every generation, as the Balancer's do.
  const std::vector<PickerEndpoint> all = testing::MakeWeightedEndpoints({1, 2, 3, 1, 2, 3, 1, 2});
  FakeClock clock;

  GenerationSlot current;
  std::atomic<bool> done{false};
  auto build = [&](size_t round, Random& random) {
    auto generation = std::make_shared<Generation>();
    // A changing subset, sometimes empty, sometimes with draining endpoints.
    for (size_t i = 0; i < all.size(); ++i) {
      if ((round >> (i % 4)) & 1) continue;
      PickerEndpoint e = all[i];
      e.endpoint.draining = (round + i) % 5 == 0;
      generation->endpoints.push_back(std::move(e));
    }
    auto configured = registry.Configure(policies[round % policies.size()], nullptr);
    generation->picker = configured->CreatePicker(generation->endpoints, random);
    return std::shared_ptr<const Generation>(std::move(generation));
  };
  SeededRandom control_random(1);
  current.store(build(0, control_random));

  constexpr int kPickers = 3;
  std::atomic<uint64_t> total_picks{0};
  std::atomic<uint64_t> bad_picks{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kPickers; ++t) {
    threads.emplace_back([&, t] {
      SeededRandom random(100 + t);
      uint64_t picks = 0;
      while (!done.load(std::memory_order_relaxed) || picks < 1000) {
        std::shared_ptr<const Generation> generation = current.load();
        PickArgs args;
        args.random = &random;
        args.now = clock.Now();
        args.hash_key = random.Next();
        const PickResult r = generation->picker->Pick(args);
        if (!r.has_endpoint()) continue;
        if (r.index() >= generation->endpoints.size() ||
            generation->endpoints[r.index()].endpoint.draining) {
          bad_picks.fetch_add(1);
          continue;
        }
        EndpointStats& stats = *generation->endpoints[r.index()].stats;
        stats.OnCallStarted();
        stats.OnCallFinished(picks % 7 != 0, absl::Microseconds(100 + picks % 500), clock.Now());
        ++picks;
      }
      total_picks.fetch_add(picks);
    });
  }
  std::thread control([&] {
    for (size_t round = 1; round <= 600; ++round) {
      current.store(build(round, control_random));
      clock.Advance(absl::Milliseconds(3));
    }
    current.store(build(0, control_random));  // never empty, so pickers can finish
    done.store(true);
  });
  control.join();
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(bad_picks.load(), 0u);
  uint64_t calls = 0;
  for (const auto& e : all) {
    EXPECT_EQ(e.stats->in_flight(), 0);
    calls += e.stats->calls();
  }
  EXPECT_EQ(calls, total_picks.load());
  EXPECT_GE(calls, uint64_t{kPickers} * 1000);
}

}  // namespace
}  // namespace sluice
