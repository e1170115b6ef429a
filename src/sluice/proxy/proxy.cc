#include "sluice/proxy/proxy.h"

#include <csignal>
#include <functional>

#include "absl/strings/str_cat.h"
#include "sluice/core/address.h"
#include "sluice/core/clock.h"
#include "sluice/core/log.h"
#include "sluice/proxy/access_log.h"
#include "sluice/proxy/listener.h"
#include "sluice/proxy/router.h"
#include "sluice/proxy/tls.h"
#include "sluice/proxy/worker.h"

namespace sluice::proxy {

Proxy::Proxy(ProxyOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Proxy>> Proxy::Start(ProxyOptions options, const Router* router) {
  absl::StatusOr<HostPort> listen = ParseHostPort(options.listen);
  if (!listen.ok()) {
    // Port 0 is allowed here (tests), which ParseHostPort refuses.
    const size_t colon = options.listen.rfind(':');
    if (colon == std::string::npos || options.listen.substr(colon + 1) != "0") {
      return absl::InvalidArgumentError(absl::StrCat("--listen: ", listen.status().message()));
    }
    std::string host = options.listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    listen = HostPort{host, 0};
  }
  if (!IsIpLiteral(listen->host)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen: '", listen->host, "' is not an IP address"));
  }
  if (options.workers < 1) return absl::InvalidArgumentError("--workers must be at least 1");
  std::unique_ptr<Proxy> proxy(new Proxy(options));
  if (!options.tls_client_ca_file.empty() && options.tls_cert_file.empty()) {
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
  }
  if ((!options.backend_tls_cert_file.empty() || !options.backend_tls_key_file.empty()) &&
      options.backend_tls_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "--backend-tls-cert and --backend-tls-key need --backend-tls-ca");
  }
  const ProxyOptions& o = proxy->options_;
  // Each context is loaded here, and again by the reload thread when its files change.
  std::vector<std::pair<const client::Balancer*, int>> route_sides;  // balancer -> side index
  if (!o.tls_cert_file.empty() || !o.tls_key_file.empty()) {
    ServerTlsFiles files{o.tls_cert_file, o.tls_key_file, o.tls_client_ca_file};
    proxy->tls_sides_.push_back({"listener",
                                 TlsFileWatcher({files.cert, files.key, files.client_ca}),
                                 [files] { return MakeServerTlsContext(files); }, nullptr});
  }
  const int listener_side = proxy->tls_sides_.empty() ? -1 : 0;
  int backend_side = -1;
  if (!o.backend_tls_ca_file.empty()) {
    BackendTlsFiles files{o.backend_tls_ca_file, o.backend_tls_cert_file, o.backend_tls_key_file,
                          ""};
    backend_side = static_cast<int>(proxy->tls_sides_.size());
    proxy->tls_sides_.push_back({"backend connections",
                                 TlsFileWatcher({files.ca, files.cert, files.key}),
                                 [files] { return MakeBackendTlsContext(files); }, nullptr});
  }
  for (size_t i = 0; router != nullptr && i < router->configs().size(); ++i) {
    const RouteConfig& route = router->configs()[i];
    const client::Balancer* balancer = router->routes()[i].second;
    if (route.backend_tls == RouteConfig::BackendTls::kOff) {
      proxy->options_.route_backend_tls[balancer] = nullptr;  // plain, whatever the flags say
    } else if (route.backend_tls == RouteConfig::BackendTls::kFiles) {
      const BackendTlsFiles files = route.backend_tls_files;
      route_sides.emplace_back(balancer, static_cast<int>(proxy->tls_sides_.size()));
      proxy->tls_sides_.push_back(
          {absl::StrCat("backend connections of the ",
                        route.service.empty() ? std::string("default route")
                                              : absl::StrCat("route for ", route.service)),
           TlsFileWatcher({files.ca, files.cert, files.key}),
           [files] { return MakeBackendTlsContext(files); }, nullptr});
    }
  }
  // The watchers took the files' state before this first load, so a change made meanwhile is
  // still noticed.
  for (TlsSide& side : proxy->tls_sides_) {
    absl::StatusOr<SSL_CTX*> tls = side.make();
    if (!tls.ok()) return tls.status();
    side.context = std::make_unique<TlsContext>(*tls);
  }
  auto context_of = [&proxy](int side) -> const TlsContext* {
    return side < 0 ? nullptr : proxy->tls_sides_[side].context.get();
  };
  proxy->options_.tls_context = context_of(listener_side);
  proxy->options_.backend_tls_context = context_of(backend_side);
  for (const auto& [balancer, side] : route_sides) {
    proxy->options_.route_backend_tls[balancer] = context_of(side);
  }
  if (!proxy->tls_sides_.empty()) {
    // OpenSSL writes to its socket with write(), not send(MSG_NOSIGNAL): without this, a TLS
    // peer that closes while the proxy writes to it would kill the whole process with SIGPIPE.
    signal(SIGPIPE, SIG_IGN);
  }
  int port = listen->port;
  if (port != 0) {
    // The workers share the address through SO_REUSEPORT, which would also let them share it
    // with another process: refuse an address already taken instead.
    if (absl::Status free = CheckAddressFree(listen->host, port); !free.ok()) return free;
  }
  if (!options.access_log.empty()) {
    auto log = AccessLog::Open({.path = options.access_log,
                                .sample = options.access_log_sample,
                                .workers = options.workers,
                                .lines_counter = &proxy->metrics_.access_log_lines_total,
                                .dropped_counter = &proxy->metrics_.access_log_dropped_total});
    if (!log.ok()) return log.status();
    proxy->access_log_ = std::move(*log);
    proxy->options_.access_log_sink = proxy->access_log_.get();
  }
  for (int i = 0; i < options.workers; ++i) {
    auto worker = std::make_unique<Worker>(i, proxy->options_, router, &proxy->metrics_);
    absl::StatusOr<int> bound = worker->Listen(listen->host, port);
    if (!bound.ok()) return bound.status();
    port = *bound;  // every worker listens on the first one's port (SO_REUSEPORT)
    proxy->workers_.push_back(std::move(worker));
  }
  proxy->port_ = port;
  for (auto& worker : proxy->workers_) {
    proxy->threads_.emplace_back([w = worker.get()] { w->Run(); });
  }
  proxy->router_ = router;
  proxy->StartProbing();
  if (!proxy->tls_sides_.empty()) {
    proxy->tls_watch_thread_ = std::thread([p = proxy.get()] { p->WatchTlsFiles(); });
  }
  LogInfo("sluice proxy: listening on ", listen->host, ":", port, " with ", options.workers,
          " worker(s)");
  return proxy;
}

void Proxy::StartProbing() {
  if (router_ == nullptr) return;
  std::vector<Worker*> workers;
  for (auto& worker : workers_) workers.push_back(worker.get());
  for (size_t i = 0; i < router_->readiness().size(); ++i) {
    BackendReadiness* readiness = router_->readiness()[i].get();
    const client::Balancer* balancer = router_->routes()[i].second;
    // One worker probes each backend (the same one every time: the connection it opens then
    // serves that worker's calls).
    readiness->SetProber([workers, balancer, readiness](const std::string& address, absl::Time at) {
      Worker* worker = workers[std::hash<std::string>{}(address) % workers.size()];
      worker->ProbeBackend(address, balancer, readiness, at);
    });
  }
}

void Proxy::StopProbing() {
  if (router_ == nullptr) return;
  // After this no prober runs, so none can reach a worker being destroyed.
  for (const auto& readiness : router_->readiness()) readiness->SetProber(nullptr);
}

void Proxy::Shutdown(absl::Duration timeout) {
  if (stopped_) return;
  stopped_ = true;
  StopProbing();
  const absl::Time deadline = options_.clock->Now() + timeout;
  for (auto& worker : workers_) worker->BeginShutdown(deadline);
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  if (tls_watch_thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(tls_watch_mu_);
      tls_watch_stop_ = true;
    }
    tls_watch_cv_.notify_all();
    tls_watch_thread_.join();
  }
}

void Proxy::WatchTlsFiles() {
  std::unique_lock<std::mutex> lock(tls_watch_mu_);
  while (!tls_watch_cv_.wait_for(lock, absl::ToChronoNanoseconds(options_.tls_reload_interval),
                                 [this] { return tls_watch_stop_; })) {
    for (TlsSide& side : tls_sides_) {
      if (!side.watcher.Poll()) continue;
      absl::StatusOr<SSL_CTX*> made = side.make();
      if (!made.ok()) {
        metrics_.tls_reload_failures_total.fetch_add(1, std::memory_order_relaxed);
        LogWarning(
            "sluice proxy: TLS files of the ", side.name,
            " changed but are refused, the current ones stay in use: ", made.status().message());
        continue;
      }
      side.context->Replace(*made);
      metrics_.tls_reloads_total.fetch_add(1, std::memory_order_relaxed);
      LogInfo("sluice proxy: TLS files of the ", side.name,
              " reloaded; new connections use them, open ones keep theirs");
    }
  }
}

Proxy::~Proxy() {
  Shutdown(absl::ZeroDuration());
  workers_.clear();  // before the contexts their options point to
  tls_sides_.clear();
}

}  // namespace sluice::proxy
