#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "sluice/proxy/proxy.h"
#include "sluice/proxy/router.h"

namespace sluice::testing {

// A blocking TCP connection to 127.0.0.1:port; -1 if refused.
int ConnectLoopback(int port);

// `sluice proxy` inside this process, on a free loopback port, whose one route goes to a port
// that refuses connections (outlier detection off): enough for what watches the proxy itself
// (its event loop, accepting, TLS, its HTTP/2 input), with no backend to start. Used by the
// event-loop tests and the proxy fuzzer.
struct InProcessProxy {
  std::unique_ptr<proxy::Router> router;
  std::unique_ptr<proxy::Proxy> proxy;  // after router: destroyed first

  // `options.listen` is replaced by 127.0.0.1:0.
  static absl::StatusOr<InProcessProxy> Start(proxy::ProxyOptions options);
};

}  // namespace sluice::testing
