#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpc/testing/test.grpc.pb.h"
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
  // A channel to the proxy; max message sizes raised for the 4 MiB tests.
  std::shared_ptr<grpc::Channel> Channel() const;

 private:
  int port_ = 0;
  int admin_port_ = 0;
  ChildProcess process_;
  std::string log_dir_;
};

// gRPC's TestService, implemented here as a real server on a loopback address, with counters the
// tests read: messages streamed out, cancellations the handlers observed.
class TestServiceBackend {
 public:
  // max_concurrent_streams > 0: the server's SETTINGS_MAX_CONCURRENT_STREAMS.
  // credentials: the server's (TLS); null: insecure.
  static absl::StatusOr<std::unique_ptr<TestServiceBackend>> Start(
      const std::string& ip, int max_concurrent_streams = 0,
      std::shared_ptr<grpc::ServerCredentials> credentials = nullptr);
  ~TestServiceBackend();
  const std::string& address() const { return address_; }
  int64_t messages_sent() const { return sent_->load(); }
  int64_t cancellations() const { return cancelled_->load(); }
  int64_t calls() const { return calls_->load(); }

 private:
  class Service;
  TestServiceBackend() = default;
  std::string address_;
  std::shared_ptr<std::atomic<int64_t>> sent_ = std::make_shared<std::atomic<int64_t>>(0);
  std::shared_ptr<std::atomic<int64_t>> cancelled_ = std::make_shared<std::atomic<int64_t>>(0);
  std::shared_ptr<std::atomic<int64_t>> calls_ = std::make_shared<std::atomic<int64_t>>(0);
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace sluice::testing
