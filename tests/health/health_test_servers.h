#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"

namespace sluice::testing {

// A grpc.health.v1 servicer whose answers a test sets, that counts the streams and checks it
// serves. With watch_implemented false, Watch is UNIMPLEMENTED (an older server): callers must
// poll Check.
class FlippableHealthService final : public grpc::health::v1::Health::Service {
 public:
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  explicit FlippableHealthService(bool watch_implemented) : watch_implemented_(watch_implemented) {}

  void Set(ServingStatus status) {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
    changed_.notify_all();
  }
  int watch_streams() const { return watch_streams_.load(); }
  int open_watch_streams() const { return open_watch_streams_.load(); }
  int checks() const { return checks_.load(); }

  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest*,
                     grpc::health::v1::HealthCheckResponse* response) override {
    ++checks_;
    std::lock_guard<std::mutex> lock(mu_);
    response->set_status(status_);
    return grpc::Status::OK;
  }

  grpc::Status Watch(grpc::ServerContext* context, const grpc::health::v1::HealthCheckRequest*,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override {
    if (!watch_implemented_) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no Watch");
    ++watch_streams_;
    ++open_watch_streams_;
    std::unique_lock<std::mutex> lock(mu_);
    bool first = true;
    ServingStatus sent = status_;
    while (!context->IsCancelled() && !stopping_) {
      if (first || sent != status_) {
        grpc::health::v1::HealthCheckResponse response;
        response.set_status(status_);
        sent = status_;
        first = false;
        lock.unlock();
        const bool ok = writer->Write(response);
        lock.lock();
        if (!ok) break;
      }
      changed_.wait_for(lock, std::chrono::milliseconds(5));
    }
    --open_watch_streams_;
    return grpc::Status::OK;
  }

  // Ends open Watch streams (before the server shuts down).
  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    changed_.notify_all();
  }

 private:
  const bool watch_implemented_;
  std::mutex mu_;
  std::condition_variable changed_;
  ServingStatus status_ = grpc::health::v1::HealthCheckResponse::SERVING;
  bool stopping_ = false;
  std::atomic<int> watch_streams_{0};
  std::atomic<int> open_watch_streams_{0};
  std::atomic<int> checks_{0};
};

}  // namespace sluice::testing
