#include "sluice/core/call_metrics.h"

#include "absl/strings/str_cat.h"

namespace sluice {

void CallMetrics::Record(int code, absl::Duration latency) {
  calls.fetch_add(1, std::memory_order_relaxed);
  if (code < 0 || code >= kCodes) code = 2;  // UNKNOWN
  by_code[code].fetch_add(1, std::memory_order_relaxed);
  const double seconds = absl::ToDoubleSeconds(latency);
  size_t bucket = 0;
  while (bucket < kBuckets.size() && seconds > kBuckets[bucket]) ++bucket;
  latency_buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  latency_count.fetch_add(1, std::memory_order_relaxed);
  latency_sum_ns.fetch_add(absl::ToInt64Nanoseconds(latency), std::memory_order_relaxed);
}

nlohmann::json CallMetrics::ToJson() const {
  constexpr auto r = std::memory_order_relaxed;
  nlohmann::json codes = nlohmann::json::object();
  for (int code = 0; code < kCodes; ++code) {
    if (const uint64_t n = by_code[code].load(r); n > 0) codes[std::to_string(code)] = n;
  }
  nlohmann::json buckets = nlohmann::json::array();
  for (const auto& bucket : latency_buckets) buckets.push_back(bucket.load(r));
  return {{"calls", calls.load(r)}, {"codes", codes}, {"latency_buckets", buckets}};
}

void AppendPrometheusHeader(std::string& out, absl::string_view name, absl::string_view type,
                            absl::string_view help) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

void AppendCallMetricsPrometheus(std::string& out, absl::string_view prefix,
                                 absl::string_view label,
                                 const std::map<std::string, const CallMetrics*>& endpoints) {
  constexpr auto r = std::memory_order_relaxed;
  const std::string calls = absl::StrCat(prefix, "_calls_total");
  AppendPrometheusHeader(out, calls, "counter", "Calls (attempts) sent.");
  for (const auto& [address, m] : endpoints) {
    absl::StrAppend(&out, calls, "{", label, "=\"", address, "\"} ", m->calls.load(r), "\n");
  }
  const std::string responses = absl::StrCat(prefix, "_responses_total");
  AppendPrometheusHeader(out, responses, "counter", "Calls (attempts) ended, by gRPC status code.");
  for (const auto& [address, m] : endpoints) {
    for (int code = 0; code < CallMetrics::kCodes; ++code) {
      const uint64_t n = m->by_code[code].load(r);
      if (n == 0) continue;
      absl::StrAppend(&out, responses, "{", label, "=\"", address, "\",grpc_status=\"", code,
                      "\"} ", n, "\n");
    }
  }
  const std::string latency = absl::StrCat(prefix, "_latency_seconds");
  AppendPrometheusHeader(out, latency, "histogram", "Call (attempt) latency.");
  for (const auto& [address, m] : endpoints) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= CallMetrics::kBuckets.size(); ++i) {
      cumulative += m->latency_buckets[i].load(r);
      const std::string le = i < CallMetrics::kBuckets.size()
                                 ? absl::StrCat(CallMetrics::kBuckets[i])
                                 : std::string("+Inf");
      absl::StrAppend(&out, latency, "_bucket{", label, "=\"", address, "\",le=\"", le, "\"} ",
                      cumulative, "\n");
    }
    absl::StrAppend(&out, latency, "_sum{", label, "=\"", address, "\"} ",
                    static_cast<double>(m->latency_sum_ns.load(r)) / 1e9, "\n");
    absl::StrAppend(&out, latency, "_count{", label, "=\"", address, "\"} ",
                    m->latency_count.load(r), "\n");
  }
}

}  // namespace sluice
