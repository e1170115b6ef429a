#include "sluice/proxy/metrics.h"

#include "absl/strings/str_cat.h"

namespace sluice::proxy {

void BackendMetrics::Record(int code, absl::Duration latency) {
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

BackendMetrics* ProxyMetrics::ForBackend(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = backends_[address];
  if (slot == nullptr) slot = std::make_unique<BackendMetrics>();
  return slot.get();
}

namespace {

void Metric(std::string& out, absl::string_view name, absl::string_view type,
            absl::string_view help) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

}  // namespace

std::string ProxyMetrics::RenderPrometheus(const std::vector<client::BackendInfo>& backends) const {
  std::string out;
  auto gauge = [&](absl::string_view name, absl::string_view help, int64_t value) {
    Metric(out, name, "gauge", help);
    absl::StrAppend(&out, name, " ", value, "\n");
  };
  auto counter = [&](absl::string_view name, absl::string_view help, uint64_t value) {
    Metric(out, name, "counter", help);
    absl::StrAppend(&out, name, " ", value, "\n");
  };
  constexpr auto r = std::memory_order_relaxed;
  gauge("sluice_proxy_downstream_connections", "Client connections open.",
        downstream_connections.load(r));
  counter("sluice_proxy_downstream_connections_total", "Client connections accepted.",
          downstream_connections_total.load(r));
  gauge("sluice_proxy_upstream_connections", "Backend connections open.",
        upstream_connections.load(r));
  counter("sluice_proxy_upstream_connect_failures_total", "Backend connections that failed.",
          upstream_connects_failed.load(r));
  gauge("sluice_proxy_streams", "Calls in progress.", streams.load(r));
  counter("sluice_proxy_streams_total", "Calls received.", streams_total.load(r));
  counter("sluice_proxy_retries_total", "Attempts sent again to another backend.",
          retries_total.load(r));
  counter("sluice_proxy_rejected_requests_total", "Requests refused as not gRPC.",
          rejected_requests_total.load(r));
  counter("sluice_proxy_protocol_errors_total", "Connections closed for HTTP/2 errors.",
          protocol_errors_total.load(r));
  counter("sluice_proxy_deadline_exceeded_total", "Calls ended by their grpc-timeout.",
          deadline_exceeded_total.load(r));
  counter("sluice_proxy_attempt_timeouts_total",
          "Attempts given up after --attempt-timeout without an answer from the backend.",
          attempt_timeouts_total.load(r));
  counter("sluice_proxy_client_certificate_rejections_total",
          "Client TLS handshakes refused: no client certificate, or one --tls-client-ca did not "
          "sign.",
          client_certificate_rejections_total.load(r));
  counter("sluice_proxy_tls_reloads_total", "TLS certificates reloaded after their files changed.",
          tls_reloads_total.load(r));
  counter("sluice_proxy_tls_reload_failures_total",
          "Changed TLS files that did not load; the previous certificates stayed in use.",
          tls_reload_failures_total.load(r));
  gauge("sluice_proxy_buffered_bytes", "Message bytes held by the proxy for calls in progress.",
        buffered_bytes.load(r));

  Metric(out, "sluice_proxy_backend_in_flight", "gauge", "Calls in flight per backend.");
  for (const auto& b : backends) {
    absl::StrAppend(&out, "sluice_proxy_backend_in_flight{backend=\"", b.address, "\"} ",
                    b.in_flight, "\n");
  }
  Metric(out, "sluice_proxy_backend_ejections", "gauge", "Times the backend was ejected.");
  for (const auto& b : backends) {
    absl::StrAppend(&out, "sluice_proxy_backend_ejections{backend=\"", b.address, "\"} ",
                    b.ejections, "\n");
  }
  Metric(out, "sluice_proxy_backend_up", "gauge", "1 if the backend can be picked.");
  for (const auto& b : backends) {
    absl::StrAppend(&out, "sluice_proxy_backend_up{backend=\"", b.address, "\",state=\"", b.state,
                    "\"} ", b.state == "ready" ? 1 : 0, "\n");
  }

  std::lock_guard<std::mutex> lock(mu_);
  Metric(out, "sluice_proxy_backend_calls_total", "counter", "Attempts sent to the backend.");
  for (const auto& [address, m] : backends_) {
    absl::StrAppend(&out, "sluice_proxy_backend_calls_total{backend=\"", address, "\"} ",
                    m->calls.load(r), "\n");
  }
  Metric(out, "sluice_proxy_backend_responses_total", "counter",
         "Attempts ended, by gRPC status code.");
  for (const auto& [address, m] : backends_) {
    for (int code = 0; code < BackendMetrics::kCodes; ++code) {
      const uint64_t n = m->by_code[code].load(r);
      if (n == 0) continue;
      absl::StrAppend(&out, "sluice_proxy_backend_responses_total{backend=\"", address,
                      "\",grpc_status=\"", code, "\"} ", n, "\n");
    }
  }
  Metric(out, "sluice_proxy_backend_latency_seconds", "histogram", "Attempt latency.");
  for (const auto& [address, m] : backends_) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= BackendMetrics::kBuckets.size(); ++i) {
      cumulative += m->latency_buckets[i].load(r);
      const std::string le = i < BackendMetrics::kBuckets.size()
                                 ? absl::StrCat(BackendMetrics::kBuckets[i])
                                 : std::string("+Inf");
      absl::StrAppend(&out, "sluice_proxy_backend_latency_seconds_bucket{backend=\"", address,
                      "\",le=\"", le, "\"} ", cumulative, "\n");
    }
    absl::StrAppend(&out, "sluice_proxy_backend_latency_seconds_sum{backend=\"", address, "\"} ",
                    static_cast<double>(m->latency_sum_ns.load(r)) / 1e9, "\n");
    absl::StrAppend(&out, "sluice_proxy_backend_latency_seconds_count{backend=\"", address, "\"} ",
                    m->latency_count.load(r), "\n");
  }
  return out;
}

}  // namespace sluice::proxy
