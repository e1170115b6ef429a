#include "sluice/proxy/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "sluice/core/log.h"

namespace sluice::proxy {
namespace {

constexpr absl::Duration kAcceptPause = absl::Milliseconds(100);

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t size = 0;
  int family = AF_INET;
};

absl::StatusOr<SocketAddress> ToSocketAddress(const std::string& ip, int port) {
  SocketAddress address;
  if (ip.find(':') != std::string::npos) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    if (inet_pton(AF_INET6, ip.c_str(), &a6->sin6_addr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("not an IP address: ", ip));
    }
    address.family = AF_INET6;
    address.size = sizeof(sockaddr_in6);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&address.storage);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    if (inet_pton(AF_INET, ip.c_str(), &a4->sin_addr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("not an IP address: ", ip));
    }
    address.size = sizeof(sockaddr_in);
  }
  return address;
}

std::string PeerOf(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
  }
  return absl::StrCat(host, ":", port);
}

}  // namespace

absl::Status CheckAddressFree(const std::string& ip, int port) {
  absl::StatusOr<SocketAddress> address = ToSocketAddress(ip, port);
  if (!address.ok()) return address.status();
  const int fd = socket(address->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  // SO_REUSEADDR, so that connections of a proxy that just exited (TIME_WAIT) do not count.
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  const int rc = bind(fd, reinterpret_cast<sockaddr*>(&address->storage), address->size);
  const int err = errno;
  close(fd);
  if (rc == 0) return absl::OkStatus();
  if (err == EADDRINUSE) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", ip, ":", port,
        ": the address is already in use by another process (another sluice proxy?); stop it or "
        "choose another --listen address"));
  }
  return absl::UnavailableError(
      absl::StrCat("cannot listen on ", ip, ":", port, ": ", strerror(err)));
}

Listener::~Listener() { Close(); }

absl::StatusOr<int> Listener::Listen(const std::string& ip, int port) {
  absl::StatusOr<SocketAddress> address = ToSocketAddress(ip, port);
  if (!address.ok()) return address.status();
  const int fd = socket(address->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&address->storage), address->size) != 0 ||
      listen(fd, 1024) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", ip, ":", port, ": ", strerror(err)));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  fd_ = fd;
  loop_->Add(fd_, this, false);
  return address->family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

void Listener::Close() {
  if (fd_ < 0) return;
  if (!paused_) loop_->Remove(fd_);
  close(fd_);
  fd_ = -1;
}

void Listener::Resume() {
  if (fd_ < 0 || !paused_) return;
  paused_ = false;
  loop_->Add(fd_, this, false);
}

void Listener::OnIo(uint32_t /*events*/) {
  while (fd_ >= 0) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int fd =
        accept4(fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        LogWarning("sluice proxy: accept: ", strerror(errno), "; pausing accepts for 100 ms");
        loop_->Remove(fd_);
        paused_ = true;
        loop_->Schedule(loop_->now() + kAcceptPause, TimerKind::kResumeAccept, 0);
      }
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    on_accept_(fd, PeerOf(addr));
  }
}

}  // namespace sluice::proxy
