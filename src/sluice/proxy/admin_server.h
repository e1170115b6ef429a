#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "sluice/core/http_server.h"
#include "sluice/proxy/metrics.h"
#include "sluice/proxy/router.h"

namespace sluice::proxy {

// The admin endpoint: plain HTTP/1.1 on its own port (for probes, scrapers and people, not
// traffic). GET / (the dashboard), /healthz, /ready, /backends, /metrics, /api/dashboard (what
// the dashboard reads every second).
class AdminServer {
 public:
  // `router` and `metrics` must outlive the server. "IP:PORT"; port 0 picks a free port.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(const std::string& listen,
                                                            const Router* router,
                                                            ProxyMetrics* metrics);

  int port() const { return http_->port(); }
  // Answers what GET `path` answers.
  HttpResponse Handle(const std::string& path) const;

 private:
  AdminServer(const Router* router, ProxyMetrics* metrics) : router_(router), metrics_(metrics) {}
  // Routes, targets and every backend's state and cumulative call counters; the page turns
  // successive snapshots into rates and percentiles.
  std::string DashboardJson() const;

  const Router* router_;
  ProxyMetrics* metrics_;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace sluice::proxy
