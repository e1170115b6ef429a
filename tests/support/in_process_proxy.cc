#include "in_process_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "sluice/client/balancer.h"

namespace sluice::testing {

int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

absl::StatusOr<InProcessProxy> InProcessProxy::Start(proxy::ProxyOptions options) {
  client::BalancerOptions balancer_options;
  balancer_options.target = "static://127.0.0.1:1";
  // No health checks: the event-loop tests and the fuzzer drive the data path alone.
  balancer_options.health_check.enabled = false;
  balancer_options.outlier_detection.enabled = false;
  std::vector<proxy::RouteConfig> routes;
  routes.push_back({"", balancer_options});  // the default route: every service
  InProcessProxy running;
  auto router = proxy::Router::Create(std::move(routes));
  if (!router.ok()) return router.status();
  running.router = std::move(*router);
  options.listen = "127.0.0.1:0";
  auto started = proxy::Proxy::Start(std::move(options), running.router.get());
  if (!started.ok()) return started.status();
  running.proxy = std::move(*started);
  return running;
}

}  // namespace sluice::testing
