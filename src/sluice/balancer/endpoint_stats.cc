#include "sluice/balancer/endpoint_stats.h"

#include <algorithm>
#include <cmath>

namespace sluice {

double EwmaDecayFactor(int64_t elapsed_ns, int64_t decay_ns) {
  if (decay_ns <= 0) return 0.0;
  if (elapsed_ns <= 0) return 1.0;
  return std::exp(-static_cast<double>(elapsed_ns) / static_cast<double>(decay_ns));
}

namespace {

double UpdateNanos(double estimate_ns, double sample_ns, int64_t elapsed_ns, int64_t decay_ns) {
  if (sample_ns > estimate_ns) return sample_ns;
  const double w = EwmaDecayFactor(elapsed_ns, decay_ns);
  return estimate_ns * w + sample_ns * (1.0 - w);
}

int64_t SaturatingNanos(absl::Duration d) {
  // ToInt64Nanoseconds saturates at +-inf; keep the sentinel free for "no sample".
  return std::max(absl::ToInt64Nanoseconds(d), std::numeric_limits<int64_t>::min() + 1);
}

}  // namespace

double PeakEwmaUpdate(double estimate_ns, double sample_ns, absl::Duration elapsed_since_last,
                      absl::Duration decay) {
  return UpdateNanos(estimate_ns, sample_ns, absl::ToInt64Nanoseconds(elapsed_since_last),
                     absl::ToInt64Nanoseconds(decay));
}

EndpointStats::EndpointStats(absl::Duration ewma_decay)
    : decay_ns_(absl::ToInt64Nanoseconds(ewma_decay)) {}

void EndpointStats::set_ewma_decay(absl::Duration decay) {
  decay_ns_.store(absl::ToInt64Nanoseconds(decay), std::memory_order_relaxed);
}

void EndpointStats::OnCallFinished(bool success, absl::Duration latency, absl::Time now) {
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
  calls_.fetch_add(1, std::memory_order_relaxed);
  if (!success) failures_.fetch_add(1, std::memory_order_relaxed);

  const double sample_ns = std::max(0.0, absl::ToDoubleNanoseconds(latency));
  const int64_t now_ns = SaturatingNanos(now - absl::UnixEpoch());
  const int64_t decay_ns = decay_ns_.load(std::memory_order_relaxed);
  const int64_t previous_answer = last_answer_ns_.exchange(now_ns, std::memory_order_relaxed);
  probe_clock_ns_.store(kNoSample, std::memory_order_relaxed);
  const bool after_silence =
      previous_answer != kNoSample &&
      now_ns - previous_answer >= replace_after_ns_.load(std::memory_order_relaxed);
  double estimate = estimate_ns_.load(std::memory_order_relaxed);
  for (;;) {
    const int64_t last = last_update_ns_.load(std::memory_order_acquire);
    double next;
    if (last == kNoSample || (after_silence && success)) {
      // The first real measurement replaces whatever default a reader assumed; so does the
      // first after a long silence (the estimate then describes a past moment).
      if (!success) return;
      next = sample_ns;
    } else if (!success && sample_ns <= estimate) {
      return;
    } else {
      next = UpdateNanos(estimate, sample_ns, now_ns - last, decay_ns);
    }
    if (estimate_ns_.compare_exchange_weak(estimate, next, std::memory_order_release,
                                           std::memory_order_relaxed)) {
      break;
    }
  }
  // The update time only moves forward, so a late reporter cannot rewind the decay.
  int64_t last = last_update_ns_.load(std::memory_order_relaxed);
  while ((last == kNoSample || last < now_ns) &&
         !last_update_ns_.compare_exchange_weak(last, now_ns, std::memory_order_release,
                                                std::memory_order_relaxed)) {
  }
}

double EndpointStats::ReadEstimateNanos(int64_t now_ns, double fallback_ns) const {
  const int64_t last = last_update_ns_.load(std::memory_order_acquire);
  if (last == kNoSample) return fallback_ns;
  const double estimate = estimate_ns_.load(std::memory_order_relaxed);
  return estimate * EwmaDecayFactor(now_ns - last, decay_ns_.load(std::memory_order_relaxed));
}

absl::Duration EndpointStats::ReadEstimate(absl::Time now, absl::Duration fallback) const {
  return absl::Nanoseconds(ReadEstimateNanos(SaturatingNanos(now - absl::UnixEpoch()),
                                             absl::ToDoubleNanoseconds(fallback)));
}

void EndpointStats::OnLoadReport(double qps, double eps, double utilization, absl::Time now) {
  // NaN fails both comparisons too.
  if (!(qps > 0) || !(utilization > 0) || !std::isfinite(qps) || !std::isfinite(utilization)) {
    return;
  }
  const int64_t now_ns = SaturatingNanos(now - absl::UnixEpoch());
  const int64_t last = report_last_ns_.load(std::memory_order_relaxed);
  if (last == kNoSample || now_ns - last >= report_expiration_ns_.load(std::memory_order_relaxed)) {
    report_run_start_ns_.store(now_ns, std::memory_order_relaxed);
  }
  report_qps_.store(qps, std::memory_order_relaxed);
  report_eps_.store(std::isfinite(eps) && eps > 0 ? eps : 0.0, std::memory_order_relaxed);
  report_utilization_.store(utilization, std::memory_order_relaxed);
  report_last_ns_.store(now_ns, std::memory_order_release);
}

double EndpointStats::ReadReportedWeight(absl::Time now, absl::Duration blackout,
                                         double error_penalty) const {
  const int64_t last = report_last_ns_.load(std::memory_order_acquire);
  if (last == kNoSample) return 0;
  const int64_t now_ns = SaturatingNanos(now - absl::UnixEpoch());
  if (now_ns - last >= report_expiration_ns_.load(std::memory_order_relaxed)) return 0;
  if (now_ns - report_run_start_ns_.load(std::memory_order_relaxed) <
      absl::ToInt64Nanoseconds(blackout)) {
    return 0;
  }
  const double qps = report_qps_.load(std::memory_order_relaxed);
  const double eps = report_eps_.load(std::memory_order_relaxed);
  const double utilization =
      report_utilization_.load(std::memory_order_relaxed) + error_penalty * eps / qps;
  return qps / utilization;
}

}  // namespace sluice
