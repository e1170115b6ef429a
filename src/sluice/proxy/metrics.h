#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "sluice/client/balancer.h"
#include "sluice/core/call_metrics.h"

namespace sluice::proxy {

// Counters of one backend, as the proxy saw its calls (the same counters the client library
// exports per endpoint).
using BackendMetrics = CallMetrics;

// Process-wide proxy counters and the per-backend registry.
class ProxyMetrics {
 public:
  std::atomic<int64_t> downstream_connections{0};
  std::atomic<uint64_t> downstream_connections_total{0};
  std::atomic<uint64_t> connections_refused_total{0};  // over --max-connections
  std::atomic<uint64_t> access_log_lines_total{0};
  std::atomic<uint64_t> access_log_dropped_total{0};  // the writer fell behind
  std::atomic<int64_t> upstream_connections{0};
  std::atomic<uint64_t> upstream_connects_failed{0};
  std::atomic<int64_t> streams{0};
  std::atomic<uint64_t> streams_total{0};
  std::atomic<uint64_t> retries_total{0};
  std::atomic<uint64_t> rejected_requests_total{0};
  std::atomic<uint64_t> protocol_errors_total{0};
  std::atomic<uint64_t> deadline_exceeded_total{0};
  std::atomic<uint64_t> attempt_timeouts_total{0};
  // Client TLS handshakes refused for the client certificate (missing, or not signed by
  // --tls-client-ca).
  std::atomic<uint64_t> client_certificate_rejections_total{0};
  // TLS contexts rebuilt after their files changed, and changes refused (the old one stays).
  std::atomic<uint64_t> tls_reloads_total{0};
  std::atomic<uint64_t> tls_reload_failures_total{0};
  // Request and response bytes the proxy holds for streams right now: what flow control bounds.
  std::atomic<int64_t> buffered_bytes{0};

  // The metrics of one backend address; the pointer stays valid for the process's life.
  BackendMetrics* ForBackend(const std::string& address);

  // Every backend's metrics seen so far, by address (pointers valid for the process's life).
  std::map<std::string, const BackendMetrics*> AllBackends() const;

  // Prometheus text exposition; `backends` adds the balancer's view (in-flight, state, ejections).
  std::string RenderPrometheus(const std::vector<client::BackendInfo>& backends) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<BackendMetrics>> backends_;
};

}  // namespace sluice::proxy
