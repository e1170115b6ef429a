#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/time/time.h"
#include "sluice/balancer/endpoint_stats.h"

namespace sluice {

// The pure maths of the "prequal" policy (after Prequal: Wydrowski et al., "Load is not what
// you should balance", NSDI 2024): what one candidate endpoint looks like, and the hot-cold rule
// that chooses among candidates. Kept apart from the picker so it is tested exactly.

// One probed candidate: its estimated requests in flight (RIF) and latency.
struct CandidateLoad {
  double requests_in_flight = 0;
  double latency_ns = 0;
};

// A load report the endpoint itself sent (piggybacked on a response's trailers, such as an ORCA
// report): its own count of requests in flight, over every caller, at `received`. Absent when
// the endpoint sends none.
struct ReportedLoad {
  double requests_in_flight = 0;
  absl::Time received;
};

// What the caller knows of one endpoint at `now`: requests in flight are the caller's own
// count, raised to the endpoint's reported count while that report is younger than
// `report_max_age` (a report sees every caller's calls, the local count only this caller's, so
// the larger is the better guess of the two); latency is the endpoint's peak-EWMA estimate
// (decayed to `now`), or `default_latency_ns` before its first successful call.
CandidateLoad EstimateCandidateLoad(const EndpointStats& stats, int64_t now_unix_ns,
                                    double default_latency_ns,
                                    const std::optional<ReportedLoad>& report,
                                    absl::Duration report_max_age);

// The hot-cold lexicographic rule. Among `count` (>= 1) candidates, the ones whose RIF is above
// the `hot_quantile` quantile of the candidates' RIFs are hot; the chosen one is the coldest by
// latency: the lowest latency among the cold candidates; ties go to fewer requests in flight,
// then to the earlier candidate (callers list candidates in random order).
// The quantile is the lower one, sorted_rif[floor(hot_quantile x (count - 1))], so the
// least-loaded candidate is always cold and never all are hot (Prequal's fallback for an all-hot
// pool, least RIF, cannot arise). With 3 candidates and a quantile in [0.5, 1): the one(s) above
// the median are hot. hot_quantile is clamped to [0, 1]; 1 makes nothing hot (latency only),
// 0 keeps only the least-loaded (least requests, latency breaking ties).
size_t ChooseHotCold(const CandidateLoad* candidates, size_t count, double hot_quantile);

}  // namespace sluice
