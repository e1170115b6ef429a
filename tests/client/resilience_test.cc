// Outlier ejection, retries, budgets and deadlines, with real backends that fail on purpose and
// an injected clock for the ejection timeline.
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "etcd_process.h"
#include "greeter_backend.h"
#include "greeter_load.h"
#include "process.h"
#include "ready_transport.h"
#include "sluice/client/balancer.h"
#include "sluice/client/call.h"
#include "sluice/registry/registrar.h"

namespace sluice {
namespace {

using testing::GreeterBackend;
using testing::WaitFor;

struct Fixture {
  std::vector<std::unique_ptr<GreeterBackend>> backends;
  std::string target;

  explicit Fixture(int count) {
    std::vector<std::string> addresses;
    for (int i = 0; i < count; ++i) {
      auto backend = GreeterBackend::Start(absl::StrCat("127.0.0.", 21 + i));
      EXPECT_TRUE(backend.ok()) << backend.status();
      addresses.push_back((*backend)->address());
      backends.push_back(std::move(*backend));
    }
    target = "static://" + absl::StrJoin(addresses, ",");
  }
  int64_t TotalCalls() const {
    int64_t total = 0;
    for (const auto& b : backends) total += b->calls();
    return total;
  }
};

grpc::Status SayHello(client::Balancer& balancer, absl::Duration timeout = absl::Seconds(5)) {
  HelloRequest request;
  HelloReply reply;
  client::CallOptions options;
  options.method = "/Greeter/SayHello";
  options.deadline = balancer.clock().Now() + timeout;
  return client::UnaryCall(balancer, &Greeter::Stub::SayHello, options, request, &reply);
}

const client::BackendInfo* Find(const std::vector<client::BackendInfo>& infos,
                                const std::string& address) {
  for (const auto& info : infos) {
    if (info.address == address) return &info;
  }
  return nullptr;
}

TEST(OutlierDetectionTest, EjectsAfterConsecutiveFailuresAndReturnsAfterTheEjectionTime) {
  Fixture fixture(3);
  fixture.backends[0]->set_failure(grpc::StatusCode::UNAVAILABLE);
  FakeClock clock;
  client::BalancerOptions options;
  options.target = fixture.target;
  // Ejection is what this test is about; round robin keeps sending the failing endpoints calls
  // (peak_ewma would stop picking them after a failure and never eject them).
  options.policy = "round_robin";
  options.clock = &clock;
  options.outlier_detection.consecutive_failures = 3;
  options.outlier_detection.base_ejection_time = absl::Seconds(10);
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok());
  ASSERT_TRUE((*balancer)->WaitForReady(3, absl::Seconds(10)));

  int failed = 0;
  for (int i = 0; i < 30; ++i) {
    if (!SayHello(**balancer).ok()) ++failed;
  }
  // Round robin reaches the bad backend every third call: three failures, then it is ejected
  // (the ejection is applied on the balancer's thread, so allow one more call in between).
  EXPECT_GE(failed, 3);
  EXPECT_LE(failed, 4);
  EXPECT_EQ(fixture.backends[0]->calls(), failed);
  auto infos = (*balancer)->Backends();
  ASSERT_NE(Find(infos, fixture.backends[0]->address()), nullptr);
  EXPECT_EQ(Find(infos, fixture.backends[0]->address())->state, "ejected");
  EXPECT_EQ(Find(infos, fixture.backends[0]->address())->ejections, 1);
  EXPECT_EQ((*balancer)->ReadyCount(), 2u);

  // Still ejected just before the ejection time; back right after it.
  clock.Advance(absl::Seconds(9));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ((*balancer)->ReadyCount(), 2u);
  clock.Advance(absl::Seconds(2));
  EXPECT_TRUE(WaitFor([&] { return (*balancer)->ReadyCount() == 3; }, absl::Seconds(2)));

  // Ejected a second time, the ejection lasts twice as long.
  for (int i = 0; i < 30; ++i) SayHello(**balancer).IgnoreError();
  EXPECT_EQ(Find((*balancer)->Backends(), fixture.backends[0]->address())->ejections, 2);
  clock.Advance(absl::Seconds(15));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ((*balancer)->ReadyCount(), 2u);
  clock.Advance(absl::Seconds(6));
  EXPECT_TRUE(WaitFor([&] { return (*balancer)->ReadyCount() == 3; }, absl::Seconds(2)));
}

TEST(OutlierDetectionTest, NeverEjectsMoreThanTheMaximumShareNorTheLastEndpoint) {
  Fixture fixture(3);
  for (auto& b : fixture.backends) b->set_failure(grpc::StatusCode::INTERNAL);
  client::BalancerOptions options;
  options.target = fixture.target;
  options.outlier_detection.consecutive_failures = 2;
  options.outlier_detection.max_ejection_percent = 50;  // of 3: at most 1
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok());
  ASSERT_TRUE((*balancer)->WaitForReady(3, absl::Seconds(10)));
  for (int i = 0; i < 60; ++i) SayHello(**balancer).IgnoreError();
  int ejected = 0;
  for (const auto& info : (*balancer)->Backends()) ejected += info.state == "ejected";
  EXPECT_EQ(ejected, 1);
  EXPECT_EQ((*balancer)->ReadyCount(), 2u);

  Fixture single(1);
  single.backends[0]->set_failure(grpc::StatusCode::INTERNAL);
  options.target = single.target;
  options.outlier_detection.max_ejection_percent = 100;
  auto lone = client::Balancer::Create(options);
  ASSERT_TRUE(lone.ok());
  ASSERT_TRUE((*lone)->WaitForReady(1, absl::Seconds(10)));
  for (int i = 0; i < 10; ++i) SayHello(**lone).IgnoreError();
  EXPECT_EQ((*lone)->ReadyCount(), 1u) << "the last endpoint must never be ejected";
  EXPECT_EQ(single.backends[0]->calls(), 10);
}

TEST(RetryTest, IdempotentMethodsAreRetriedOnOtherBackendsUpToMaxAttempts) {
  Fixture fixture(3);
  fixture.backends[0]->set_failure(grpc::StatusCode::UNAVAILABLE);
  fixture.backends[1]->set_failure(grpc::StatusCode::UNAVAILABLE);
  client::BalancerOptions options;
  options.target = fixture.target;
  options.policy = "round_robin";  // the exact counts below are round robin's
  options.outlier_detection.enabled = false;
  options.retry.idempotent_methods = {"/Greeter/*"};
  options.retry.max_attempts = 3;
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok());
  ASSERT_TRUE((*balancer)->WaitForReady(3, absl::Seconds(10)));
  for (int i = 0; i < 20; ++i) {
    grpc::Status status = SayHello(**balancer);
    EXPECT_TRUE(status.ok()) << i << ": " << status.error_message();
  }
  EXPECT_EQ(fixture.backends[2]->calls(), 20);

  // Not idempotent: the server's UNAVAILABLE is returned as it is, after one attempt.
  options.retry.idempotent_methods = {"/Other/Method"};
  auto strict = client::Balancer::Create(options);
  ASSERT_TRUE(strict.ok());
  ASSERT_TRUE((*strict)->WaitForReady(3, absl::Seconds(10)));
  int64_t before = fixture.TotalCalls();
  int failed = 0;
  for (int i = 0; i < 9; ++i) failed += !SayHello(**strict).ok();
  EXPECT_EQ(failed, 6);  // round robin: two of every three calls hit a failing backend
  EXPECT_EQ(fixture.TotalCalls() - before, 9);

  // Every backend failing: exactly max_attempts attempts, then the last status.
  fixture.backends[2]->set_failure(grpc::StatusCode::UNAVAILABLE);
  before = fixture.TotalCalls();
  grpc::Status status = SayHello(**balancer);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "injected failure");
  EXPECT_EQ(fixture.TotalCalls() - before, 3);
}

TEST(RetryTest, AServerCancelledIdempotentCallIsRetriedElsewhere) {
  // A server that is shutting down cancels calls that arrive: an idempotent call goes elsewhere,
  // any other call reports CANCELLED.
  Fixture fixture(3);
  fixture.backends[0]->set_failure(grpc::StatusCode::CANCELLED);
  client::BalancerOptions options;
  options.target = fixture.target;
  options.policy = "round_robin";  // the exact counts below are round robin's
  options.outlier_detection.enabled = false;
  options.retry.idempotent_methods = {"/Greeter/SayHello"};
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok());
  ASSERT_TRUE((*balancer)->WaitForReady(3, absl::Seconds(10)));
  for (int i = 0; i < 9; ++i) {
    grpc::Status status = SayHello(**balancer);
    EXPECT_TRUE(status.ok()) << i << ": " << status.error_message();
  }
  EXPECT_GT(fixture.backends[0]->calls(), 0);

  options.retry.idempotent_methods = {};
  auto strict = client::Balancer::Create(options);
  ASSERT_TRUE(strict.ok());
  ASSERT_TRUE((*strict)->WaitForReady(3, absl::Seconds(10)));
  int cancelled = 0;
  for (int i = 0; i < 9; ++i) {
    cancelled += SayHello(**strict).error_code() == grpc::StatusCode::CANCELLED;
  }
  EXPECT_EQ(cancelled, 3);  // round robin: every third call reaches the cancelling backend
}

TEST(RetryTest, ACallWhoseAttemptsAllTimeOutBeforeItsDeadlineEndsUnavailable) {
  // Every backend stalls. The call gives up after max_attempts short attempts, long before its
  // own deadline: DEADLINE_EXCEEDED would tell the caller its deadline was too short.
  Fixture fixture(2);
  for (auto& backend : fixture.backends) backend->set_delay(absl::Seconds(3));
  client::BalancerOptions options;
  options.target = fixture.target;
  options.retry.idempotent_methods = {"/Greeter/SayHello"};
  options.retry.attempt_timeout = absl::Milliseconds(200);
  options.retry.max_attempts = 2;
  options.outlier_detection.enabled = false;
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok());
  ASSERT_TRUE((*balancer)->WaitForReady(2, absl::Seconds(10)));
  const absl::Time start = absl::Now();
  grpc::Status status = SayHello(**balancer, absl::Seconds(5));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "attempt_timeout"))
      << status.error_message();
}

TEST(RetryTest, AnAttemptTimeoutMovesIdempotentCallsOffAStalledBackend) {
  // One backend accepts calls but takes 3 s to answer (a paused or wedged process).
  Fixture fixture(3);
  fixture.backends[0]->set_delay(absl::Seconds(3));
  client::BalancerOptions options;
  options.target = fixture.target;
  // Round robin keeps sending the stalled backend its share, so ejection is what moves calls
  // off it (peak_ewma would stop picking it after its first timeout).
  options.policy = "round_robin";
  options.retry.idempotent_methods = {"/Greeter/SayHello"};
  options.retry.attempt_timeout = absl::Milliseconds(200);
  options.outlier_detection.consecutive_failures = 2;
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok());
  ASSERT_TRUE((*balancer)->WaitForReady(3, absl::Seconds(10)));
  for (int i = 0; i < 12; ++i) {
    const absl::Time start = absl::Now();
    grpc::Status status = SayHello(**balancer, absl::Seconds(5));
    EXPECT_TRUE(status.ok()) << i << ": " << status.error_message();
    EXPECT_LT(absl::Now() - start, absl::Seconds(1)) << i;
  }
  // Its timeouts count as failures: after two in a row it is ejected.
  auto infos = (*balancer)->Backends();
  ASSERT_NE(Find(infos, fixture.backends[0]->address()), nullptr);
  EXPECT_EQ(Find(infos, fixture.backends[0]->address())->state, "ejected");
  EXPECT_LE(fixture.backends[0]->calls(), 3);

  // A method not marked idempotent keeps the whole deadline: it waits for the slow answer.
  options.retry.idempotent_methods = {};
  options.outlier_detection.enabled = false;
  auto strict = client::Balancer::Create(options);
  ASSERT_TRUE(strict.ok());
  ASSERT_TRUE((*strict)->WaitForReady(3, absl::Seconds(10)));
  int slow = 0;
  for (int i = 0; i < 3; ++i) {
    const absl::Time start = absl::Now();
    EXPECT_TRUE(SayHello(**strict, absl::Seconds(5)).ok());
    slow += absl::Now() - start > absl::Seconds(2);
  }
  EXPECT_EQ(slow, 1);  // round robin: one of three calls reaches the slow backend

  options.retry.attempt_timeout = absl::ZeroDuration();
  auto refused = client::Balancer::Create(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "attempt_timeout"));
}

TEST(RetryTest, AnEmptyBudgetAllowsNoRetry) {
  Fixture fixture(3);
  for (auto& b : fixture.backends) b->set_failure(grpc::StatusCode::UNAVAILABLE);
  client::BalancerOptions options;
  options.target = fixture.target;
  options.outlier_detection.enabled = false;
  options.retry.idempotent_methods = {"/Greeter/SayHello"};
  options.retry.budget_ratio = 0;
  options.retry.budget_min = 0;
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok());
  ASSERT_TRUE((*balancer)->WaitForReady(3, absl::Seconds(10)));
  EXPECT_FALSE(SayHello(**balancer).ok());
  EXPECT_EQ(fixture.TotalCalls(), 1);
}

TEST(RetryTest, RetriesNeverExtendTheDeadline) {
  Fixture fixture(3);
  for (auto& b : fixture.backends) {
    b->set_failure(grpc::StatusCode::UNAVAILABLE);
    b->set_delay(absl::Milliseconds(150));
  }
  client::BalancerOptions options;
  options.target = fixture.target;
  options.outlier_detection.enabled = false;
  options.retry.idempotent_methods = {"/Greeter/SayHello"};
  options.retry.max_attempts = 10;
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok());
  ASSERT_TRUE((*balancer)->WaitForReady(3, absl::Seconds(10)));
  absl::Time start = absl::Now();
  grpc::Status status = SayHello(**balancer, absl::Milliseconds(400));
  absl::Duration elapsed = absl::Now() - start;
  EXPECT_FALSE(status.ok());
  EXPECT_LT(elapsed, absl::Milliseconds(600)) << "retries ran past the 400 ms deadline";
  EXPECT_LE(fixture.TotalCalls(), 3);  // 150 ms each: at most three fit in 400 ms
}

TEST(WaitForReadyTest, ACallWaitsForAnEndpointUntilItsDeadlineUnlessFailFast) {
  // The endpoint's server starts only after the call began: the call waits for it.
  const int port = testing::FreePort();
  const std::string address = absl::StrCat("127.0.0.31:", port);
  client::BalancerOptions options;
  options.target = "static://" + address;
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok());
  ASSERT_TRUE(WaitFor([&] { return (*balancer)->Backends().size() == 1; }, absl::Seconds(2)));

  // Fail fast: UNAVAILABLE at once, saying no endpoint is ready.
  {
    HelloRequest request;
    HelloReply reply;
    client::CallOptions call;
    call.method = "/Greeter/SayHello";
    call.deadline = (*balancer)->clock().Now() + absl::Seconds(5);
    call.fail_fast = true;
    const absl::Time start = absl::Now();
    grpc::Status status =
        client::UnaryCall(**balancer, &Greeter::Stub::SayHello, call, request, &reply);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_TRUE(absl::StrContains(status.error_message(), "ready")) << status.error_message();
    EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  }
  // A short deadline passes while nothing is ready: UNAVAILABLE after about the deadline.
  {
    const absl::Time start = absl::Now();
    grpc::Status status = SayHello(**balancer, absl::Milliseconds(300));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    EXPECT_GE(absl::Now() - start, absl::Milliseconds(250));
  }
  // A call with a long deadline started before the server: it succeeds once the server is up.
  std::unique_ptr<GreeterBackend> late;
  std::thread starter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    auto backend = GreeterBackend::Start("127.0.0.31", port);
    ASSERT_TRUE(backend.ok()) << backend.status();
    late = std::move(*backend);
  });
  grpc::Status status = SayHello(**balancer, absl::Seconds(10));
  starter.join();
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_NE(late, nullptr);
  EXPECT_EQ(late->calls(), 1);
}

TEST(ExternalChannelsTest, WithoutManagedChannelsEveryEndpointIsPickableAtOnceAndStillEjected) {
  // What the proxy uses: no gRPC channel, outcomes reported by the caller. Nothing listens on
  // these addresses; the balancer must not try to connect to them.
  FakeClock clock;
  client::BalancerOptions options;
  options.target = "static://127.0.0.41:1,127.0.0.42:1,127.0.0.43:1";
  options.transport_watcher = std::make_shared<testing::ReadyTransport>();
  options.health_check.enabled = false;  // nothing listens: only the inputs under test decide
  options.clock = &clock;
  options.outlier_detection.consecutive_failures = 2;
  options.outlier_detection.base_ejection_time = absl::Seconds(10);
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok());
  ASSERT_TRUE((*balancer)->WaitForReady(3, absl::Seconds(2)));
  std::set<std::string> picked;
  for (int i = 0; i < 30; ++i) {
    auto backend = (*balancer)->Pick(clock.Now() + absl::Seconds(1), std::nullopt, nullptr, true);
    ASSERT_TRUE(backend.ok()) << backend.status();
    EXPECT_EQ((*backend)->channel(), nullptr);
    picked.insert((*backend)->address());
  }
  EXPECT_EQ(picked.size(), 3u);

  // The caller reports two failed connects to one endpoint: it is ejected.
  auto victim = (*balancer)->Pick(clock.Now() + absl::Seconds(1), std::nullopt, nullptr, true);
  ASSERT_TRUE(victim.ok());
  const std::string victim_address = (*victim)->address();
  for (int i = 0; i < 2; ++i) {
    (*balancer)->OnCallStarted(**victim);
    (*balancer)->OnCallFinished(**victim, grpc::StatusCode::UNAVAILABLE, absl::Milliseconds(1),
                                (*balancer)->clock().Now());
  }
  ASSERT_TRUE(WaitFor([&] { return (*balancer)->ReadyCount() == 2; }, absl::Seconds(2)));
  for (int i = 0; i < 30; ++i) {
    auto backend = (*balancer)->Pick(clock.Now() + absl::Seconds(1), std::nullopt, nullptr, true);
    ASSERT_TRUE(backend.ok());
    EXPECT_NE((*backend)->address(), victim_address);
  }
  EXPECT_EQ(Find((*balancer)->Backends(), victim_address)->state, "ejected");
  clock.Advance(absl::Seconds(11));
  EXPECT_TRUE(WaitFor([&] { return (*balancer)->ReadyCount() == 3; }, absl::Seconds(2)));
}

// A readiness input the test drives by hand: what the proxy's connection pool (transport) or a
// health watcher (health) would report.
class ManualReadiness final : public ReadinessWatcher {
 public:
  void Watch(const std::shared_ptr<EndpointHandle>& endpoint,
             ReadinessReporter& reporter) override {
    std::lock_guard<std::mutex> lock(mu_);
    watched_[endpoint->address()] = endpoint;
    reporter_ = &reporter;
  }
  size_t watched() {
    std::lock_guard<std::mutex> lock(mu_);
    return watched_.size();
  }
  void Transport(const std::string& address, TransportState state) {
    std::lock_guard<std::mutex> lock(mu_);
    reporter_->ReportTransport(watched_.at(address), state);
  }
  void Health(const std::string& address, HealthState state) {
    std::lock_guard<std::mutex> lock(mu_);
    reporter_->ReportHealth(watched_.at(address), state);
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<EndpointHandle>> watched_;
  ReadinessReporter* reporter_ = nullptr;
};

TEST(ExternalChannelsTest, AnOuterTransportWatcherAndAHealthInputDecideReadiness) {
  auto transport = std::make_shared<ManualReadiness>();
  auto health = std::make_shared<ManualReadiness>();
  client::BalancerOptions options;
  options.target = "static://127.0.0.41:1,127.0.0.42:1,127.0.0.43:1";
  options.transport_watcher = transport;
  options.readiness_watchers = {health};
  options.health_check.enabled = false;  // the test's own health input stands in for it
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok());
  ASSERT_TRUE(WaitFor([&] { return transport->watched() == 3 && health->watched() == 3; },
                      absl::Seconds(2)));
  // Nothing is pickable until its transport is reported ready.
  EXPECT_FALSE((*balancer)->WaitForReady(1, absl::Milliseconds(200)));
  transport->Transport("127.0.0.41:1", TransportState::kReady);
  transport->Transport("127.0.0.42:1", TransportState::kReady);
  ASSERT_TRUE((*balancer)->WaitForReady(2, absl::Seconds(2)));
  for (int i = 0; i < 10; ++i) {
    auto backend = (*balancer)->Pick(absl::InfiniteFuture(), std::nullopt, nullptr, true);
    ASSERT_TRUE(backend.ok()) << backend.status();
    EXPECT_EQ((*backend)->channel(), nullptr);  // no gRPC channel of the balancer's own
    EXPECT_NE((*backend)->address(), "127.0.0.43:1");
  }
  // The health input takes one out although its transport is ready, and brings it back.
  health->Health("127.0.0.41:1", HealthState::kNotServing);
  ASSERT_TRUE(WaitFor([&] { return (*balancer)->ReadyCount() == 1; }, absl::Seconds(2)));
  EXPECT_EQ(Find((*balancer)->Backends(), "127.0.0.41:1")->state, "not_serving");
  EXPECT_EQ(Find((*balancer)->Backends(), "127.0.0.43:1")->state, "idle");
  health->Health("127.0.0.41:1", HealthState::kServing);
  EXPECT_TRUE(WaitFor([&] { return (*balancer)->ReadyCount() == 2; }, absl::Seconds(2)));
}

TEST(ChurnTest, CallsKeepSucceedingWhileEndpointsComeAndGo) {
  testing::EtcdProcess etcd;
  ASSERT_TRUE(etcd.Start().ok());
  Fixture fixture(4);
  auto registrar_for = [&](int i) {
    registry::RegistrarOptions options;
    options.etcd.endpoints = {etcd.endpoint()};
    options.prefix = "services/churn";
    options.endpoint.address = fixture.backends[i]->address();
    auto registrar = registry::Registrar::Start(options);
    EXPECT_TRUE(registrar.ok());
    return std::move(*registrar);
  };
  auto stable = registrar_for(0);
  client::BalancerOptions options;
  options.target = absl::StrCat("etcd://", etcd.endpoint(), "/services/churn");
  options.policy = "least_request";
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok());
  ASSERT_TRUE((*balancer)->WaitForReady(1, absl::Seconds(10)));
  testing::GreeterLoad load(**balancer, 4);
  for (int round = 0; round < 20; ++round) {
    auto a = registrar_for(1 + round % 3);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    ASSERT_TRUE(a->Stop().ok());
  }
  testing::LoadResult result = load.Stop();
  EXPECT_EQ(result.failed, 0) << result.Summary();
  EXPECT_GT(result.ok, 100);
  int64_t churned = 0;
  for (int i = 1; i < 4; ++i) churned += fixture.backends[i]->calls();
  EXPECT_GT(churned, 0) << "endpoints that came and went never got a call";
}

}  // namespace
}  // namespace sluice
