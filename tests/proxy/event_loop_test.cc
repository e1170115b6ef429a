// The proxy's event loop in this process, for what only an in-process proxy can show: a
// connection closed while another process shares its socket (a child between fork and exec) must
// leave the epoll set, or the loop is later woken with a pointer to a freed connection. Under
// AddressSanitizer (make check-asan) the old code fails here with heap-use-after-free.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "sluice/client/balancer.h"
#include "sluice/proxy/proxy.h"
#include "sluice/proxy/router.h"

namespace sluice::proxy {
namespace {

constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int ConnectTo(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

// Reads until `want` bytes arrived or `timeout_ms` passed; returns what came.
std::string ReadSome(int fd, size_t want, int timeout_ms) {
  std::string got;
  char buffer[4096];
  pollfd wait{fd, POLLIN, 0};
  while (got.size() < want && poll(&wait, 1, timeout_ms) > 0) {
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    got.append(buffer, static_cast<size_t>(n));
  }
  return got;
}

// A client that sent the preface and an empty SETTINGS frame gets the proxy's SETTINGS back.
bool Handshakes(int fd) {
  std::string hello(kPreface);
  hello.append(std::string("\0\0\0\x04\0\0\0\0\0", 9));
  if (send(fd, hello.data(), hello.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(hello.size())) {
    return false;
  }
  const std::string got = ReadSome(fd, 9, 5000);
  return got.size() >= 9 && got[3] == 0x4;
}

TEST(ProxyEventLoopTest, ConnectionClosedWhileAForkedChildSharesItsSocketLeavesEpoll) {
  client::BalancerOptions options;
  options.target = "static://127.0.0.1:1";
  options.manage_channels = false;
  std::vector<RouteConfig> routes;
  routes.push_back({"", options});
  auto router = Router::Create(std::move(routes));
  ASSERT_TRUE(router.ok()) << router.status();
  ProxyOptions proxy_options;
  proxy_options.listen = "127.0.0.1:0";
  proxy_options.workers = 1;
  auto proxy = Proxy::Start(proxy_options, router->get());
  ASSERT_TRUE(proxy.ok()) << proxy.status();

  for (int round = 0; round < 3; ++round) {
    const int fd = ConnectTo((*proxy)->port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(Handshakes(fd));
    // The child holds a copy of every descriptor, the proxy's side of this socket included,
    // until it exits; it only sleeps (async-signal-safe calls only after fork).
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      const timespec nap{2, 0};
      nanosleep(&nap, nullptr);
      _exit(0);
    }
    // Bytes that are not a frame: the proxy answers GOAWAY and closes its side.
    const std::string garbage(64, '\xff');
    send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL);
    std::string answer = ReadSome(fd, 1 << 20, 300);
    ASSERT_FALSE(answer.empty()) << "the proxy answers garbage with GOAWAY";
    // Our FIN makes the proxy's socket readable (EOF) while the child still shares it: an event
    // the loop must no longer be registered for. (shutdown, not close: the child shares our
    // descriptor too, and close would send nothing while it lives.)
    shutdown(fd, SHUT_RDWR);
    close(fd);
    // The loop keeps serving new clients meanwhile.
    for (int i = 0; i < 5; ++i) {
      const int other = ConnectTo((*proxy)->port());
      ASSERT_GE(other, 0);
      EXPECT_TRUE(Handshakes(other)) << "round " << round << " client " << i;
      close(other);
    }
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
  }
  (*proxy)->Shutdown(absl::Seconds(1));
}

}  // namespace
}  // namespace sluice::proxy
