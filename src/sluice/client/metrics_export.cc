#include "sluice/client/metrics_export.h"

#include "absl/strings/str_cat.h"

namespace sluice::client {

CallMetrics& MetricsExport::For(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = endpoints_[address];
  if (slot == nullptr) slot = std::make_unique<CallMetrics>();
  return *slot;
}

void MetricsExport::Record(const std::string& address, grpc::StatusCode code,
                           absl::Duration latency) {
  For(address).Record(static_cast<int>(code), latency);
}

Balancer::Attempt MetricsExport::Instrument(Balancer::Attempt attempt) {
  return
      [this, attempt = std::move(attempt)](const Backend& backend, grpc::ClientContext* context) {
        const absl::Time started = balancer_.clock().Now();
        grpc::Status status = attempt(backend, context);
        Record(backend.address(), status.error_code(), balancer_.clock().Now() - started);
        return status;
      };
}

Balancer::AsyncAttempt MetricsExport::InstrumentAsync(Balancer::AsyncAttempt attempt) {
  return [this, attempt = std::move(attempt)](const Backend& backend, grpc::ClientContext* context,
                                              std::function<void(grpc::Status)> finished) {
    const absl::Time started = balancer_.clock().Now();
    attempt(backend, context,
            [this, address = backend.address(), started,
             finished = std::move(finished)](grpc::Status status) {
              Record(address, status.error_code(), balancer_.clock().Now() - started);
              finished(std::move(status));
            });
  };
}

std::string MetricsExport::RenderPrometheus() const {
  std::string out;
  const std::string service = balancer_.service_name();
  const auto backends = balancer_.Backends();
  auto per_endpoint = [&](absl::string_view name, absl::string_view type, absl::string_view help,
                          auto value) {
    AppendPrometheusHeader(out, name, type, help);
    for (const auto& b : backends) {
      absl::StrAppend(&out, name, "{endpoint=\"", b.address, "\"} ", value(b), "\n");
    }
  };
  per_endpoint("sluice_client_endpoint_in_flight", "gauge", "Calls in flight per endpoint.",
               [](const BackendInfo& b) { return b.in_flight; });
  per_endpoint("sluice_client_endpoint_failures_total", "counter",
               "Calls the balancer counted as failed (for outlier ejection and latency-aware "
               "policies).",
               [](const BackendInfo& b) { return b.failures; });
  per_endpoint("sluice_client_endpoint_ejections", "gauge",
               "Times outlier detection ejected the endpoint.",
               [](const BackendInfo& b) { return b.ejections; });
  AppendPrometheusHeader(out, "sluice_client_endpoint_up", "gauge",
                         "1 if the endpoint can be picked; the label says its state.");
  for (const auto& b : backends) {
    absl::StrAppend(&out, "sluice_client_endpoint_up{endpoint=\"", b.address, "\",state=\"",
                    b.state, "\"} ", b.state == "ready" ? 1 : 0, "\n");
  }
  AppendPrometheusHeader(out, "sluice_client_endpoint_health", "gauge",
                         "1, labelled with what the endpoint's grpc.health.v1 service last said.");
  for (const auto& b : backends) {
    absl::StrAppend(&out, "sluice_client_endpoint_health{endpoint=\"", b.address, "\",health=\"",
                    b.health, "\"} 1\n");
  }
  AppendPrometheusHeader(out, "sluice_client_ready_endpoints", "gauge",
                         "Endpoints ready to be picked.");
  absl::StrAppend(&out, "sluice_client_ready_endpoints{service=\"", service, "\"} ",
                  balancer_.ReadyCount(), "\n");

  std::map<std::string, const CallMetrics*> endpoints;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [address, m] : endpoints_) endpoints[address] = m.get();
  }
  AppendCallMetricsPrometheus(out, "sluice_client_endpoint", "endpoint", endpoints);
  return out;
}

absl::StatusOr<std::unique_ptr<HttpServer>> MetricsExport::Serve(const std::string& listen) const {
  return HttpServer::Start(listen, "metrics", [this](const std::string& path) -> HttpResponse {
    if (path == "/metrics") return {200, "text/plain; version=0.0.4", RenderPrometheus()};
    return {404, "text/plain; charset=utf-8", "not found: metrics are at /metrics\n"};
  });
}

}  // namespace sluice::client
