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

namespace sluice::proxy {

// Counters of one backend, as the proxy saw its calls. Relaxed atomics: every worker adds, the
// admin thread reads; exact cross-counter consistency is not needed for monitoring.
struct BackendMetrics {
  // Upper bounds of the latency histogram buckets, in seconds (+Inf is implicit).
  static constexpr std::array<double, 12> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1,    5};
  static constexpr int kCodes = 17;  // gRPC status codes 0-16

  std::atomic<uint64_t> calls{0};
  std::array<std::atomic<uint64_t>, kCodes> by_code{};
  std::array<std::atomic<uint64_t>, kBuckets.size() + 1> latency_buckets{};
  std::atomic<uint64_t> latency_count{0};
  std::atomic<int64_t> latency_sum_ns{0};

  void Record(int code, absl::Duration latency);
};

// Process-wide proxy counters and the per-backend registry.
class ProxyMetrics {
 public:
  std::atomic<int64_t> downstream_connections{0};
  std::atomic<uint64_t> downstream_connections_total{0};
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

  // Prometheus text exposition; `backends` adds the balancer's view (in-flight, state, ejections).
  std::string RenderPrometheus(const std::vector<client::BackendInfo>& backends) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<BackendMetrics>> backends_;
};

}  // namespace sluice::proxy
