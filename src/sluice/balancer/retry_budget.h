#pragma once

#include <atomic>
#include <cstdint>

namespace sluice {

// Bounds the retries in flight of one service to ratio x calls in flight + min, so that a
// service that is already failing is not hit by a storm of retries (Envoy's retry budget).
// A retry holds its slot from the moment it is granted until its attempt ends.
//
// Thread-safe and lock-free: the library's calls use it from many threads, the proxy's workers
// each from their event loop. RetryState (retry_state.h) is its usual caller.
class RetryBudget {
 public:
  RetryBudget(double ratio, int64_t min) : ratio_(ratio), min_(min) {}
  RetryBudget(const RetryBudget&) = delete;
  RetryBudget& operator=(const RetryBudget&) = delete;

  // Brackets every call (not every attempt): the budget grows with the traffic.
  void CallStarted() { calls_in_flight_.fetch_add(1, std::memory_order_relaxed); }
  void CallEnded() { calls_in_flight_.fetch_sub(1, std::memory_order_relaxed); }

  // Takes a retry slot if the budget has one free; EndRetry gives it back.
  bool TryStartRetry();
  void EndRetry() { retries_in_flight_.fetch_sub(1, std::memory_order_relaxed); }

  int64_t calls_in_flight() const { return calls_in_flight_.load(std::memory_order_relaxed); }
  int64_t retries_in_flight() const { return retries_in_flight_.load(std::memory_order_relaxed); }
  // Retries in flight allowed now.
  int64_t limit() const;

 private:
  const double ratio_;
  const int64_t min_;
  std::atomic<int64_t> calls_in_flight_{0};
  std::atomic<int64_t> retries_in_flight_{0};
};

}  // namespace sluice
