#include "sluice/proxy/proxy.h"

#include "absl/strings/str_cat.h"
#include "sluice/core/address.h"
#include "sluice/core/clock.h"
#include "sluice/core/log.h"
#include "sluice/proxy/worker.h"

namespace sluice::proxy {

Proxy::Proxy(ProxyOptions options, const Router* router)
    : options_(std::move(options)), router_(router) {}

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
  std::unique_ptr<Proxy> proxy(new Proxy(options, router));
  int port = listen->port;
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
  LogInfo("sluice proxy: listening on ", listen->host, ":", port, " with ", options.workers,
          " worker(s)");
  return proxy;
}

void Proxy::Shutdown(absl::Duration timeout) {
  if (stopped_) return;
  stopped_ = true;
  const absl::Time deadline = SystemClock::Instance().Now() + timeout;
  for (auto& worker : workers_) worker->BeginShutdown(deadline);
  for (auto& thread : threads_) thread.join();
  threads_.clear();
}

Proxy::~Proxy() { Shutdown(absl::ZeroDuration()); }

}  // namespace sluice::proxy
