// libFuzzer target: the proxy's HTTP/2 input path, end to end. A real Proxy runs in this
// process (one worker, a static target whose port refuses connections, so calls that pass
// validation go through picking, connect failure and retry); each input is written to a fresh
// client connection, which is then read until the proxy closes it or goes quiet. Sanitizers catch
// what the bytes break; the proxy must also still accept a connection afterwards.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "in_process_proxy.h"
#include "sluice/core/log.h"

namespace {

std::unique_ptr<sluice::testing::InProcessProxy> running;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  sluice::SetMinLogLevel(sluice::LogLevel::kError);
  sluice::proxy::ProxyOptions proxy_options;
  proxy_options.workers = 1;
  proxy_options.pick_wait = absl::Milliseconds(50);
  auto started = sluice::testing::InProcessProxy::Start(proxy_options);
  if (!started.ok()) std::abort();
  running = std::make_unique<sluice::testing::InProcessProxy>(std::move(*started));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = sluice::testing::ConnectLoopback(running->proxy->port());
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
