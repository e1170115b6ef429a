#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sluice/client/balancer.h"
#include "sluice/proxy/backend_readiness.h"
#include "sluice/proxy/tls.h"

namespace sluice::proxy {

// One route of the proxy: the calls of a gRPC service (from :path "/pkg.Service/Method") go to
// the backends of one target, balanced and retried by these options. An empty service is the
// default route, for services no other route names.
struct RouteConfig {
  std::string service;
  client::BalancerOptions balancer;
  // TLS towards this route's backends ("tls" in the config): inherit the --backend-tls-* flags,
  // off (plain HTTP/2), or these files.
  enum class BackendTls { kInherit, kOff, kFiles };
  BackendTls backend_tls = BackendTls::kInherit;
  BackendTlsFiles backend_tls_files;
  // Whether the config's "health_check" set "enabled" (else the flags' choice stands).
  bool health_check_enabled_set = false;
};

// Parses a --config file (JSON):
//   {"routes": [{"service": "helloworld.Greeter", "target": "etcd://...",
//                "policy": "least_request", "policy_config": {...},
//                "idempotent": ["/helloworld.Greeter/SayHello"], "max_attempts": 3,
//                "attempt_timeout": "200ms", "retry_budget_ratio": 0.2,
//                "retry_budget_min": 10,
//                "tls": {"ca": "ca.pem", "cert": "proxy.pem", "key": "proxy.key"} or false,
//                "health_check": {"service": "name", "enabled": true}},
//               ...],
//    "default": {"target": "...", ...}}
// Errors name the file, the line and column for syntax errors, and the line and the value's
// path ("routes.json:7: routes[1].max_attempts: ...") for the rest. Balancer options not in the
// file keep `base`'s values.
absl::StatusOr<std::vector<RouteConfig>> ParseRouteConfig(absl::string_view text,
                                                          const std::string& file_name,
                                                          const client::BalancerOptions& base);

// Which balancer serves a call. Immutable once built: workers read it from any thread.
class Router {
 public:
  // Creates one balancer per route; fails (naming the route) if one cannot be created.
  static absl::StatusOr<std::unique_ptr<Router>> Create(std::vector<RouteConfig> routes);

  // The balancer for a call to `path`, or null when no route takes it.
  client::Balancer* ForPath(absl::string_view path) const;
  // Every balancer with its service ("" for the default route).
  const std::vector<std::pair<std::string, client::Balancer*>>& routes() const { return routes_; }
  // The configs the routes were made from, in the order of routes().
  const std::vector<RouteConfig>& configs() const { return configs_; }
  // Each route's backend readiness (its balancer's transport input), in the order of routes().
  const std::vector<std::shared_ptr<BackendReadiness>>& readiness() const { return readiness_; }
  // True when every route has an endpoint.
  bool Ready() const;
  // All routes' backends, for the admin endpoint.
  std::vector<client::BackendInfo> Backends() const;

 private:
  Router() = default;
  std::vector<std::unique_ptr<client::Balancer>> owned_;
  std::vector<std::pair<std::string, client::Balancer*>> routes_;
  std::vector<RouteConfig> configs_;
  std::vector<std::shared_ptr<BackendReadiness>> readiness_;
  std::unordered_map<std::string, client::Balancer*> by_service_;
  client::Balancer* default_ = nullptr;
};

// "/pkg.Service/Method" -> "pkg.Service"; empty if the path has no such shape.
absl::string_view ServiceOfPath(absl::string_view path);

}  // namespace sluice::proxy
