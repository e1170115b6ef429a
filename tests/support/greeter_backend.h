#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "helloworld.grpc.pb.h"

namespace sluice::testing {

// A real Greeter gRPC server inside the test process, on a given loopback address, that counts
// the calls it answers and can be made slow. Answers like the seed's server, and serves
// grpc.health.v1 (SERVING until set_serving(false)).
class GreeterBackend {
 public:
  // port 0 picks a free port.
  static absl::StatusOr<std::unique_ptr<GreeterBackend>> Start(
      const std::string& ip, int port = 0, absl::Duration delay = absl::ZeroDuration());
  ~GreeterBackend();

  const std::string& address() const { return address_; }
  int64_t calls() const { return calls_->load(); }
  void set_delay(absl::Duration delay);
  // Every call answers with this status (after the delay); OK answers normally.
  void set_failure(grpc::StatusCode code);
  // What its grpc.health.v1 service (gRPC's built-in one, which every GreeterBackend serves)
  // says about the whole server ("").
  void set_serving(bool serving);
  // Graceful: stops accepting, lets calls in flight finish (up to `grace`).
  void Shutdown(absl::Duration grace = absl::Seconds(5));

 private:
  class Service;
  GreeterBackend() = default;
  std::string address_;
  std::shared_ptr<std::atomic<int64_t>> calls_ = std::make_shared<std::atomic<int64_t>>(0);
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
};

// Calls SayHello through `stub` (one call at most 2 s) until one is answered or `timeout`
// passes: to wait until a proxy in front of Greeter backends serves. Returns the last status;
// `reply` holds the answer.
grpc::Status SayHelloUntilAnswered(Greeter::Stub& stub, HelloReply* reply,
                                   absl::Duration timeout = absl::Seconds(15));

}  // namespace sluice::testing
