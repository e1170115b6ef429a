#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sluice {

// Counters of the calls one endpoint answered: calls, outcomes by gRPC status code and a latency
// histogram. Relaxed atomics: any thread records, a scraper reads; exact cross-counter
// consistency is not needed for monitoring. Shared by the proxy (per backend) and the client
// library's Prometheus export (per endpoint).
struct CallMetrics {
  // Upper bounds of the latency histogram buckets, in seconds (+Inf is implicit).
  static constexpr std::array<double, 12> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1,    5};
  static constexpr int kCodes = 17;  // gRPC status codes 0-16

  std::atomic<uint64_t> calls{0};
  std::array<std::atomic<uint64_t>, kCodes> by_code{};
  std::array<std::atomic<uint64_t>, kBuckets.size() + 1> latency_buckets{};
  std::atomic<uint64_t> latency_count{0};
  std::atomic<int64_t> latency_sum_ns{0};

  // One finished call; a code outside 0-16 counts as UNKNOWN.
  void Record(int code, absl::Duration latency);

  // {"calls": N, "codes": {"0": N, "14": N}, "latency_buckets": [per-bucket counts, +Inf last]}
  nlohmann::json ToJson() const;
};

// Appends the Prometheus text of every endpoint's call metrics: <prefix>_calls_total,
// <prefix>_responses_total{grpc_status}, and the <prefix>_latency_seconds histogram, each
// labelled `label`="<address>".
void AppendCallMetricsPrometheus(std::string& out, absl::string_view prefix,
                                 absl::string_view label,
                                 const std::map<std::string, const CallMetrics*>& endpoints);

// "# HELP name help\n# TYPE name type\n".
void AppendPrometheusHeader(std::string& out, absl::string_view name, absl::string_view type,
                            absl::string_view help);

}  // namespace sluice
