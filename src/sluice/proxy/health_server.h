#pragma once

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "sluice/proxy/router.h"

namespace sluice::proxy {

// The proxy's own grpc.health.v1 service, on a port of its own (--health-listen), for
// Kubernetes gRPC probes and other checkers:
//   service ""                    SERVING while the proxy runs; NOT_SERVING once it drains
//                                 (liveness: restart a proxy that stopped answering);
//   service kReadinessService     SERVING while every route has a pickable backend and the
//                                 proxy is not draining (readiness: send it traffic);
//   any other name                NOT_FOUND, as gRPC's own health service answers.
// Watch streams follow changes. Its own port keeps the probes off the data path, where every
// path is forwarded to backends (which may serve grpc.health.v1 themselves).
class HealthServer {
 public:
  static constexpr char kReadinessService[] = "sluice.proxy.ready";

  // `listen` is IP:PORT (port 0: a free one, see port()).
  static absl::StatusOr<std::unique_ptr<HealthServer>> Start(const std::string& listen,
                                                             const Router* router);
  ~HealthServer();

  int port() const { return port_; }
  // From now on both services say NOT_SERVING (the proxy is draining).
  void SetDraining();

 private:
  HealthServer(const Router* router) : router_(router) {}
  void FollowReadiness();

  const Router* const router_;
  int port_ = 0;
  grpc::CallbackGenericService unimplemented_;
  std::unique_ptr<grpc::Server> server_;
  std::mutex mu_;
  std::condition_variable cv_;
  enum class Phase { kServing, kDraining, kStopped } phase_ = Phase::kServing;  // guarded by mu_
  bool published_ready_ = false;  // what the readiness service said at start
  std::thread follower_;
};

}  // namespace sluice::proxy
