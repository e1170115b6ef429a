#include "sluice/health/health_probe.h"

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace sluice::health {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

std::vector<absl::StatusOr<HealthState>> ProbeHealth(const std::vector<std::string>& addresses,
                                                     const std::string& service,
                                                     absl::Duration timeout) {
  struct Probe {
    std::unique_ptr<Health::Stub> stub;
    grpc::ClientContext context;
    HealthCheckRequest request;
    HealthCheckResponse response;
  };
  std::vector<absl::StatusOr<HealthState>> results(addresses.size(),
                                                   absl::UnknownError("not asked"));
  std::vector<std::unique_ptr<Probe>> probes;
  std::mutex mu;
  std::condition_variable done_cv;
  size_t pending = addresses.size();
  const auto deadline = std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout);
  for (size_t i = 0; i < addresses.size(); ++i) {
    auto probe = std::make_unique<Probe>();
    probe->stub =
        Health::NewStub(grpc::CreateChannel(addresses[i], grpc::InsecureChannelCredentials()));
    probe->context.set_deadline(deadline);
    probe->request.set_service(service);
    Probe* p = probe.get();
    probes.push_back(std::move(probe));
    p->stub->async()->Check(&p->context, &p->request, &p->response, [&, i, p](grpc::Status status) {
      absl::StatusOr<HealthState> result;
      if (status.ok()) {
        switch (p->response.status()) {
          case HealthCheckResponse::SERVING:
            result = HealthState::kServing;
            break;
          case HealthCheckResponse::NOT_SERVING:
            result = HealthState::kNotServing;
            break;
          case HealthCheckResponse::SERVICE_UNKNOWN:
            result = HealthState::kServiceUnknown;
            break;
          default:
            result = HealthState::kUnknown;
        }
      } else if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
        result = HealthState::kNoHealthService;
      } else if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
        result = HealthState::kServiceUnknown;
      } else {
        result = absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                              status.error_message());
      }
      std::lock_guard<std::mutex> lock(mu);
      results[i] = std::move(result);
      if (--pending == 0) done_cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  // Every call has the deadline, so every callback comes.
  done_cv.wait(lock, [&] { return pending == 0; });
  return results;
}

}  // namespace sluice::health
