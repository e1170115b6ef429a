#include "sluice/balancer/retry_budget.h"

namespace sluice {

int64_t RetryBudget::limit() const {
  return static_cast<int64_t>(ratio_ * static_cast<double>(calls_in_flight())) + min_;
}

bool RetryBudget::TryStartRetry() {
  const int64_t allowed = limit();
  int64_t current = retries_in_flight_.load(std::memory_order_relaxed);
  while (current < allowed) {
    if (retries_in_flight_.compare_exchange_weak(current, current + 1, std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

}  // namespace sluice
