// `sluice proxy` when backends fail: retries, refused and stopped backends, ejection and
// attempt timeouts.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "etcd_process.h"
#include "greeter_backend.h"
#include "helloworld.grpc.pb.h"
#include "process.h"
#include "proxy_fixture.h"
#include "raw_h2_client.h"
#include "sluice/registry/registrar.h"

namespace sluice::testing {
namespace {

using grpc::testing::TestService;

TEST(ProxyResilienceTest, KilledBackendCallsSucceedViaRetries) {
  const int port = FreePort();
  std::vector<ChildProcess> backends;
  std::vector<std::string> ips = {"127.0.0.11", "127.0.0.12", "127.0.0.13"};
  for (const auto& ip : ips) {
    // Calls of 50 ms: the kill finds calls in flight on the backend, which only a retry saves.
    // (With sub-millisecond calls the proxy often sees the connection drop between two calls
    // and stops picking the backend before any call is lost: no retry to count.)
    auto child = ChildProcess::Start({BuiltBinary("bin/greeter_server"), "--ip", ip, "--port",
                                      std::to_string(port), "--delay", "50ms", "--quiet"});
    ASSERT_TRUE(child.ok());
    backends.push_back(std::move(*child));
  }
  for (const auto& ip : ips) {
    ASSERT_TRUE(WaitFor([&] { return CanConnect(ip, port); }, absl::Seconds(10)));
  }
  const std::string target =
      absl::StrCat("static://127.0.0.11:", port, ",127.0.0.12:", port, ",127.0.0.13:", port);
  auto proxy = ProxyProcess::Start(
      target, {"--policy", "least_request", "--idempotent", "/Greeter/SayHello"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto stub = Greeter::NewStub((*proxy)->Channel());
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::mutex mu;
  std::map<std::string, int> per_backend;
  std::string first_error;
  std::vector<std::thread> callers;
  // Three callers: at most three calls die with the backend at once, which the default retry
  // budget (20% of calls in flight + 10) always covers. More at once may fail by design.
  for (int t = 0; t < 3; ++t) {
    callers.emplace_back([&] {
      while (!stop) {
        HelloReply reply;
        grpc::Status s = SayHello(*stub, "load", &reply);
        std::lock_guard<std::mutex> lock(mu);
        if (s.ok()) {
          ++ok;
          ++per_backend[Replier(reply.message())];
        } else {
          ++failed;
          if (first_error.empty()) first_error = s.error_message();
        }
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return ok.load() > 100; }, absl::Seconds(20)));
  // Kill only while the proxy has a call on 127.0.0.12: least_request can leave it idle for a
  // moment (two calls on one backend, none on another), and a kill then loses no call at all.
  const std::string in_flight_on_killed =
      absl::StrCat("sluice_proxy_backend_in_flight{backend=\"127.0.0.12:", port, "\"}");
  ASSERT_TRUE(WaitFor([&] { return (*proxy)->Metric(in_flight_on_killed) >= 1; },
                      absl::Seconds(10)));
  backends[1].Kill();  // 127.0.0.12 crashes: -9
  const int at_kill = ok.load();
  ASSERT_TRUE(WaitFor([&] { return ok.load() > at_kill + 300; }, absl::Seconds(30)));
  stop = true;
  for (auto& t : callers) t.join();
  EXPECT_EQ(failed.load(), 0) << first_error << "\n" << (*proxy)->process().ReadLog();
  EXPECT_GT(per_backend[absl::StrCat("127.0.0.12:", port)], 0);
  EXPECT_GT(per_backend[absl::StrCat("127.0.0.11:", port)], 0);
  EXPECT_GT(per_backend[absl::StrCat("127.0.0.13:", port)], 0);
  EXPECT_GE((*proxy)->Metric("sluice_proxy_retries_total"), 1);
}

TEST(ProxyResilienceTest, RefusedConnectionsDoNotUseUpACallsAttempts) {
  // One live backend and two addresses that refuse connections, as a backend killed moments ago
  // looks until its lease expires. With two attempts per call, a call that meets both refusals
  // in a row must still reach the live backend: refused attempts never reached a backend.
  auto live = GreeterBackend::Start("127.0.0.11", 0);
  ASSERT_TRUE(live.ok()) << live.status();
  const int closed_port = FreePort();
  const std::string target = absl::StrCat("static://", (*live)->address(),
                                          ",127.0.0.12:", closed_port, ",127.0.0.13:", closed_port);
  // Without health checks: only the proxy's own connection pool tells the refusing addresses
  // apart (their probes are refused, so they are not picked; a call that meets a refusal
  // anyway, between a backend's death and the pool noticing it, goes elsewhere for free).
  auto proxy = ProxyProcess::Start(
      target, {"--policy", "round_robin", "--max-attempts", "2", "--no-health-check"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto stub = Greeter::NewStub((*proxy)->Channel());
  int failed = 0;
  std::string first_error;
  for (int i = 0; i < 30; ++i) {
    HelloReply reply;
    const grpc::Status s = SayHello(*stub, "refused", &reply);
    if (!s.ok()) {
      ++failed;
      if (first_error.empty()) first_error = s.error_message();
    } else {
      EXPECT_EQ(Replier(reply.message()), (*live)->address());
    }
  }
  EXPECT_EQ(failed, 0) << first_error;
  // The pool found both addresses refusing (a probe each, and its retries with backoff): they
  // are not picked, rather than picked and retried.
  EXPECT_GE((*proxy)->Metric("sluice_proxy_upstream_connect_failures_total"), 2);
}

TEST(ProxyResilienceTest, WhenEveryBackendRefusesACallWaitsForOneUntilItsDeadline) {
  // The only backend is down (restarting): a call with time left waits and tries again rather
  // than failing after a burst of refused connections; one without a deadline fails fast.
  const int port = FreePort();
  const std::string address = absl::StrCat("127.0.0.11:", port);
  // Without health checks, so that the only backend is pickable while it refuses connections.
  auto proxy = ProxyProcess::Start(absl::StrCat("static://", address),
                                   {"--policy", "round_robin", "--no-health-check"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto stub = Greeter::NewStub((*proxy)->Channel());
  {
    grpc::ClientContext context;  // no deadline: nothing to wait for
    HelloRequest request;
    HelloReply reply;
    const absl::Time start = absl::Now();
    const grpc::Status s = stub->SayHello(&context, request, &reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  }
  std::unique_ptr<GreeterBackend> backend;
  std::thread starter([&] {
    absl::SleepFor(absl::Milliseconds(700));
    auto started = GreeterBackend::Start("127.0.0.11", port);
    if (started.ok()) backend = std::move(*started);
  });
  HelloReply reply;
  const grpc::Status s = SayHello(*stub, "patient", &reply, absl::Seconds(10));
  starter.join();
  ASSERT_NE(backend, nullptr) << "the backend did not start on " << address;
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Replier(reply.message()), address);
}

TEST(ProxyResilienceTest, ARetryThatFindsNoEndpointLeftWaitsForANewOneUntilItsDeadline) {
  // The only registered backend refuses connections (it died; its key is still there), then
  // leaves the registry while a call is retrying: with nothing left to pick, the call waits for
  // the next backend to register instead of failing at once.
  EtcdProcess etcd;
  ASSERT_TRUE(etcd.Start().ok());
  auto register_address = [&](const std::string& address) {
    registry::RegistrarOptions options;
    options.etcd.endpoints = {etcd.endpoint()};
    options.prefix = "services/greeter";
    options.endpoint.address = address;
    options.ttl_seconds = 10;
    return registry::Registrar::Start(options);
  };
  const std::string dead = absl::StrCat("127.0.0.12:", FreePort());
  auto dead_key = register_address(dead);
  ASSERT_TRUE(dead_key.ok()) << dead_key.status();
  auto proxy = ProxyProcess::Start(absl::StrCat("etcd://", etcd.endpoint(), "/services/greeter"),
                                   {"--policy", "round_robin"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto stub = Greeter::NewStub((*proxy)->Channel());

  std::unique_ptr<GreeterBackend> backend;
  std::unique_ptr<registry::Registrar> backend_key;
  std::thread changer([&] {
    absl::SleepFor(absl::Milliseconds(400));  // the call is retrying the dead backend by now
    EXPECT_TRUE((*dead_key)->Stop().ok());
    absl::SleepFor(absl::Milliseconds(600));  // nothing registered meanwhile
    auto started = GreeterBackend::Start("127.0.0.11", 0);
    if (!started.ok()) return;
    backend = std::move(*started);
    auto key = register_address(backend->address());
    if (key.ok()) backend_key = std::move(*key);
  });
  HelloReply reply;
  const absl::Time start = absl::Now();
  const grpc::Status s = SayHello(*stub, "patient", &reply, absl::Seconds(10));
  const absl::Duration took = absl::Now() - start;
  changer.join();
  ASSERT_NE(backend_key, nullptr) << "the new backend did not register";
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Replier(reply.message()), backend->address());
  EXPECT_GE(took, absl::Milliseconds(900)) << "answered before the new backend registered?";
  EXPECT_LT(took, absl::Seconds(5));
}

TEST(ProxyResilienceTest, GracefullyStoppedBackendUnderLoadLosesNoCall) {
  std::vector<std::unique_ptr<GreeterBackend>> backends;
  for (const char* ip : {"127.0.0.11", "127.0.0.12", "127.0.0.13"}) {
    auto backend = GreeterBackend::Start(ip, 0, absl::Milliseconds(2));
    ASSERT_TRUE(backend.ok());
    backends.push_back(std::move(*backend));
  }
  auto proxy =
      ProxyProcess::Start(absl::StrCat("static://", backends[0]->address(), ",",
                                       backends[1]->address(), ",", backends[2]->address()),
                          {"--idempotent", "/Greeter/*"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto stub = Greeter::NewStub((*proxy)->Channel());
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::mutex mu;
  std::string first_error;
  std::vector<std::thread> callers;
  for (int t = 0; t < 3; ++t) {  // within the default retry budget, as above
    callers.emplace_back([&] {
      while (!stop) {
        HelloReply reply;
        grpc::Status s = SayHello(*stub, "load", &reply);
        if (s.ok()) {
          ++ok;
        } else {
          ++failed;
          std::lock_guard<std::mutex> lock(mu);
          if (first_error.empty()) first_error = s.error_message();
        }
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return ok.load() > 200; }, absl::Seconds(20)));
  const int64_t stopped_calls = backends[1]->calls();
  EXPECT_GT(stopped_calls, 0);
  backends[1]->Shutdown(absl::Seconds(5));  // GOAWAY, drain, then refuse connections
  const int at_stop = ok.load();
  ASSERT_TRUE(WaitFor([&] { return ok.load() > at_stop + 500; }, absl::Seconds(30)));
  stop = true;
  for (auto& t : callers) t.join();
  EXPECT_EQ(failed.load(), 0) << first_error << "\n" << (*proxy)->process().ReadLog();
  EXPECT_GT(backends[0]->calls() + backends[2]->calls(), 0);
}

TEST(ProxyResilienceTest, FailingBackendIsEjectedAndIdempotentCallsGoElsewhere) {
  std::vector<std::unique_ptr<GreeterBackend>> backends;
  for (const char* ip : {"127.0.0.11", "127.0.0.12", "127.0.0.13"}) {
    auto backend = GreeterBackend::Start(ip);
    ASSERT_TRUE(backend.ok());
    backends.push_back(std::move(*backend));
  }
  backends[1]->set_failure(grpc::StatusCode::UNAVAILABLE);
  // Round robin keeps picking the failing backend until it is ejected, which is what this tests
  // (peak_ewma would stop picking it after its first failure).
  auto proxy =
      ProxyProcess::Start(absl::StrCat("static://", backends[0]->address(), ",",
                                       backends[1]->address(), ",", backends[2]->address()),
                          {"--idempotent", "/Greeter/SayHello", "--policy", "round_robin"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto stub = Greeter::NewStub((*proxy)->Channel());
  for (int i = 0; i < 60; ++i) {
    HelloReply reply;
    grpc::Status status = SayHello(*stub, "x", &reply);
    ASSERT_TRUE(status.ok()) << i << ": " << status.error_message();
    EXPECT_NE(Replier(reply.message()), backends[1]->address());
  }
  // Five failures in a row ejected it (the library's outlier detection, fed by the proxy).
  const int64_t calls_at_ejection = backends[1]->calls();
  EXPECT_GE(calls_at_ejection, 5);
  const std::string listing = (*proxy)->Get("/backends").second;
  EXPECT_TRUE(absl::StrContains(listing, "\"ejected\"")) << listing;
  for (int i = 0; i < 30; ++i) {
    HelloReply reply;
    ASSERT_TRUE(SayHello(*stub, "y", &reply).ok());
  }
  EXPECT_EQ(backends[1]->calls(), calls_at_ejection);
  EXPECT_GE((*proxy)->Metric("sluice_proxy_retries_total"), 5);
}

TEST(ProxyResilienceTest, AttemptTimeoutRetriesAroundAStalledBackendAndEjectsIt) {
  std::vector<std::unique_ptr<GreeterBackend>> backends;
  for (const char* ip : {"127.0.0.11", "127.0.0.12", "127.0.0.13"}) {
    auto backend = GreeterBackend::Start(ip);
    ASSERT_TRUE(backend.ok());
    backends.push_back(std::move(*backend));
  }
  // Accepts calls, answers none in time: no status code gives it away, only a timer.
  backends[1]->set_delay(absl::Seconds(3));
  const std::string target = absl::StrCat("static://", backends[0]->address(), ",",
                                          backends[1]->address(), ",", backends[2]->address());
  // Round robin keeps picking the stalled backend, so ejection is what moves calls off it
  // (peak_ewma would stop picking it after its first timeout, and never eject it).
  auto proxy =
      ProxyProcess::Start(target, {"--idempotent", "/Greeter/SayHello", "--attempt-timeout",
                                   "200ms", "--policy", "round_robin"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto stub = Greeter::NewStub((*proxy)->Channel());
  for (int i = 0; i < 30; ++i) {
    const absl::Time start = absl::Now();
    HelloReply reply;
    grpc::Status status = SayHello(*stub, "x", &reply, absl::Seconds(5));
    const absl::Duration took = absl::Now() - start;
    ASSERT_TRUE(status.ok()) << i << ": " << status.error_message();
    EXPECT_NE(Replier(reply.message()), backends[1]->address());
    EXPECT_LT(took, absl::Milliseconds(800)) << i;
  }
  // Its timed-out attempts count as failures: outlier detection ejected it.
  const std::string listing = (*proxy)->Get("/backends").second;
  EXPECT_TRUE(absl::StrContains(listing, "\"ejected\"")) << listing;
  EXPECT_GE((*proxy)->Metric("sluice_proxy_attempt_timeouts_total"), 1);
  EXPECT_GE((*proxy)->Metric("sluice_proxy_retries_total"), 1);
  const int64_t calls_at_ejection = backends[1]->calls();
  for (int i = 0; i < 15; ++i) {
    HelloReply reply;
    ASSERT_TRUE(SayHello(*stub, "y", &reply, absl::Seconds(5)).ok());
  }
  EXPECT_EQ(backends[1]->calls(), calls_at_ejection);

  // One attempt only: the stalled backend's attempt ends UNAVAILABLE, naming it and the timeout,
  // long before the client's deadline.
  auto single = ProxyProcess::Start(
      absl::StrCat("static://", backends[1]->address()),
      {"--idempotent", "/Greeter/SayHello", "--attempt-timeout", "200ms", "--max-attempts", "1"});
  ASSERT_TRUE(single.ok()) << single.status();
  auto single_stub = Greeter::NewStub((*single)->Channel());
  const absl::Time start = absl::Now();
  HelloReply reply;
  grpc::Status status = SayHello(*single_stub, "z", &reply, absl::Seconds(5));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), backends[1]->address()))
      << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "attempt timeout (200ms)"))
      << status.error_message();
}

TEST(ProxyResilienceTest, AttemptTimeoutLeavesNonIdempotentMethodsAlone) {
  std::vector<std::unique_ptr<GreeterBackend>> backends;
  for (const char* ip : {"127.0.0.11", "127.0.0.12", "127.0.0.13"}) {
    auto backend = GreeterBackend::Start(ip);
    ASSERT_TRUE(backend.ok());
    backends.push_back(std::move(*backend));
  }
  backends[1]->set_delay(absl::Seconds(2));
  auto proxy = ProxyProcess::Start(
      absl::StrCat("static://", backends[0]->address(), ",", backends[1]->address(), ",",
                   backends[2]->address()),
      // Round robin over all three once they are connected (no health
      // checks to wait for), so the slow backend's turn comes.
      {"--attempt-timeout", "200ms", "--policy", "round_robin", "--no-health-check"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  ASSERT_TRUE((*proxy)->WaitForReadyBackends(3)) << (*proxy)->Get("/api/dashboard").second;
  auto stub = Greeter::NewStub((*proxy)->Channel());
  // Round robin: within three calls one lands on the slow backend, which may not be cut short
  // (the call could not be resent), so it waits for the answer.
  bool slow_seen = false;
  for (int i = 0; i < 3; ++i) {
    const absl::Time start = absl::Now();
    HelloReply reply;
    grpc::Status status = SayHello(*stub, "x", &reply, absl::Seconds(5));
    ASSERT_TRUE(status.ok()) << i << ": " << status.error_message();
    if (Replier(reply.message()) == backends[1]->address()) {
      slow_seen = true;
      EXPECT_GE(absl::Now() - start, absl::Milliseconds(1900));
    }
  }
  EXPECT_TRUE(slow_seen);
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_attempt_timeouts_total"), 0);
}

TEST(ProxyResilienceTest, IdempotentUnavailableIsRetriedThenTheBackendsAnswerPassesThrough) {
  auto a = TestServiceBackend::Start("127.0.0.11");
  auto b = TestServiceBackend::Start("127.0.0.12");
  ASSERT_TRUE(a.ok() && b.ok());
  auto proxy =
      ProxyProcess::Start(absl::StrCat("static://", (*a)->address(), ",", (*b)->address()),
                          {"--idempotent", "/grpc.testing.TestService/*", "--max-attempts", "3"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  // Both pickable first: with one of them still connecting, every attempt goes to the other.
  ASSERT_TRUE((*proxy)->WaitForReadyBackends(2)) << (*proxy)->Get("/api/dashboard").second;
  auto stub = TestService::NewStub((*proxy)->Channel());
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(10)));
  grpc::testing::SimpleRequest request;
  request.mutable_response_status()->set_code(14);
  request.mutable_response_status()->set_message("down for maintenance: 100% \xe2\x98\xba");
  grpc::testing::SimpleResponse response;
  grpc::Status status = stub->UnaryCall(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), request.response_status().message());
  // Three attempts, spread over both backends (a retry avoids the backend that just failed).
  EXPECT_EQ((*a)->calls() + (*b)->calls(), 3);
  EXPECT_GE((*a)->calls(), 1);
  EXPECT_GE((*b)->calls(), 1);
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_retries_total"), 2);
  // Other statuses are answers, not outages: NOT_FOUND goes back after one attempt.
  grpc::ClientContext context2;
  request.mutable_response_status()->set_code(5);
  EXPECT_EQ(stub->UnaryCall(&context2, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ((*a)->calls() + (*b)->calls(), 4);
}

}  // namespace
}  // namespace sluice::testing
