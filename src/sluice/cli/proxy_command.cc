// sluice proxy: an L7 gRPC proxy that balances every call over the backends of a discovery
// target, for clients that cannot embed the client library.
#include <grpc/grpc_security.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/time/time.h"
#include "sluice/cli/commands.h"
#include "sluice/cli/etcd_flags.h"
#include "sluice/client/balancer.h"
#include "sluice/core/log.h"
#include "sluice/core/open_files.h"
#include "sluice/core/signals.h"
#include "sluice/proxy/admin_server.h"
#include "sluice/proxy/health_server.h"
#include "sluice/proxy/proxy.h"
#include "sluice/proxy/router.h"

namespace sluice::cli {
namespace {

struct ProxyFlags {
  std::string listen = "127.0.0.1:30051";
  std::string target;
  std::string config;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string hash_header;
  std::string backend_tls_ca;
  std::string backend_tls_cert;
  std::string backend_tls_key;
  std::string policy = "peak_ewma";
  std::string policy_config;
  int workers = 1;
  std::string admin;
  std::vector<std::string> idempotent;
  int max_attempts = 3;
  std::string attempt_timeout = "inf";
  double retry_budget_ratio = 0.2;
  int retry_budget_min = 10;
  uint32_t max_concurrent_streams = 1000;
  uint32_t stream_window = 1 << 20;
  uint32_t connection_window = 16 << 20;
  size_t retry_buffer = 256 << 10;
  std::string max_connection_age = "inf";
  std::string max_connection_age_grace = "30s";
  std::string drain_timeout = "30s";
  std::string pick_wait = "5s";
  std::string health_check_service;
  std::string health_listen;
  int64_t max_connections = 0;
  std::string access_log;
  double access_log_sample = 1;
  bool no_health_check = false;
  EtcdFlags etcd;  // credentials only: the members are in the etcd:// targets
};

int UsageError(const std::string& message) {
  std::fprintf(stderr, "sluice proxy: %s\nRun 'sluice proxy --help' for usage.\n", message.c_str());
  return kExitUsage;
}

bool ParseDurationFlag(const std::string& text, absl::Duration* out) {
  if (text == "inf" || text == "infinite" || text == "0") {
    *out = absl::InfiniteDuration();
    return true;
  }
  return absl::ParseDuration(text, out) && *out > absl::ZeroDuration();
}

// Health checks run over gRPC channels of their own. Towards TLS backends those need the
// route's backend TLS files as gRPC credentials, read once, at start: a channel's credentials do
// not follow the files as the proxy's own connections do, so after a rotation its checks could
// fail and take every backend out. So they are off for TLS routes unless the route's config
// turns them on ("health_check": {"enabled": true}).
absl::Status UseBackendTlsForHealthChecks(proxy::RouteConfig& route, const ProxyFlags& flags) {
  if (!route.balancer.health_check.enabled) return absl::OkStatus();
  const bool tls = route.backend_tls == proxy::RouteConfig::BackendTls::kFiles ||
                   (route.backend_tls == proxy::RouteConfig::BackendTls::kInherit &&
                    !flags.backend_tls_ca.empty());
  if (tls && !route.health_check_enabled_set) {
    route.balancer.health_check.enabled = false;
    LogInfo(
        "sluice proxy: ", route.service.empty() ? std::string("the default route") : route.service,
        ": backends use TLS, so health checks are off unless the route's config sets "
        "\"health_check\": {\"enabled\": true}");
    return absl::OkStatus();
  }
  proxy::BackendTlsFiles files;
  switch (route.backend_tls) {
    case proxy::RouteConfig::BackendTls::kOff:
      return absl::OkStatus();
    case proxy::RouteConfig::BackendTls::kInherit:
      if (flags.backend_tls_ca.empty()) return absl::OkStatus();
      files = {flags.backend_tls_ca, flags.backend_tls_cert, flags.backend_tls_key, ""};
      break;
    case proxy::RouteConfig::BackendTls::kFiles:
      files = route.backend_tls_files;
      break;
  }
  std::string pem[3];
  const std::string* paths[3] = {&files.ca, &files.cert, &files.key};
  for (int i = 0; i < 3; ++i) {
    if (paths[i]->empty()) continue;
    std::ifstream in(*paths[i]);
    if (!in) return absl::InvalidArgumentError("cannot read " + *paths[i]);
    std::stringstream text;
    text << in.rdbuf();
    pem[i] = text.str();
  }
  route.balancer.make_credentials = [ca = pem[0], cert = pem[1], key = pem[2]] {
    grpc_ssl_pem_key_cert_pair pair{key.c_str(), cert.c_str()};
    return grpc_ssl_credentials_create(ca.c_str(), cert.empty() ? nullptr : &pair, nullptr,
                                       nullptr);
  };
  return absl::OkStatus();
}

int RunProxy(const ProxyFlags& flags) {
  client::BalancerOptions balancer_options;
  balancer_options.target = flags.target;
  balancer_options.policy = flags.policy;
  if (!flags.policy_config.empty()) {
    balancer_options.policy_config = nlohmann::json::parse(flags.policy_config, nullptr, false);
    if (balancer_options.policy_config.is_discarded()) {
      return UsageError("--policy-config is not valid JSON: " + flags.policy_config);
    }
  }
  balancer_options.retry.idempotent_methods = flags.idempotent;
  balancer_options.retry.max_attempts = flags.max_attempts;
  balancer_options.retry.budget_ratio = flags.retry_budget_ratio;
  balancer_options.retry.budget_min = flags.retry_budget_min;
  if (!ParseDurationFlag(flags.attempt_timeout, &balancer_options.retry.attempt_timeout)) {
    return UsageError("--attempt-timeout: not a duration: " + flags.attempt_timeout);
  }
  // Every etcd:// target, --target's and the config's, is reached with these credentials.
  etcd::EtcdClientOptions etcd_access;
  if (absl::Status s = ApplyEtcdCredentialFlags(flags.etcd, etcd_access); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  balancer_options.discovery.etcd_username = etcd_access.username;
  balancer_options.discovery.etcd_password = etcd_access.password;
  balancer_options.discovery.etcd_tls = etcd_access.tls;
  balancer_options.health_check.service = flags.health_check_service;
  balancer_options.health_check.enabled = !flags.no_health_check;
  // The proxy carries calls on its own HTTP/2 connections: Router::Create gives each route's
  // balancer the workers' connection pool as its transport input (a gRPC channel per endpoint
  // is opened for health checks only).
  balancer_options.fail_fast = true;

  proxy::ProxyOptions options;
  options.listen = flags.listen;
  options.workers = flags.workers;
  if (flags.max_connections < 0) return UsageError("--max-connections must be 0 (no cap) or more");
  options.max_connections = flags.max_connections;
  options.access_log = flags.access_log;
  options.access_log_sample = flags.access_log_sample;
  options.max_concurrent_streams = flags.max_concurrent_streams;
  options.stream_window = flags.stream_window;
  options.connection_window = flags.connection_window;
  options.retry_buffer_limit = flags.retry_buffer;
  options.tls_cert_file = flags.tls_cert;
  options.tls_key_file = flags.tls_key;
  options.tls_client_ca_file = flags.tls_client_ca;
  options.backend_tls_ca_file = flags.backend_tls_ca;
  options.backend_tls_cert_file = flags.backend_tls_cert;
  options.backend_tls_key_file = flags.backend_tls_key;
  if (!flags.tls_client_ca.empty() && flags.tls_cert.empty()) {
    return UsageError("--tls-client-ca needs --tls-cert and --tls-key (mTLS is TLS first)");
  }
  if (flags.backend_tls_cert.empty() != flags.backend_tls_key.empty()) {
    return UsageError("--backend-tls-cert and --backend-tls-key go together");
  }
  if (!flags.backend_tls_cert.empty() && flags.backend_tls_ca.empty()) {
    return UsageError(
        "--backend-tls-cert needs --backend-tls-ca (the CA backends are verified "
        "against)");
  }
  options.hash_header = absl::AsciiStrToLower(flags.hash_header);
  if (!ParseDurationFlag(flags.max_connection_age, &options.max_connection_age)) {
    return UsageError("--max-connection-age: not a duration: " + flags.max_connection_age);
  }
  if (!ParseDurationFlag(flags.max_connection_age_grace, &options.max_connection_age_grace)) {
    return UsageError("--max-connection-age-grace: not a duration: " +
                      flags.max_connection_age_grace);
  }
  if (!ParseDurationFlag(flags.pick_wait, &options.pick_wait)) {
    return UsageError("--pick-wait: not a duration: " + flags.pick_wait);
  }
  absl::Duration drain;
  if (!ParseDurationFlag(flags.drain_timeout, &drain)) {
    return UsageError("--drain-timeout: not a duration: " + flags.drain_timeout);
  }
  if (flags.stream_window < 65535 || flags.stream_window > (1u << 31) - 1) {
    return UsageError("--stream-window must be between 65535 and 2147483647 bytes");
  }
  if (flags.connection_window < flags.stream_window || flags.connection_window > (1u << 31) - 1) {
    return UsageError("--connection-window must be at least --stream-window, at most 2147483647");
  }

  std::vector<proxy::RouteConfig> routes;
  if (!flags.config.empty()) {
    std::ifstream file(flags.config);
    if (!file) return UsageError("--config: cannot read " + flags.config);
    std::stringstream text;
    text << file.rdbuf();
    auto parsed = proxy::ParseRouteConfig(text.str(), flags.config, balancer_options);
    if (!parsed.ok()) return UsageError(std::string(parsed.status().message()));
    routes = std::move(*parsed);
  }
  const bool has_default =
      std::any_of(routes.begin(), routes.end(), [](const auto& r) { return r.service.empty(); });
  if (!flags.target.empty()) {
    if (has_default) return UsageError("--target and the config's \"default\" both given");
    routes.push_back({"", balancer_options});  // the default route
  }
  if (routes.empty()) return UsageError("give --target (or --config FILE)");
  for (proxy::RouteConfig& route : routes) {
    if (absl::Status s = UseBackendTlsForHealthChecks(route, flags); !s.ok()) {
      return UsageError(std::string(s.message()));
    }
  }
  auto router = proxy::Router::Create(std::move(routes));
  if (!router.ok()) return UsageError(std::string(router.status().message()));
  if (auto files = RaiseOpenFilesLimit(); files.ok()) {
    LogInfo("sluice proxy: open-files limit ", files->soft, " (was ", files->soft_before,
            ", hard limit ", files->hard, "): room for about ", ConnectionCapacity(files->soft),
            " client connections");
  } else {
    LogWarning("sluice proxy: ", files.status().message(),
               "; client connections stay bounded by the open-files limit (ulimit -n)");
  }
  auto proxy = proxy::Proxy::Start(options, router->get());
  if (!proxy.ok()) {
    if (proxy.status().code() == absl::StatusCode::kInvalidArgument) {
      return UsageError(std::string(proxy.status().message()));
    }
    LogError("sluice proxy: ", proxy.status().message());
    return kExitFailure;
  }
  std::unique_ptr<proxy::HealthServer> health;
  if (!flags.health_listen.empty()) {
    auto started = proxy::HealthServer::Start(flags.health_listen, router->get());
    if (!started.ok()) {
      LogError("sluice proxy: ", started.status().message());
      return kExitFailure;
    }
    health = std::move(*started);
    LogInfo("sluice proxy: grpc.health.v1 on port ", health->port(), " (service \"\": live; \"",
            proxy::HealthServer::kReadinessService, "\": ready)");
  }
  std::unique_ptr<proxy::AdminServer> admin;
  if (!flags.admin.empty()) {
    std::string where = flags.admin;
    if (where.find(':') == std::string::npos) where = "127.0.0.1:" + where;  // loopback default
    auto started = proxy::AdminServer::Start(where, router->get(), &(*proxy)->metrics());
    if (!started.ok()) {
      if (started.status().code() == absl::StatusCode::kInvalidArgument) {
        return UsageError(std::string(started.status().message()));
      }
      LogError("sluice proxy: ", started.status().message());
      return kExitFailure;
    }
    admin = std::move(*started);
    LogInfo("sluice proxy: admin on http://", where.substr(0, where.rfind(':')), ":", admin->port(),
            "/ (healthz, ready, backends, metrics)");
  }
  for (const auto& [service, balancer] : (*router)->routes()) {
    LogInfo("sluice proxy: ", service.empty() ? std::string("every other service") : service,
            " -> ", balancer->options().target, " (policy ", balancer->options().policy, ")");
  }
  const int signo = WaitForTerminationSignal();
  if (health != nullptr) health->SetDraining();
  LogInfo("sluice proxy: signal ", signo, ", draining calls in flight (at most ",
          absl::FormatDuration(drain), ")");
  (*proxy)->Shutdown(drain);
  LogInfo("sluice proxy: stopped");
  return kExitOk;
}

}  // namespace

CommandRunner AddProxyCommand(CLI::App& app) {
  auto flags = std::make_shared<ProxyFlags>();
  flags->workers = std::max(1u, std::min(4u, std::thread::hardware_concurrency()));
  CLI::App* cmd = app.add_subcommand(
      "proxy", "Run an L7 gRPC proxy that balances every call over a target's backends");
  cmd->add_option("--listen", flags->listen, "IP:PORT clients connect to")->capture_default_str();
  cmd->add_option("--target", flags->target,
                  "Backends: etcd://HOST:PORT[,HOST:PORT...]/PREFIX (every member of the cluster: "
                  "watches fail over), static://A,B, dns://NAME:PORT, IP:PORT");
  cmd->add_option("--config", flags->config,
                  "JSON file routing services to targets: {\"routes\": [{\"service\": "
                  "\"pkg.Service\", \"target\": ..., \"policy\": ..., \"idempotent\": [...]}], "
                  "\"default\": {...}}; --target and the flags are the defaults");
  cmd->add_option("--tls-cert", flags->tls_cert,
                  "Serve clients over TLS (ALPN h2) with this PEM certificate chain");
  cmd->add_option("--tls-key", flags->tls_key, "...and this PEM private key");
  cmd->add_option("--tls-client-ca", flags->tls_client_ca,
                  "mTLS: require every client to present a certificate signed by this PEM CA");
  cmd->add_option("--backend-tls-ca", flags->backend_tls_ca,
                  "Reach backends over TLS (ALPN h2), verifying them against this PEM CA bundle");
  cmd->add_option("--backend-tls-cert", flags->backend_tls_cert,
                  "mTLS to backends: present this PEM certificate chain...");
  cmd->add_option("--backend-tls-key", flags->backend_tls_key, "...and this PEM private key");
  AddEtcdCredentialFlags(*cmd, flags->etcd);
  cmd->add_option("--policy", flags->policy,
                  "round_robin, random, least_request, peak_ewma, weighted_round_robin, "
                  "ring_hash, prequal (docs/balancing.md)")
      ->capture_default_str();
  cmd->add_option("--policy-config", flags->policy_config, "The policy's config as JSON");
  cmd->add_option("--workers", flags->workers, "Event-loop threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_option("--admin", flags->admin,
                  "Admin HTTP endpoint IP:PORT or PORT (loopback); off when not given");
  cmd->add_option("--hash-header", flags->hash_header,
                  "ring_hash: hash this request header's value to pick the backend");
  cmd->add_option("--idempotent", flags->idempotent,
                  "Method retried on UNAVAILABLE: /pkg.Service/Method or /pkg.Service/*; "
                  "repeatable");
  cmd->add_option("--max-attempts", flags->max_attempts, "Attempts per call, the first included")
      ->capture_default_str()
      ->check(CLI::Range(1, 10));
  cmd->add_option("--attempt-timeout", flags->attempt_timeout,
                  "Idempotent methods: an attempt the backend has not answered (response "
                  "headers) within this long is cancelled, counted as the backend's failure and "
                  "retried elsewhere (e.g. 200ms); inf: no per-attempt limit")
      ->capture_default_str();
  cmd->add_option("--retry-budget-ratio", flags->retry_budget_ratio,
                  "Retries in flight may reach this fraction of calls in flight...")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 10.0));
  cmd->add_option("--retry-budget-min", flags->retry_budget_min, "...plus this many")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--max-concurrent-streams", flags->max_concurrent_streams,
                  "Streams per client connection")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--stream-window", flags->stream_window,
                  "Bytes buffered per stream and direction (HTTP/2 window)")
      ->capture_default_str();
  cmd->add_option("--connection-window", flags->connection_window,
                  "Bytes buffered per connection and direction (HTTP/2 connection window)")
      ->capture_default_str();
  cmd->add_option("--retry-buffer", flags->retry_buffer,
                  "Request bytes kept per call until the backend answers, for retries")
      ->capture_default_str();
  cmd->add_option("--max-connection-age", flags->max_connection_age,
                  "GOAWAY client connections older than this (e.g. 30m); inf: never")
      ->capture_default_str();
  cmd->add_option("--max-connection-age-grace", flags->max_connection_age_grace,
                  "Then close them this much later")
      ->capture_default_str();
  cmd->add_option("--drain-timeout", flags->drain_timeout,
                  "On SIGTERM/SIGINT, wait at most this long for calls in flight")
      ->capture_default_str();
  cmd->add_option("--health-check-service", flags->health_check_service,
                  "The service name asked about in each backend's grpc.health.v1 checks "
                  "(\"\": the whole server); NOT_SERVING backends are not picked")
      ->capture_default_str();
  cmd->add_option("--max-connections", flags->max_connections,
                  "Client connections open at once (all workers); more are closed at once and "
                  "counted. 0: bounded only by the open-files limit")
      ->capture_default_str();
  cmd->add_option("--access-log", flags->access_log,
                  "Write one JSON line per call to this file (appended), or - for standard "
                  "output; written off the data path, dropped and counted if the writer falls "
                  "behind");
  cmd->add_option("--access-log-sample", flags->access_log_sample,
                  "The share of calls the access log records, more than 0 and at most 1")
      ->capture_default_str();
  cmd->add_option("--health-listen", flags->health_listen,
                  "IP:PORT where the proxy answers grpc.health.v1 itself (Kubernetes gRPC "
                  "probes): service \"\" is liveness, \"sluice.proxy.ready\" readiness");
  cmd->add_flag("--no-health-check", flags->no_health_check,
                "Do not check backends' grpc.health.v1 (every backend the proxy can connect to is "
                "pickable)");
  cmd->add_option("--pick-wait,--startup-wait", flags->pick_wait,
                  "With no endpoint to pick (none found yet, none reachable, or all gone or "
                  "ejected), a call with a deadline waits for one until then, at most this "
                  "long; one without waits only while some backend is still connecting")
      ->capture_default_str();
  return [flags] { return RunProxy(*flags); };
}

}  // namespace sluice::cli
