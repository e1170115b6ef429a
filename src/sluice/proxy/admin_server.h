#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "sluice/client/balancer.h"
#include "sluice/proxy/metrics.h"
#include "sluice/proxy/router.h"

namespace sluice::proxy {

// The admin endpoint: plain HTTP/1.1 on its own port, one request per connection, served by one
// thread (it is for probes and scrapers, not traffic). GET /healthz, /ready, /backends,
// /metrics.
class AdminServer {
 public:
  // `router` and `metrics` must outlive the server. "IP:PORT"; port 0 picks a free port.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(const std::string& listen,
                                                            const Router* router,
                                                            ProxyMetrics* metrics);
  ~AdminServer();

  int port() const { return port_; }
  // Answers what GET `path` answers: the status code and body.
  std::pair<int, std::string> Handle(const std::string& path) const;

 private:
  AdminServer(const Router* router, ProxyMetrics* metrics) : router_(router), metrics_(metrics) {}
  void Serve();
  void ServeOne(int fd) const;

  const Router* router_;
  ProxyMetrics* metrics_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace sluice::proxy
