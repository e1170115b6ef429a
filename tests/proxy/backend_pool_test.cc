// The proxy's connection pool as its balancers' transport input, end to end: a backend is
// picked only once the pool holds a connection it confirmed (its HTTP/2 SETTINGS arrived), one
// that goes away is taken out of picks and probed with backoff, and picked again once it is
// back. Health checks are off, so that only the pool decides.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "etcd_process.h"
#include "greeter_backend.h"
#include "helloworld.grpc.pb.h"
#include "process.h"
#include "proxy_fixture.h"
#include "proxy_process.h"
#include "sluice/registry/registrar.h"

namespace sluice {
namespace {

using testing::BlackHole;
using testing::FreePort;
using testing::GreeterBackend;
using testing::ProxyProcess;
using testing::WaitFor;

// The state /backends shows for `address`, e.g. "ready" or "transient_failure".
std::string StateOf(ProxyProcess& proxy, const std::string& address) {
  const std::string body = proxy.Get("/backends").second;
  const size_t at = body.find(absl::StrCat("\"", address, "\""));
  if (at == std::string::npos) return "";
  const size_t key = body.find("\"state\":", at);
  if (key == std::string::npos) return "";
  const size_t open = body.find('"', key + 8);
  const size_t close = body.find('"', open + 1);
  return body.substr(open + 1, close - open - 1);
}

grpc::Status Hello(Greeter::Stub& stub, HelloReply* reply, absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  HelloRequest request;
  request.set_name("pool");
  return stub.SayHello(&context, request, reply);
}

TEST(ProxyBackendPoolTest, ABackendIsPickedOnlyOnceItsConnectionIsConfirmed) {
  // Without the confirmation, round robin would send every other call to the silent port, where
  // it would wait out its whole deadline.
  auto live = GreeterBackend::Start("127.0.0.11");
  ASSERT_TRUE(live.ok()) << live.status();
  BlackHole silent("127.0.0.12");
  auto proxy =
      ProxyProcess::Start(absl::StrCat("static://", (*live)->address(), ",", silent.address()),
                          {"--policy", "round_robin", "--no-health-check"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto stub = Greeter::NewStub((*proxy)->Channel());
  for (int i = 0; i < 20; ++i) {
    HelloReply reply;
    const absl::Time start = absl::Now();
    const grpc::Status status = Hello(*stub, &reply, absl::Seconds(3));
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  }
  EXPECT_EQ((*live)->calls(), 20);
  EXPECT_EQ(StateOf(**proxy, silent.address()), "connecting");
  EXPECT_EQ(StateOf(**proxy, (*live)->address()), "ready");
}

TEST(ProxyBackendPoolTest, ABackendThatGoesAwayLeavesPicksAndReturnsOnceItsAddressAnswersAgain) {
  auto steady = GreeterBackend::Start("127.0.0.11");
  ASSERT_TRUE(steady.ok()) << steady.status();
  const int port = FreePort();
  auto leaving = GreeterBackend::Start("127.0.0.12", port);
  ASSERT_TRUE(leaving.ok()) << leaving.status();
  const std::string leaving_address = (*leaving)->address();
  auto proxy =
      ProxyProcess::Start(absl::StrCat("static://", (*steady)->address(), ",", leaving_address),
                          {"--policy", "round_robin", "--no-health-check"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  ASSERT_TRUE(
      WaitFor([&] { return StateOf(**proxy, leaving_address) == "ready"; }, absl::Seconds(5)));

  // A call that reaches the leaving backend while its server shuts down is answered CANCELLED
  // by gRPC itself (it accepted the stream, then never started the call): the proxy must pass
  // that answer on, since the method is not idempotent. Any other failure, or one outside that
  // window, is the proxy's fault.
  enum class Phase { kBoth, kShuttingDown, kGone };
  std::atomic<Phase> phase{Phase::kBoth};
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0}, cancelled_by_shutdown{0}, answered{0};
  std::string first_error;
  std::thread caller([&] {
    auto stub = Greeter::NewStub((*proxy)->Channel());
    while (!stop.load()) {
      HelloReply reply;
      const Phase sent_in = phase.load();
      const grpc::Status status = Hello(*stub, &reply, absl::Seconds(5));
      if (status.ok()) {
        ++answered;
      } else if (status.error_code() == grpc::StatusCode::CANCELLED &&
                 (sent_in == Phase::kShuttingDown || phase.load() == Phase::kShuttingDown)) {
        ++cancelled_by_shutdown;
      } else if (failed++ == 0) {
        first_error = absl::StrCat(status.error_code(), " ", status.error_message());
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
  });
  absl::SleepFor(absl::Milliseconds(300));
  phase.store(Phase::kShuttingDown);
  (*leaving)->Shutdown(absl::Milliseconds(500));
  leaving->reset();
  phase.store(Phase::kGone);
  // Its address now refuses connections: the pool's probes find that, and it leaves the picks.
  EXPECT_TRUE(WaitFor([&] { return StateOf(**proxy, leaving_address) == "transient_failure"; },
                      absl::Seconds(3)))
      << StateOf(**proxy, leaving_address);
  const int steady_before = static_cast<int>((*steady)->calls());
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_GT((*steady)->calls(), steady_before) << "calls go on, to the backend that stayed";

  auto back = GreeterBackend::Start("127.0.0.12", port);
  ASSERT_TRUE(back.ok()) << back.status();
  // Probes back off to 2 s at most: the returning backend is found again within that.
  const absl::Time returned = absl::Now();
  EXPECT_TRUE(WaitFor([&] { return (*back)->calls() > 0; }, absl::Seconds(4)));
  const absl::Duration found_after = absl::Now() - returned;
  stop.store(true);
  caller.join();
  EXPECT_EQ(failed.load(), 0) << first_error;
  // At most the calls in flight when the shutdown began (one caller, one call at a time).
  EXPECT_LE(cancelled_by_shutdown.load(), 2);
  EXPECT_GT(answered.load(), 0);
  EXPECT_EQ(StateOf(**proxy, leaving_address), "ready");
  RecordProperty("returning_backend_called_after_ms",
                 static_cast<int>(absl::ToInt64Milliseconds(found_after)));
}

TEST(ProxyBackendPoolTest, ABackendThatLeavesTheRegistryAndReturnsIsPickedOverItsOpenConnection) {
  // Its connection stays open while its key is gone (a lease that lapsed during a pause): when
  // the key comes back, the probe must find that connection and say ready at once.
  testing::EtcdProcess etcd;
  ASSERT_TRUE(etcd.Start().ok());
  auto backend = GreeterBackend::Start("127.0.0.11");
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto register_backend = [&] {
    registry::RegistrarOptions options;
    options.etcd.endpoints = {etcd.endpoint()};
    options.prefix = "services/greeter";
    options.endpoint.address = (*backend)->address();
    options.ttl_seconds = 10;
    return registry::Registrar::Start(options);
  };
  auto key = register_backend();
  ASSERT_TRUE(key.ok()) << key.status();
  auto proxy = ProxyProcess::Start(absl::StrCat("etcd://", etcd.endpoint(), "/services/greeter"),
                                   {"--no-health-check"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto stub = Greeter::NewStub((*proxy)->Channel());
  HelloReply reply;
  ASSERT_TRUE(Hello(*stub, &reply, absl::Seconds(5)).ok());

  ASSERT_TRUE((*key)->Stop().ok());
  ASSERT_TRUE(
      WaitFor([&] { return StateOf(**proxy, (*backend)->address()).empty(); }, absl::Seconds(5)));
  auto again = register_backend();
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE(
      WaitFor([&] { return !StateOf(**proxy, (*backend)->address()).empty(); }, absl::Seconds(5)));
  EXPECT_TRUE(
      WaitFor([&] { return StateOf(**proxy, (*backend)->address()) == "ready"; }, absl::Seconds(1)))
      << StateOf(**proxy, (*backend)->address());
  const grpc::Status status = Hello(*stub, &reply, absl::Seconds(2));
  EXPECT_TRUE(status.ok()) << status.error_message();
}

}  // namespace
}  // namespace sluice
