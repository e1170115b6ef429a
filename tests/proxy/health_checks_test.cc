// grpc.health.v1 checks in `sluice proxy`: a backend that says NOT_SERVING stops getting calls
// within 100 ms and gets them again once SERVING; /backends and /metrics show its health.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "greeter_backend.h"
#include "helloworld.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "process.h"
#include "proxy_fixture.h"
#include "proxy_process.h"

namespace sluice {
namespace {

using testing::GreeterBackend;
using testing::ProxyProcess;
using testing::Replier;

TEST(ProxyHealthCheckTest, ANotServingBackendStopsGettingCallsWithin100msAndComesBack) {
  std::vector<std::unique_ptr<GreeterBackend>> backends;
  for (const char* ip : {"127.0.0.11", "127.0.0.12", "127.0.0.13"}) {
    auto backend = GreeterBackend::Start(ip);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backends.push_back(std::move(*backend));
  }
  auto proxy = ProxyProcess::Start(absl::StrCat("static://", backends[0]->address(), ",",
                                                backends[1]->address(), ",",
                                                backends[2]->address()),
                                   {"--policy", "round_robin"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto stub = Greeter::NewStub((*proxy)->Channel());
  HelloReply first;
  ASSERT_TRUE(testing::SayHelloUntilAnswered(*stub, &first).ok());

  struct Answer {
    absl::Time started;
    std::string backend;
  };
  std::mutex mu;
  std::vector<Answer> answers;
  int failed = 0;
  std::atomic<bool> stop{false};
  std::thread caller([&] {
    while (!stop.load()) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      HelloRequest request;
      request.set_name("health");
      HelloReply reply;
      const absl::Time started = absl::Now();
      const grpc::Status status = stub->SayHello(&context, request, &reply);
      std::lock_guard<std::mutex> lock(mu);
      if (!status.ok()) {
        ++failed;
        continue;
      }
      answers.push_back({started, Replier(reply.message())});
    }
  });
  absl::SleepFor(absl::Milliseconds(300));
  const absl::Time flipped = absl::Now();
  backends[1]->set_serving(false);
  absl::SleepFor(absl::Milliseconds(600));
  const std::string listing = (*proxy)->Get("/backends").second;
  const std::string metrics = (*proxy)->Get("/metrics").second;
  const absl::Time restored = absl::Now();
  backends[1]->set_serving(true);
  absl::SleepFor(absl::Milliseconds(600));
  stop.store(true);
  caller.join();

  EXPECT_TRUE(absl::StrContains(listing, "\"not_serving\"")) << listing;
  EXPECT_TRUE(absl::StrContains(
      metrics, absl::StrCat("sluice_proxy_backend_health{backend=\"", backends[1]->address(),
                            "\",health=\"not_serving\"} 1")))
      << metrics;
  EXPECT_EQ(failed, 0);
  int before = 0, during = 0, after = 0;
  absl::Time last_during = absl::InfinitePast();
  for (const Answer& answer : answers) {
    if (answer.backend != backends[1]->address()) continue;
    if (answer.started < flipped) {
      ++before;
    } else if (answer.started < restored) {
      ++during;
      last_during = std::max(last_during, answer.started);
    } else {
      ++after;
    }
  }
  std::printf("NOT_SERVING at t0: %d calls to it started after t0, the last %s after t0\n", during,
              during > 0 ? absl::FormatDuration(last_during - flipped).c_str() : "-");
  EXPECT_GT(before, 10);
  if (during > 0) {
    EXPECT_LT(last_during - flipped, absl::Milliseconds(100));
  }
  EXPECT_GT(after, 10) << "back in the rotation once SERVING again";
}

grpc::health::v1::HealthCheckResponse::ServingStatus Check(grpc::health::v1::Health::Stub& stub,
                                                          const std::string& service,
                                                          grpc::StatusCode* code) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  *code = stub.Check(&context, request, &response).error_code();
  return response.status();
}

// Load reports through the proxy: two real greeter_server processes attach ORCA reports (one 90%
// busy, one 10%) that the proxy reads from the trailers it forwards.
TEST(ProxyLoadReportTest, WeightedRoundRobinSteersAwayFromABackendReportingHighUtilization) {
  std::vector<testing::ChildProcess> servers;
  std::vector<std::string> addresses;
  const char* utilization[] = {"0.9", "0.1"};
  for (int i = 0; i < 2; ++i) {
    const std::string ip = absl::StrCat("127.0.0.", 11 + i);
    const int port = testing::FreePort();
    addresses.push_back(absl::StrCat(ip, ":", port));
    auto child = testing::ChildProcess::Start(
        {testing::BuiltBinary("bin/greeter_server"), "--ip", ip, "--port", std::to_string(port),
         "--utilization", utilization[i]},
        {}, absl::StrCat(::testing::TempDir(), "proxy-orca-greeter-", ip, ".log"));
    ASSERT_TRUE(child.ok()) << child.status();
    servers.push_back(std::move(*child));
  }
  auto proxy = ProxyProcess::Start(
      absl::StrCat("static://", addresses[0], ",", addresses[1]),
      {"--policy", "weighted_round_robin", "--policy-config",
       R"({"blackout_period": "100ms", "weight_update_period": "100ms"})"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto stub = Greeter::NewStub((*proxy)->Channel());
  HelloReply first;
  ASSERT_TRUE(testing::SayHelloUntilAnswered(*stub, &first).ok());
  std::map<std::string, int> late;
  const absl::Time start = absl::Now();
  while (absl::Now() - start < absl::Milliseconds(2200)) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    HelloRequest request;
    HelloReply reply;
    const bool settled = absl::Now() - start > absl::Milliseconds(1500);
    ASSERT_TRUE(stub->SayHello(&context, request, &reply).ok());
    if (settled) ++late[Replier(reply.message())];
  }
  std::printf("through the proxy, after the reports settled: 90%%-busy %d calls, 10%%-busy %d\n",
              late[addresses[0]], late[addresses[1]]);
  EXPECT_GT(late[addresses[1]], 3 * late[addresses[0]]);
}

// A client library checking the proxy's own health sends a Watch stream through it, which the
// proxy forwards to a backend for as long as the client lives. It must not count as a call stuck
// on that backend: with peak_ewma (the default) that backend would get no call at all.
TEST(ProxyHealthCheckTest, AClientsHealthWatchThroughTheProxyDoesNotKeepABackendOutOfPicks) {
  std::vector<std::unique_ptr<GreeterBackend>> backends;
  for (const char* ip : {"127.0.0.11", "127.0.0.12"}) {
    auto backend = GreeterBackend::Start(ip);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backends.push_back(std::move(*backend));
  }
  auto proxy = ProxyProcess::Start(
      absl::StrCat("static://", backends[0]->address(), ",", backends[1]->address()),
      {"--no-health-check"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  ASSERT_TRUE((*proxy)->WaitForReadyBackends(2)) << (*proxy)->Get("/api/dashboard").second;
  // Two Watch streams, so both backends very likely carry one.
  auto health = grpc::health::v1::Health::NewStub((*proxy)->Channel());
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<grpc::health::v1::HealthCheckResponse>>> watches;
  for (int i = 0; i < 2; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    grpc::health::v1::HealthCheckRequest request;
    watches.push_back(health->Watch(contexts.back().get(), request));
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(watches.back()->Read(&response));
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  auto stub = Greeter::NewStub((*proxy)->Channel());
  std::map<std::string, int> answered;
  for (int i = 0; i < 60; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    HelloRequest request;
    HelloReply reply;
    ASSERT_TRUE(stub->SayHello(&context, request, &reply).ok());
    ++answered[Replier(reply.message())];
  }
  // A backend the Watch kept out of picks gets none. Both get some; not an even share, since
  // peak_ewma rightly favours whichever answers faster on a busy machine (4 of 60 seen).
  for (const auto& backend : backends) {
    EXPECT_GE(answered[backend->address()], 2) << backend->address();
  }
  for (auto& context : contexts) context->TryCancel();
}

TEST(ProxyHealthServiceTest, AnswersLivenessAndReadinessItselfForProbes) {
  auto backend = GreeterBackend::Start("127.0.0.11");
  ASSERT_TRUE(backend.ok()) << backend.status();
  const int health_port = testing::FreePort();
  auto proxy = ProxyProcess::Start(
      absl::StrCat("static://", (*backend)->address()),
      {"--health-listen", absl::StrCat("127.0.0.1:", health_port), "--pick-wait", "100ms"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", health_port), grpc::InsecureChannelCredentials()));
  using grpc::health::v1::HealthCheckResponse;
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  EXPECT_EQ(Check(*stub, "", &code), HealthCheckResponse::SERVING);
  EXPECT_EQ(code, grpc::StatusCode::OK);
  auto ready_is = [&](HealthCheckResponse::ServingStatus want) {
    const absl::Time until = absl::Now() + absl::Seconds(5);
    while (absl::Now() < until) {
      if (Check(*stub, "sluice.proxy.ready", &code) == want && code == grpc::StatusCode::OK) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  };
  EXPECT_TRUE(ready_is(HealthCheckResponse::SERVING));
  Check(*stub, "no.such.Service", &code);
  EXPECT_EQ(code, grpc::StatusCode::NOT_FOUND);

  // The only backend says NOT_SERVING: the proxy is not ready, and still alive.
  (*backend)->set_serving(false);
  EXPECT_TRUE(ready_is(HealthCheckResponse::NOT_SERVING));
  EXPECT_EQ(Check(*stub, "", &code), HealthCheckResponse::SERVING);
}

TEST(ProxyHealthServiceTest, RefusesAHealthAddressAnotherProcessHolds) {
  auto backend = GreeterBackend::Start("127.0.0.11");
  ASSERT_TRUE(backend.ok()) << backend.status();
  // The backend's own address is taken (and has no SO_REUSEPORT to share).
  auto proxy = ProxyProcess::Start(absl::StrCat("static://", (*backend)->address()),
                                   {"--health-listen", (*backend)->address()});
  ASSERT_FALSE(proxy.ok());
  EXPECT_TRUE(absl::StrContains(proxy.status().message(), "--health-listen")) << proxy.status();
}

}  // namespace
}  // namespace sluice
