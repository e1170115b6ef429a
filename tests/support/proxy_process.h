#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "process.h"

namespace sluice::testing {

// `sluice proxy` as a real child process on free loopback ports, with its admin endpoint.
class ProxyProcess {
 public:
  // An empty target leaves routing to `extra` (--config FILE).
  static absl::StatusOr<std::unique_ptr<ProxyProcess>> Start(const std::string& target,
                                                             std::vector<std::string> extra = {});
  ~ProxyProcess();
  int port() const { return port_; }
  int admin_port() const { return admin_port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  ChildProcess& process() { return process_; }
  // GET http://127.0.0.1:admin/path: status code and body (status 0: no answer).
  std::pair<int, std::string> Get(const std::string& path) const;
  // The value of an unlabelled metric from /metrics, or -1.
  double Metric(const std::string& name) const;
  // Waits until the proxy's picker counts `count` ready backends (the dashboard's "ready", which
  // is the picker's own count). Backends become pickable one by one as the proxy's first
  // connection to each is confirmed, so a test about spreading calls waits for this first.
  bool WaitForReadyBackends(int count, absl::Duration timeout = absl::Seconds(10)) const;
  // A channel to the proxy; max message sizes raised for the 4 MiB tests.
  std::shared_ptr<grpc::Channel> Channel() const;

 private:
  int port_ = 0;
  int admin_port_ = 0;
  ChildProcess process_;
  std::string log_dir_;
};

}  // namespace sluice::testing
