#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "greeter_backend.h"
#include "grpc/testing/test.grpc.pb.h"
#include "proxy_process.h"

namespace sluice::testing {

// A gRPC deadline `d` from now.
std::chrono::system_clock::time_point In(absl::Duration d);

// Which backend answered a Greeter call: "Hello, <name>!, I am <ip>:<port>" -> "<ip>:<port>".
std::string Replier(const std::string& reply);

grpc::Status SayHello(Greeter::Stub& stub, const std::string& name, HelloReply* reply,
                      absl::Duration timeout = absl::Seconds(10));

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

// A "backend" that accepts TCP connections on `ip` (a free port) and never says a word: a
// stalled server, or a port held by something that is not (yet) an HTTP/2 server.
class BlackHole {
 public:
  explicit BlackHole(const std::string& ip);
  ~BlackHole();
  BlackHole(const BlackHole&) = delete;
  BlackHole& operator=(const BlackHole&) = delete;
  const std::string& address() const { return address_; }

 private:
  int fd_ = -1;
  std::string address_;
};

}  // namespace sluice::testing
