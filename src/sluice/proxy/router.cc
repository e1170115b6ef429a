#include "sluice/proxy/router.h"

#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "sluice/core/json_file.h"

namespace sluice::proxy {

absl::string_view ServiceOfPath(absl::string_view path) {
  if (path.size() < 2 || path[0] != '/') return {};
  const size_t slash = path.find('/', 1);
  if (slash == absl::string_view::npos) return {};
  return path.substr(1, slash - 1);
}

namespace {

absl::Status RouteError(const std::string& file, const std::string& where, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", where, ": ", why));
}

// "tls": false (plain HTTP/2 to this route's backends, whatever the flags say) or
// {"ca": FILE, "cert": FILE, "key": FILE} (cert and key optional, together).
absl::Status ParseRouteTls(const nlohmann::json& value, const std::string& file,
                           const std::string& where, RouteConfig& route) {
  if (value.is_boolean() && !value.get<bool>()) {
    route.backend_tls = RouteConfig::BackendTls::kOff;
    return absl::OkStatus();
  }
  if (!value.is_object()) {
    return RouteError(file, where,
                      "\"tls\" must be false or {\"ca\": FILE, \"cert\": FILE, \"key\": FILE}");
  }
  BackendTlsFiles& files = route.backend_tls_files;
  for (const auto& [key, v] : value.items()) {
    std::string* field = key == "ca"     ? &files.ca
                         : key == "cert" ? &files.cert
                         : key == "key"  ? &files.key
                                         : nullptr;
    if (field == nullptr) {
      return RouteError(
          file, where,
          absl::StrCat("unknown field \"tls\".\"", key, "\" (expected ca, cert, key)"));
    }
    if (!v.is_string() || v.get<std::string>().empty()) {
      return RouteError(file, where, absl::StrCat("\"tls\".\"", key, "\" must be a file name"));
    }
    *field = v.get<std::string>();
  }
  if (files.ca.empty()) {
    return RouteError(file, where,
                      "\"tls\".\"ca\" is missing (the CA backends are verified against)");
  }
  if (files.cert.empty() != files.key.empty()) {
    return RouteError(file, where, "\"tls\".\"cert\" and \"tls\".\"key\" go together");
  }
  files.origin = absl::StrCat(file, ": ", where, ": \"tls\"");
  route.backend_tls = RouteConfig::BackendTls::kFiles;
  return absl::OkStatus();
}

absl::StatusOr<RouteConfig> ParseRoute(const nlohmann::json& j, const std::string& file,
                                       const std::string& where, bool is_default,
                                       const client::BalancerOptions& base) {
  if (!j.is_object()) return RouteError(file, where, "must be an object");
  RouteConfig route;
  route.balancer = base;
  for (const auto& [key, value] : j.items()) {
    if (key == "service" && !is_default) {
      if (!value.is_string() || value.get<std::string>().empty() ||
          value.get<std::string>().find('/') != std::string::npos) {
        return RouteError(file, where, "\"service\" must be a service name such as pkg.Service");
      }
      route.service = value.get<std::string>();
    } else if (key == "target") {
      if (!value.is_string()) return RouteError(file, where, "\"target\" must be a string");
      route.balancer.target = value.get<std::string>();
    } else if (key == "policy") {
      if (!value.is_string()) return RouteError(file, where, "\"policy\" must be a string");
      route.balancer.policy = value.get<std::string>();
    } else if (key == "policy_config") {
      route.balancer.policy_config = value;
    } else if (key == "idempotent") {
      if (!value.is_array()) return RouteError(file, where, "\"idempotent\" must be a list");
      route.balancer.retry.idempotent_methods.clear();
      for (const auto& m : value) {
        if (!m.is_string()) return RouteError(file, where, "\"idempotent\" holds method names");
        route.balancer.retry.idempotent_methods.push_back(m.get<std::string>());
      }
    } else if (key == "max_attempts") {
      if (!value.is_number_integer() || value.get<int>() < 1 || value.get<int>() > 10) {
        return RouteError(file, where, "\"max_attempts\" must be 1 to 10");
      }
      route.balancer.retry.max_attempts = value.get<int>();
    } else if (key == "attempt_timeout") {
      // A duration string ("200ms", "1.5s"), as the --attempt-timeout flag takes.
      absl::Duration d;
      if (!value.is_string() || !absl::ParseDuration(value.get<std::string>(), &d) ||
          d <= absl::ZeroDuration()) {
        return RouteError(file, where,
                          "\"attempt_timeout\" must be a positive duration such as \"200ms\"");
      }
      route.balancer.retry.attempt_timeout = d;
    } else if (key == "retry_budget_ratio") {
      if (!value.is_number() || value.get<double>() < 0) {
        return RouteError(file, where, "\"retry_budget_ratio\" must be a number >= 0");
      }
      route.balancer.retry.budget_ratio = value.get<double>();
    } else if (key == "retry_budget_min") {
      if (!value.is_number_integer() || value.get<int>() < 0) {
        return RouteError(file, where, "\"retry_budget_min\" must be a whole number >= 0");
      }
      route.balancer.retry.budget_min = value.get<int>();
    } else if (key == "health_check") {
      // {"service": "name", "enabled": false}: the grpc.health.v1 checks of this route's backends.
      if (!value.is_object()) {
        return RouteError(file, where,
                          "\"health_check\" must be an object such as {\"service\": \"name\"}");
      }
      for (const auto& [field, setting] : value.items()) {
        if (field == "service" && setting.is_string()) {
          route.balancer.health_check.service = setting.get<std::string>();
        } else if (field == "enabled" && setting.is_boolean()) {
          route.balancer.health_check.enabled = setting.get<bool>();
          route.health_check_enabled_set = true;
        } else {
          return RouteError(file, where,
                            absl::StrCat("\"health_check\": \"", field,
                                         "\" is not a field it takes; \"service\" (a string) "
                                         "and \"enabled\" (true or false) are"));
        }
      }
    } else if (key == "tls") {
      absl::Status tls = ParseRouteTls(value, file, where, route);
      if (!tls.ok()) return tls;
    } else {
      return RouteError(file, where, absl::StrCat("unknown field \"", key, "\""));
    }
  }
  if (!is_default && route.service.empty()) {
    return RouteError(file, where, "\"service\" is missing");
  }
  if (route.balancer.target.empty()) return RouteError(file, where, "\"target\" is missing");
  return route;
}

}  // namespace

absl::StatusOr<std::vector<RouteConfig>> ParseRouteConfig(absl::string_view text,
                                                          const std::string& file_name,
                                                          const client::BalancerOptions& base) {
  absl::StatusOr<nlohmann::json> parsed = ParseJsonFile(text, file_name);
  if (!parsed.ok()) return parsed.status();
  const nlohmann::json& root = *parsed;
  if (!root.is_object()) return RouteError(file_name, "top level", "must be a JSON object");
  std::vector<RouteConfig> routes;
  std::optional<RouteConfig> default_route;  // last, whatever the key order
  for (const auto& [key, value] : root.items()) {
    if (key == "routes") {
      if (!value.is_array()) return RouteError(file_name, "\"routes\"", "must be a list");
      for (size_t i = 0; i < value.size(); ++i) {
        const std::string where =
            value[i].is_object() && value[i].contains("service") && value[i]["service"].is_string()
                ? absl::StrCat("route ", i + 1, " (service ",
                               value[i]["service"].get<std::string>(), ")")
                : absl::StrCat("route ", i + 1);
        auto route = ParseRoute(value[i], file_name, where, false, base);
        if (!route.ok()) return route.status();
        for (const auto& other : routes) {
          if (other.service == route->service) {
            return RouteError(file_name, where, "service routed twice");
          }
        }
        routes.push_back(std::move(*route));
      }
    } else if (key == "default") {
      auto route = ParseRoute(value, file_name, "\"default\"", true, base);
      if (!route.ok()) return route.status();
      default_route = std::move(*route);
    } else {
      return RouteError(file_name, "top level",
                        absl::StrCat("unknown field \"", key, "\" (expected routes, default)"));
    }
  }
  if (default_route) routes.push_back(std::move(*default_route));
  if (routes.empty()) return RouteError(file_name, "top level", "no route and no default");
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
