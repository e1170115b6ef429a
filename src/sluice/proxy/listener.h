#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sluice/proxy/event_loop.h"

namespace sluice::proxy {

// Fails, naming the address, when another socket (another process, most likely a second
// `sluice proxy` or a backend) already listens on ip:port. SO_REUSEPORT would otherwise let this
// proxy start silently and the kernel split new connections between the two. A bind without
// SO_REUSEPORT fails on a port any socket listens on, so this probe tells; it is closed again
// at once, and the workers then bind with SO_REUSEPORT to share the address among themselves.
absl::Status CheckAddressFree(const std::string& ip, int port);

// One worker's listening socket (SO_REUSEPORT: every worker of a proxy has its own on the same
// address, and the kernel spreads connections among them). Hands each accepted descriptor
// (non-blocking, TCP_NODELAY) and its peer's "ip:port" to `on_accept`.
class Listener : public IoHandler {
 public:
  using AcceptFn = std::function<void(int fd, std::string peer)>;
  Listener(EventLoop* loop, AcceptFn on_accept) : loop_(loop), on_accept_(std::move(on_accept)) {}
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Binds ip:port (port 0: a free one) and returns the bound port.
  absl::StatusOr<int> Listen(const std::string& ip, int port);
  // Stops accepting for good and closes the socket.
  void Close();
  // After an accept error (out of descriptors): the socket stays readable, so it is left out of
  // the loop for a moment instead of spun on; Resume puts it back.
  void Resume();

  void OnIo(uint32_t events) override;

 private:
  EventLoop* const loop_;
  const AcceptFn on_accept_;
  int fd_ = -1;
  bool paused_ = false;
};

}  // namespace sluice::proxy
