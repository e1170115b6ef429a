#include "sluice/proxy/router.h"

#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "sluice/core/json_file.h"
#include "sluice/core/json_reader.h"

namespace sluice::proxy {

absl::string_view ServiceOfPath(absl::string_view path) {
  if (path.size() < 2 || path[0] != '/') return {};
  const size_t slash = path.find('/', 1);
  if (slash == absl::string_view::npos) return {};
  return path.substr(1, slash - 1);
}

namespace {

// "tls": false (plain HTTP/2 to this route's backends, whatever the flags say) or
// {"ca": FILE, "cert": FILE, "key": FILE} (cert and key optional, together).
absl::Status ParseRouteTls(const JsonReader& tls, RouteConfig& route) {
  if (tls.value().is_boolean() && !tls.value().get<bool>()) {
    route.backend_tls = RouteConfig::BackendTls::kOff;
    return absl::OkStatus();
  }
  if (!tls.value().is_object()) {
    return tls.Error(
        absl::StrCat("must be false or {\"ca\": FILE, \"cert\": FILE, \"key\": FILE}, got ",
                     JsonForError(tls.value())));
  }
  if (absl::Status s = tls.CheckObject({"ca", "cert", "key"}); !s.ok()) return s;
  BackendTlsFiles& files = route.backend_tls_files;
  for (auto [field, out] :
       {std::pair{"ca", &files.ca}, std::pair{"cert", &files.cert}, std::pair{"key", &files.key}}) {
    if (absl::Status s = tls.ReadString(field, out); !s.ok()) return s;
    if (tls.Get(field) != nullptr && out->empty()) {
      return tls.FieldError(field, "must be a file name, got \"\"");
    }
  }
  if (files.ca.empty()) {
    return tls.Error("\"ca\" is missing (the CA backends are verified against)");
  }
  if (files.cert.empty() != files.key.empty()) {
    return tls.Error("\"cert\" and \"key\" go together");
  }
  files.origin = absl::StrCat(tls.Where(), route.service.empty()
                                               ? std::string(" (the default route)")
                                               : absl::StrCat(" (route for ", route.service, ")"));
  route.backend_tls = RouteConfig::BackendTls::kFiles;
  return absl::OkStatus();
}

absl::StatusOr<RouteConfig> ParseRoute(const JsonReader& reader, bool is_default,
                                       const client::BalancerOptions& base) {
  std::vector<std::string> known = {"target",
                                    "policy",
                                    "policy_config",
                                    "idempotent",
                                    "max_attempts",
                                    "attempt_timeout",
                                    "retry_budget_ratio",
                                    "retry_budget_min",
                                    "health_check",
                                    "tls"};
  if (!is_default) known.insert(known.begin(), "service");
  if (absl::Status s = reader.CheckObject(known); !s.ok()) return s;
  RouteConfig route;
  route.balancer = base;
  client::RetryOptions& retry = route.balancer.retry;
  for (absl::Status s : {
           reader.ReadString("service", &route.service),
           reader.ReadString("target", &route.balancer.target),
           reader.ReadString("policy", &route.balancer.policy),
           reader.ReadStringList("idempotent", &retry.idempotent_methods),
           reader.ReadInt("max_attempts", 1, 10, &retry.max_attempts),
           // A duration string ("200ms", "1.5s"), as the --attempt-timeout flag takes.
           reader.ReadPositiveDuration("attempt_timeout", &retry.attempt_timeout),
           // The --retry-budget-* flags' ranges.
           reader.ReadDouble("retry_budget_ratio", 0, 10, &retry.budget_ratio),
           reader.ReadInt("retry_budget_min", 0, 100000, &retry.budget_min),
       }) {
    if (!s.ok()) return s;
  }
  if (!is_default && (route.service.empty() || route.service.find('/') != std::string::npos)) {
    return reader.Get("service") == nullptr
               ? reader.Error("\"service\" is missing")
               : reader.FieldError("service", "must be a service name such as pkg.Service");
  }
  if (route.balancer.target.empty()) return reader.Error("\"target\" is missing");
  if (const nlohmann::json* policy_config = reader.Get("policy_config")) {
    route.balancer.policy_config = *policy_config;
  }
  if (reader.Get("health_check") != nullptr) {
    // {"service": "name", "enabled": false}: the grpc.health.v1 checks of this route's backends.
    const JsonReader health_check = reader.Child("health_check");
    if (absl::Status s = health_check.CheckObject({"service", "enabled"}); !s.ok()) return s;
    if (absl::Status s = health_check.ReadString("service", &route.balancer.health_check.service);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = health_check.ReadBool("enabled", &route.balancer.health_check.enabled);
        !s.ok()) {
      return s;
    }
    route.health_check_enabled_set = health_check.Get("enabled") != nullptr;
  }
  if (reader.Get("tls") != nullptr) {
    if (absl::Status s = ParseRouteTls(reader.Child("tls"), route); !s.ok()) return s;
  }
  return route;
}

}  // namespace

absl::StatusOr<std::vector<RouteConfig>> ParseRouteConfig(absl::string_view text,
                                                          const std::string& file_name,
                                                          const client::BalancerOptions& base) {
  absl::StatusOr<nlohmann::json> parsed = ParseJsonFile(text, file_name);
  if (!parsed.ok()) return parsed.status();
  const JsonReader top({file_name, text}, *parsed);
  if (absl::Status s = top.CheckObject({"routes", "default"}); !s.ok()) return s;
  std::vector<RouteConfig> routes;
  if (top.Get("routes") != nullptr) {
    const JsonReader list = top.Child("routes");
    if (!list.value().is_array()) {
      return list.Error(absl::StrCat("must be a list of routes, got ", JsonForError(list.value())));
    }
    for (size_t i = 0; i < list.value().size(); ++i) {
      const JsonReader element = list.Element(i);
      absl::StatusOr<RouteConfig> route = ParseRoute(element, false, base);
      if (!route.ok()) return route.status();
      for (size_t j = 0; j < routes.size(); ++j) {
        if (routes[j].service == route->service) {
          return element.FieldError(
              "service",
              absl::StrCat("\"", route->service, "\" is routed twice (also by routes[", j, "])"));
        }
      }
      routes.push_back(std::move(*route));
    }
  }
  // The default route goes last, wherever it is written.
  if (top.Get("default") != nullptr) {
    absl::StatusOr<RouteConfig> route = ParseRoute(top.Child("default"), true, base);
    if (!route.ok()) return route.status();
    routes.push_back(std::move(*route));
  }
  if (routes.empty()) return top.Error("no route and no default: nothing would be served");
  return routes;
}

absl::StatusOr<std::unique_ptr<Router>> Router::Create(std::vector<RouteConfig> routes) {
  std::unique_ptr<Router> router(new Router());
  for (auto& route : routes) {
    // The proxy carries the calls itself: its connection pool reports each backend's transport.
    auto readiness = std::make_shared<BackendReadiness>(
        *route.balancer.clock, BackoffOptions{},
        route.balancer.random_seed != 0 ? route.balancer.random_seed + router->readiness_.size()
                                        : std::random_device{}());
    route.balancer.transport_watcher = readiness;
    route.balancer.fail_fast = true;
    auto balancer = client::Balancer::Create(route.balancer);
    if (!balancer.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(route.service.empty() ? std::string("default route")
                                             : absl::StrCat("route for ", route.service),
                       ": ", balancer.status().message()));
    }
    client::Balancer* b = balancer->get();
    router->owned_.push_back(std::move(*balancer));
    router->routes_.emplace_back(route.service, b);
    router->configs_.push_back(route);
    router->readiness_.push_back(std::move(readiness));
    if (route.service.empty()) {
      router->default_ = b;
    } else {
      router->by_service_[route.service] = b;
    }
  }
  return router;
}

client::Balancer* Router::ForPath(absl::string_view path) const {
  if (!by_service_.empty()) {
    auto it = by_service_.find(std::string(ServiceOfPath(path)));
    if (it != by_service_.end()) return it->second;
  }
  return default_;
}

bool Router::Ready() const {
  for (const auto& [service, balancer] : routes_) {
    if (balancer->ReadyCount() == 0) return false;
  }
  return true;
}

std::vector<client::BackendInfo> Router::Backends() const {
  std::vector<client::BackendInfo> all;
  for (const auto& [service, balancer] : routes_) {
    auto backends = balancer->Backends();
    all.insert(all.end(), backends.begin(), backends.end());
  }
  return all;
}

}  // namespace sluice::proxy
