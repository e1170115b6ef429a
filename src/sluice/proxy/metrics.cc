#include "sluice/proxy/metrics.h"

#include "absl/strings/str_cat.h"

namespace sluice::proxy {

BackendMetrics* ProxyMetrics::ForBackend(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = backends_[address];
  if (slot == nullptr) slot = std::make_unique<BackendMetrics>();
  return slot.get();
}

std::map<std::string, const BackendMetrics*> ProxyMetrics::AllBackends() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, const BackendMetrics*> all;
  for (const auto& [address, m] : backends_) all[address] = m.get();
  return all;
}

std::string ProxyMetrics::RenderPrometheus(const std::vector<client::BackendInfo>& backends) const {
  std::string out;
  auto gauge = [&](absl::string_view name, absl::string_view help, int64_t value) {
    AppendPrometheusHeader(out, name, "gauge", help);
    absl::StrAppend(&out, name, " ", value, "\n");
  };
  auto counter = [&](absl::string_view name, absl::string_view help, uint64_t value) {
    AppendPrometheusHeader(out, name, "counter", help);
    absl::StrAppend(&out, name, " ", value, "\n");
  };
  constexpr auto r = std::memory_order_relaxed;
  gauge("sluice_proxy_downstream_connections", "Client connections open.",
        downstream_connections.load(r));
  counter("sluice_proxy_downstream_connections_total", "Client connections accepted.",
          downstream_connections_total.load(r));
  counter("sluice_proxy_access_log_lines_total", "Access-log lines written (sampled calls).",
          access_log_lines_total.load(r));
  counter("sluice_proxy_access_log_dropped_total",
          "Access-log lines dropped because the writer fell behind (a worker never waits).",
          access_log_dropped_total.load(r));
  counter("sluice_proxy_connections_refused_total",
          "Client connections closed at once because --max-connections were open.",
          connections_refused_total.load(r));
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

  AppendPrometheusHeader(out, "sluice_proxy_backend_in_flight", "gauge",
                         "Calls in flight per backend.");
  for (const auto& b : backends) {
    absl::StrAppend(&out, "sluice_proxy_backend_in_flight{backend=\"", b.address, "\"} ",
                    b.in_flight, "\n");
  }
  AppendPrometheusHeader(out, "sluice_proxy_backend_ejections", "gauge",
                         "Times the backend was ejected.");
  for (const auto& b : backends) {
    absl::StrAppend(&out, "sluice_proxy_backend_ejections{backend=\"", b.address, "\"} ",
                    b.ejections, "\n");
  }
  AppendPrometheusHeader(out, "sluice_proxy_backend_health", "gauge",
                         "1, labelled with what the backend's grpc.health.v1 service last said.");
  for (const auto& b : backends) {
    absl::StrAppend(&out, "sluice_proxy_backend_health{backend=\"", b.address, "\",health=\"",
                    b.health, "\"} 1\n");
  }
  AppendPrometheusHeader(out, "sluice_proxy_backend_up", "gauge",
                         "1 if the backend can be picked.");
  for (const auto& b : backends) {
    absl::StrAppend(&out, "sluice_proxy_backend_up{backend=\"", b.address, "\",state=\"", b.state,
                    "\"} ", b.state == "ready" ? 1 : 0, "\n");
  }

  AppendCallMetricsPrometheus(out, "sluice_proxy_backend", "backend", AllBackends());
  return out;
}

}  // namespace sluice::proxy
