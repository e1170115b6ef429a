#include "sluice/proxy/health_server.h"

#include <grpcpp/health_check_service_interface.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace sluice::proxy {
namespace {

// How often route readiness is looked at: a probe sees a change within this (plus its period).
constexpr absl::Duration kReadinessPoll = absl::Milliseconds(200);

}  // namespace

absl::StatusOr<std::unique_ptr<HealthServer>> HealthServer::Start(const std::string& listen,
                                                                  const Router* router) {
  std::unique_ptr<HealthServer> health(new HealthServer(router));
  // gRPC's own implementation of the protocol; it is process-wide, and the proxy runs no other
  // gRPC server.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // Refuse an address another process holds instead of silently sharing it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &health->port_);
  // gRPC serves its health service on callbacks only in a server with a callback service; the
  // generic one answers every other method UNIMPLEMENTED.
  builder.RegisterCallbackGenericService(&health->unimplemented_);
  health->server_ = builder.BuildAndStart();
  if (health->server_ == nullptr || health->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("--health-listen ", listen,
                     ": cannot listen there (address in use by another process, or not a local "
                     "address?)"));
  }
  grpc::HealthCheckServiceInterface* service = health->server_->GetHealthCheckService();
  service->SetServingStatus("", true);
  health->published_ready_ = router->Ready();
  service->SetServingStatus(kReadinessService, health->published_ready_);
  health->follower_ = std::thread([raw = health.get()] { raw->FollowReadiness(); });
  return health;
}

HealthServer::~HealthServer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    phase_ = Phase::kStopped;
  }
  cv_.notify_all();
  if (follower_.joinable()) follower_.join();
  if (server_ == nullptr) return;  // it never started
  // Ends open Watch streams, so that Shutdown does not wait for them.
  server_->GetHealthCheckService()->Shutdown();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

void HealthServer::SetDraining() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ != Phase::kServing) return;
    phase_ = Phase::kDraining;
  }
  server_->GetHealthCheckService()->SetServingStatus(false);  // every service name
  cv_.notify_all();
}

void HealthServer::FollowReadiness() {
  std::unique_lock<std::mutex> lock(mu_);
  // From what was published at start: readiness may have changed before this thread ran.
  bool said = published_ready_;
  while (phase_ == Phase::kServing) {
    cv_.wait_for(lock, absl::ToChronoNanoseconds(kReadinessPoll));
    if (phase_ != Phase::kServing) break;
    const bool ready = router_->Ready();
    if (ready == said) continue;
    said = ready;
    server_->GetHealthCheckService()->SetServingStatus(kReadinessService, ready);
  }
}

}  // namespace sluice::proxy
