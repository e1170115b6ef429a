// The client library's Prometheus export against real gRPC backends, scraped over HTTP.
#include "sluice/client/metrics_export.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "greeter_backend.h"
#include "helloworld.grpc.pb.h"

namespace sluice {
namespace {

using testing::GreeterBackend;

// GET http://127.0.0.1:port/path; the whole response, headers included.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: x\r\n\r\n");
    send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char buf[8192];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) response.append(buf, n);
  }
  close(fd);
  return response;
}

struct Fixture {
  std::vector<std::unique_ptr<GreeterBackend>> backends;
  std::unique_ptr<client::Balancer> balancer;
  std::unique_ptr<client::MetricsExport> metrics;
  std::unique_ptr<HttpServer> server;

  explicit Fixture(int count) {
    std::vector<std::string> addresses;
    for (int i = 0; i < count; ++i) {
      auto backend = GreeterBackend::Start(absl::StrCat("127.0.0.", 11 + i));
      EXPECT_TRUE(backend.ok()) << backend.status();
      addresses.push_back((*backend)->address());
      backends.push_back(std::move(*backend));
    }
    client::BalancerOptions options;
    options.target = "static://" + absl::StrJoin(addresses, ",");
    options.policy = "round_robin";
    auto created = client::Balancer::Create(options);
    EXPECT_TRUE(created.ok()) << created.status();
    balancer = std::move(*created);
    EXPECT_TRUE(balancer->WaitForReady(count, absl::Seconds(10)));
    metrics = std::make_unique<client::MetricsExport>(*balancer);
    auto served = metrics->Serve("127.0.0.1:0");
    EXPECT_TRUE(served.ok()) << served.status();
    server = std::move(*served);
  }

  grpc::Status SayHello() {
    HelloRequest request;
    request.set_name("metrics");
    HelloReply reply;
    return client::UnaryCall(
        *metrics, *balancer, &Greeter::Stub::SayHello,
        {.method = "/Greeter/SayHello", .deadline = balancer->clock().Now() + absl::Seconds(5)},
        request, &reply);
  }
};

TEST(MetricsExportTest, CountsCallsPerEndpointAndServesThemAsPrometheusText) {
  Fixture f(3);
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(f.SayHello().ok());

  const std::string response = HttpGet(f.server->port(), "/metrics");
  ASSERT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << response;
  EXPECT_TRUE(absl::StrContains(response, "Content-Type: text/plain; version=0.0.4"));
  for (const auto& b : f.backends) {
    const std::string e = absl::StrCat("{endpoint=\"", b->address(), "\"");
    EXPECT_TRUE(absl::StrContains(response,
                                  absl::StrCat("sluice_client_endpoint_calls_total", e, "} 10\n")))
        << response;
    EXPECT_TRUE(absl::StrContains(response, absl::StrCat("sluice_client_endpoint_responses_total",
                                                         e, ",grpc_status=\"0\"} 10\n")));
    EXPECT_TRUE(absl::StrContains(
        response,
        absl::StrCat("sluice_client_endpoint_latency_seconds_bucket", e, ",le=\"+Inf\"} 10\n")));
    EXPECT_TRUE(absl::StrContains(
        response, absl::StrCat("sluice_client_endpoint_latency_seconds_count", e, "} 10\n")));
    EXPECT_TRUE(
        absl::StrContains(response, absl::StrCat("sluice_client_endpoint_in_flight", e, "} 0\n")));
    EXPECT_TRUE(absl::StrContains(
        response, absl::StrCat("sluice_client_endpoint_up", e, ",state=\"ready\"} 1\n")));
  }
  EXPECT_TRUE(
      absl::StrContains(response, "# TYPE sluice_client_endpoint_latency_seconds histogram"));
  EXPECT_TRUE(absl::StrContains(response, "sluice_client_ready_endpoints{service=\""));
  EXPECT_TRUE(absl::StartsWith(HttpGet(f.server->port(), "/other"), "HTTP/1.1 404"));
}

TEST(MetricsExportTest, FailuresAreCountedByStatusCodeAndEjectionsShow) {
  Fixture f(2);
  f.backends[1]->set_failure(grpc::StatusCode::UNAVAILABLE);
  int failed = 0;
  for (int i = 0; i < 20; ++i) failed += f.SayHello().ok() ? 0 : 1;
  ASSERT_GE(failed, 5);  // SayHello is not marked idempotent here: its failures surface

  const std::string text = f.metrics->RenderPrometheus();
  const std::string bad = absl::StrCat("{endpoint=\"", f.backends[1]->address(), "\"");
  const std::string good = absl::StrCat("{endpoint=\"", f.backends[0]->address(), "\"");
  EXPECT_TRUE(absl::StrContains(text, absl::StrCat("sluice_client_endpoint_responses_total", bad,
                                                   ",grpc_status=\"14\"} ", failed, "\n")))
      << text;
  EXPECT_FALSE(absl::StrContains(
      text, absl::StrCat("sluice_client_endpoint_responses_total", good, ",grpc_status=\"14\"")));
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("sluice_client_endpoint_failures_total", bad, "} ", failed, "\n")));
  // Five failures in a row eject it (one of two endpoints: within the 50% limit).
  EXPECT_TRUE(
      absl::StrContains(text, absl::StrCat("sluice_client_endpoint_ejections", bad, "} 1\n")))
      << text;
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("sluice_client_endpoint_up", bad, ",state=\"ejected\"} 0\n")));
}

TEST(MetricsExportTest, ServeRefusesABadAddressSayingWhatItWanted) {
  Fixture f(1);
  auto served = f.metrics->Serve("localhost");
  ASSERT_FALSE(served.ok());
  EXPECT_TRUE(absl::StrContains(served.status().message(), "expected IP:PORT"));
}

}  // namespace
}  // namespace sluice
