#include "sluice/proxy/admin_server.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "sluice/proxy/dashboard.h"

namespace sluice::proxy {

namespace {

constexpr char kJson[] = "application/json";
constexpr char kText[] = "text/plain; charset=utf-8";

std::string RouteName(const std::string& service) { return service.empty() ? "default" : service; }

}  // namespace

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(const std::string& listen,
                                                                const Router* router,
                                                                ProxyMetrics* metrics) {
  std::unique_ptr<AdminServer> server(new AdminServer(router, metrics));
  auto http = HttpServer::Start(
      listen, "--admin", [s = server.get()](const std::string& path) { return s->Handle(path); });
  if (!http.ok()) return http.status();
  server->http_ = std::move(*http);
  return server;
}

HttpResponse AdminServer::Handle(const std::string& path) const {
  if (path == "/" || path == "/dashboard") {
    return {200, "text/html; charset=utf-8", std::string(DashboardPage())};
  }
  if (path == "/api/dashboard") return {200, kJson, DashboardJson()};
  if (path == "/healthz") return {200, kText, "ok\n"};
  if (path == "/ready") {
    if (router_->Ready()) return {200, kText, "ready\n"};
    std::string waiting;
    for (const auto& [service, balancer] : router_->routes()) {
      if (balancer->ReadyCount() == 0) absl::StrAppend(&waiting, " ", balancer->service_name());
    }
    return {503, kText, absl::StrCat("not ready: no endpoint yet for", waiting, "\n")};
  }
  if (path == "/backends") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [service, balancer] : router_->routes()) {
      for (const auto& b : balancer->Backends()) {
        list.push_back({{"address", b.address},
                        {"route", RouteName(service)},
                        {"state", b.state},
                        {"health", b.health},
                        {"in_flight", b.in_flight},
                        {"calls", b.calls},
                        {"failures", b.failures},
                        {"weight", b.weight},
                        {"ejections", b.ejections}});
      }
    }
    return {200, kJson, list.dump(2) + "\n"};
  }
  if (path == "/metrics") {
    return {200, "text/plain; version=0.0.4", metrics_->RenderPrometheus(router_->Backends())};
  }
  return {404, kText, "not found: try /, /healthz, /ready, /backends, /metrics, /api/dashboard\n"};
}

std::string AdminServer::DashboardJson() const {
  const auto call_metrics = metrics_->AllBackends();
  nlohmann::json routes = nlohmann::json::array();
  nlohmann::json backends = nlohmann::json::array();
  for (const auto& [service, balancer] : router_->routes()) {
    routes.push_back({{"route", RouteName(service)},
                      {"service", balancer->service_name()},
                      {"target", balancer->options().target},
                      {"policy", balancer->options().policy},
                      {"ready", balancer->ReadyCount()}});
    for (const auto& b : balancer->Backends()) {
      nlohmann::json backend = {{"address", b.address}, {"route", RouteName(service)},
                                {"state", b.state},     {"health", b.health},
                                {"in_flight", b.in_flight},
                                {"weight", b.weight},   {"ejections", b.ejections}};
      if (auto it = call_metrics.find(b.address); it != call_metrics.end()) {
        backend.update(it->second->ToJson());
      } else {
        backend.update(CallMetrics().ToJson());
      }
      backends.push_back(std::move(backend));
    }
  }
  constexpr auto r = std::memory_order_relaxed;
  nlohmann::json state = {{"time_ms", absl::ToUnixMillis(absl::Now())},
                          {"bucket_bounds", CallMetrics::kBuckets},
                          {"routes", routes},
                          {"backends", backends},
                          {"proxy",
                           {{"client_connections", metrics_->downstream_connections.load(r)},
                            {"backend_connections", metrics_->upstream_connections.load(r)},
                            {"streams", metrics_->streams.load(r)},
                            {"streams_total", metrics_->streams_total.load(r)},
                            {"retries_total", metrics_->retries_total.load(r)}}}};
  return state.dump();
}

}  // namespace sluice::proxy
