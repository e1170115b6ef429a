// The proxy as a service: --max-connections (beyond the cap a client connection is accepted
// and closed at once, and counted; once one closes, the next gets in) and --access-log.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "greeter_backend.h"
#include "helloworld.grpc.pb.h"
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
  auto connections_are = [&](int n) {
    return testing::WaitFor(
        [&] { return (*proxy)->Metric("sluice_proxy_downstream_connections") == n; },
        absl::Seconds(10));
  };
  // The start-up probe's connection must be gone first, or it would take one of the three.
  ASSERT_TRUE(connections_are(0));
  std::vector<int> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(Connect((*proxy)->port()));
    ASSERT_GE(open.back(), 0);
    ASSERT_TRUE(connections_are(i + 1));
  }
  const int fourth = Connect((*proxy)->port());
  ASSERT_GE(fourth, 0);
  EXPECT_TRUE(ClosedByPeer(fourth));
  close(fourth);
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_connections_refused_total"), 1);
  for (int fd : open) EXPECT_FALSE(ClosedByPeer(fd)) << "the first three stay open";

  close(open.back());
  open.pop_back();
  ASSERT_TRUE(connections_are(2));
  const int next = Connect((*proxy)->port());
  ASSERT_GE(next, 0);
  EXPECT_FALSE(ClosedByPeer(next)) << "room again once one closed";
  close(next);
  for (int fd : open) close(fd);
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_connections_refused_total"), 1);
}

// --access-log through a real proxy: a line per call, with the backend, the status and the
// bytes; the metric counts them.
TEST(ProxyAccessLogTest, WritesALinePerCallWithItsOutcome) {
  auto good = GreeterBackend::Start("127.0.0.11");
  auto bad = GreeterBackend::Start("127.0.0.12");
  ASSERT_TRUE(good.ok() && bad.ok());
  (*bad)->set_failure(grpc::StatusCode::INTERNAL);
  const std::string log_path =
      absl::StrCat(::testing::TempDir(), "/proxy-access-", getpid(), ".log");
  auto proxy = ProxyProcess::Start(
      absl::StrCat("static://", (*good)->address(), ",", (*bad)->address()),
      {"--access-log", log_path, "--policy", "round_robin", "--no-health-check"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  // Both connected first, so round robin alternates from the first call.
  ASSERT_TRUE((*proxy)->WaitForReadyBackends(2)) << (*proxy)->Get("/api/dashboard").second;
  auto stub = Greeter::NewStub((*proxy)->Channel());
  int ok = 0, failed = 0;
  for (int i = 0; i < 6; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    HelloRequest request;
    request.set_name("logged");
    HelloReply reply;
    (stub->SayHello(&context, request, &reply).ok() ? ok : failed) += 1;
  }
  EXPECT_EQ(ok, 3);
  EXPECT_EQ(failed, 3);
  std::vector<nlohmann::json> lines;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        lines.clear();
        std::ifstream in(log_path);
        for (std::string line; std::getline(in, line);) {
          lines.push_back(nlohmann::json::parse(line, nullptr, false));
        }
        return lines.size() >= 6;
      },
      absl::Seconds(5)));
  ASSERT_EQ(lines.size(), 6u);
  int logged_ok = 0, logged_internal = 0;
  for (const nlohmann::json& line : lines) {
    ASSERT_FALSE(line.is_discarded());
    EXPECT_EQ(line["method"], "/Greeter/SayHello");
    EXPECT_EQ(line["attempts"], 1);
    EXPECT_TRUE(line["client"].get<std::string>().rfind("127.0.0.1:", 0) == 0) << line;
    EXPECT_GE(line["latency_ms"].get<double>(), 0);
    EXPECT_GT(line["bytes_in"].get<int>(), 0);
    if (line["grpc_status"] == 0) {
      ++logged_ok;
      EXPECT_EQ(line["backend"], (*good)->address());
      EXPECT_GT(line["bytes_out"].get<int>(), 0);
    } else if (line["grpc_status"] == 13) {
      ++logged_internal;
      EXPECT_EQ(line["backend"], (*bad)->address());
    }
  }
  EXPECT_EQ(logged_ok, 3);
  EXPECT_EQ(logged_internal, 3);
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_access_log_lines_total"), 6);
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_access_log_dropped_total"), 0);
  unlink(log_path.c_str());
}

TEST(ProxyMaxConnectionsTest, ANegativeCapIsRefusedAtStart) {
  auto proxy = ProxyProcess::Start("static://127.0.0.11:1", {"--max-connections", "-1"});
  ASSERT_FALSE(proxy.ok());
  EXPECT_NE(proxy.status().message().find("--max-connections"), std::string::npos)
      << proxy.status();
}

}  // namespace
}  // namespace sluice
