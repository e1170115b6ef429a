#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

namespace sluice {

// The one source of chance for anything that decides by chance (random picks, P2C, jitter).
// Implementations say whether they are thread-safe.
class Random {
 public:
  virtual ~Random() = default;
  virtual uint64_t Next() = 0;

  // Uniform in [0, bound); bound must be > 0. Lemire's multiply-shift: no division, and the
  // bias (< bound / 2^64) is far below anything a balancer could notice.
  uint64_t Uniform(uint64_t bound) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * bound) >> 64);
  }
  // Uniform in [0, 1).
  double UniformDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
};

// xoshiro256** seeded through splitmix64: fast, good statistics, reproducible from a seed.
// Not thread-safe: give each thread its own, or wrap it in LockedRandom.
class SeededRandom final : public Random {
 public:
  explicit SeededRandom(uint64_t seed) {
    for (auto& word : state_) {
      seed += 0x9e3779b97f4a7c15ULL;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      word = z ^ (z >> 31);
    }
  }
  uint64_t Next() override {
    const uint64_t result = Rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = Rotl(state_[3], 45);
    return result;
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t state_[4];
};

// A thread-safe wrapper for control-plane use (jitter, backoff), where a lock is cheap.
class LockedRandom final : public Random {
 public:
  explicit LockedRandom(uint64_t seed) : inner_(seed) {}
  uint64_t Next() override {
    std::lock_guard<std::mutex> lock(mu_);
    return inner_.Next();
  }

 private:
  std::mutex mu_;
  SeededRandom inner_;
};

// Thread-safe and lock-free: splitmix64 over one atomic counter. For the data plane, where
// many threads draw (P2C choices) and a lock would serialise them. Reproducible from the seed
// when draws happen in a fixed order.
class AtomicRandom final : public Random {
 public:
  explicit AtomicRandom(uint64_t seed) : counter_(seed) {}
  uint64_t Next() override {
    uint64_t z = counter_.fetch_add(0x9e3779b97f4a7c15ULL, std::memory_order_relaxed) +
                 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  std::atomic<uint64_t> counter_;
};

}  // namespace sluice
