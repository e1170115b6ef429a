// --max-connections: beyond the cap a client connection is accepted and closed at once, and
// counted; once one closes, the next gets in.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "greeter_backend.h"
#include "process.h"
#include "proxy_process.h"

namespace sluice {
namespace {

using testing::GreeterBackend;
using testing::ProxyProcess;

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  timeval timeout{0, 300000};  // reads give up after 300 ms
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// True if the proxy closed the connection (EOF) rather than leaving it open.
bool ClosedByPeer(int fd) {
  char byte;
  for (;;) {
    const ssize_t n = recv(fd, &byte, 1, 0);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;  // a reset counts as closed
    // The proxy's SETTINGS frame: an open connection; keep reading until the timeout.
  }
}

TEST(ProxyMaxConnectionsTest, RefusesConnectionsBeyondTheCapAndCountsThem) {
  auto backend = GreeterBackend::Start("127.0.0.11");
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto proxy = ProxyProcess::Start(absl::StrCat("static://", (*backend)->address()),
                                   {"--max-connections", "3", "--workers", "2"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  std::vector<int> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(Connect((*proxy)->port()));
    ASSERT_GE(open.back(), 0);
  }
  ASSERT_TRUE(testing::WaitFor(
      [&] { return (*proxy)->Metric("sluice_proxy_downstream_connections") == 3; },
      absl::Seconds(5)));
  const int fourth = Connect((*proxy)->port());
  ASSERT_GE(fourth, 0);
  EXPECT_TRUE(ClosedByPeer(fourth));
  close(fourth);
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_connections_refused_total"), 1);
  for (int fd : open) EXPECT_FALSE(ClosedByPeer(fd)) << "the first three stay open";

  close(open.back());
  open.pop_back();
  ASSERT_TRUE(testing::WaitFor(
      [&] { return (*proxy)->Metric("sluice_proxy_downstream_connections") == 2; },
      absl::Seconds(5)));
  const int next = Connect((*proxy)->port());
  ASSERT_GE(next, 0);
  EXPECT_FALSE(ClosedByPeer(next)) << "room again once one closed";
  close(next);
  for (int fd : open) close(fd);
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_connections_refused_total"), 1);
}

TEST(ProxyMaxConnectionsTest, ANegativeCapIsRefusedAtStart) {
  auto proxy = ProxyProcess::Start("static://127.0.0.11:1", {"--max-connections", "-1"});
  ASSERT_FALSE(proxy.ok());
  EXPECT_NE(proxy.status().message().find("--max-connections"), std::string::npos)
      << proxy.status();
}

}  // namespace
}  // namespace sluice
