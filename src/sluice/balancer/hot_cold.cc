#include "sluice/balancer/hot_cold.h"

#include <algorithm>
#include <cmath>

namespace sluice {

CandidateLoad EstimateCandidateLoad(const EndpointStats& stats, int64_t now_unix_ns,
                                    double default_latency_ns,
                                    const std::optional<ReportedLoad>& report,
                                    absl::Duration report_max_age) {
  CandidateLoad load;
  load.requests_in_flight = static_cast<double>(stats.in_flight());
  load.latency_ns = stats.ReadEstimateNanos(now_unix_ns, default_latency_ns);
  if (report.has_value()) {
    const absl::Duration age = absl::FromUnixNanos(now_unix_ns) - report->received;
    if (age <= report_max_age) {
      load.requests_in_flight = std::max(load.requests_in_flight, report->requests_in_flight);
    }
  }
  return load;
}

size_t ChooseHotCold(const CandidateLoad* candidates, size_t count, double hot_quantile) {
  if (count <= 1) return 0;
  // Pools are small (at most the policy's probe count), so a sort of a stack copy is cheapest.
  constexpr size_t kMaxSorted = 64;
  const size_t sorted_count = std::min(count, kMaxSorted);
  double sorted[kMaxSorted];
  for (size_t i = 0; i < sorted_count; ++i) sorted[i] = candidates[i].requests_in_flight;
  std::sort(sorted, sorted + sorted_count);
  const double q = std::clamp(hot_quantile, 0.0, 1.0);
  const size_t rank = static_cast<size_t>(std::floor(q * static_cast<double>(sorted_count - 1)));
  const double threshold = sorted[rank];

  size_t best = count;
  for (size_t i = 0; i < count; ++i) {
    const CandidateLoad& c = candidates[i];
    if (c.requests_in_flight > threshold) continue;  // hot
    if (best == count || c.latency_ns < candidates[best].latency_ns ||
        (c.latency_ns == candidates[best].latency_ns &&
         c.requests_in_flight < candidates[best].requests_in_flight)) {
      best = i;
    }
  }
  return best;
}

}  // namespace sluice
