// libFuzzer target: the proxy's HTTP/2 input path, end to end. A real Proxy runs in this
// process (one worker, a static target whose port refuses connections, so calls that pass
// validation go through picking, connect failure and retry); each input is written to a fresh
// client connection, which is then read until the proxy closes it or goes quiet. Sanitizers catch
// what the bytes break; the proxy must also still accept a connection afterwards.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "sluice/client/balancer.h"
#include "sluice/core/log.h"
#include "sluice/proxy/proxy.h"
#include "sluice/proxy/router.h"

namespace {

std::unique_ptr<sluice::proxy::Router> router;
std::unique_ptr<sluice::proxy::Proxy> proxy;

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
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

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  sluice::SetMinLogLevel(sluice::LogLevel::kError);
  sluice::client::BalancerOptions options;
  options.target = "static://127.0.0.1:1";
  options.manage_channels = false;
  options.outlier_detection.enabled = false;
  std::vector<sluice::proxy::RouteConfig> routes;
  routes.push_back({"", options});  // the default route: every service
  auto created = sluice::proxy::Router::Create(std::move(routes));
  if (!created.ok()) std::abort();
  router = std::move(*created);
  sluice::proxy::ProxyOptions proxy_options;
  proxy_options.listen = "127.0.0.1:0";
  proxy_options.workers = 1;
  proxy_options.pick_wait = absl::Milliseconds(50);
  auto started = sluice::proxy::Proxy::Start(proxy_options, router.get());
  if (!started.ok()) std::abort();
  proxy = std::move(*started);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = Connect(proxy->port());
  if (fd < 0) std::abort();  // the proxy stopped accepting: an earlier input broke it
  size_t sent = 0;
  while (sent < size) {
    const ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the proxy closed the connection (a protocol error): fine
    sent += static_cast<size_t>(n);
  }
  // Read what the proxy answers until it closes the connection or stays quiet for 20 ms (at
  // most 200 ms): long enough for a call to be picked, refused by the backend and answered.
  // The write side stays open: a client's EOF would make the proxy drop its calls at once.
  char buffer[16384];
  pollfd wait{fd, POLLIN, 0};
  for (int rounds = 0; rounds < 10 && poll(&wait, 1, 20) > 0; ++rounds) {
    if (recv(fd, buffer, sizeof(buffer), 0) <= 0) break;
  }
  close(fd);
  return 0;
}
