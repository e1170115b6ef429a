// grpc.health.v1 checks in the client library: an endpoint whose health service says
// NOT_SERVING stops being picked within 100 ms and comes back once it says SERVING again;
// checks can be turned off; an endpoint without a health service counts as healthy.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "greeter_backend.h"
#include "process.h"
#include "helloworld.grpc.pb.h"
#include "sluice/client/balancer.h"
#include "sluice/client/call.h"

namespace sluice {
namespace {

using testing::GreeterBackend;

struct Answer {
  absl::Time started;
  std::string backend;
};

// Calls SayHello back to back through the balancer on a thread of its own, recording when
// each answered call started and which backend answered it.
class SteadyCaller {
 public:
  explicit SteadyCaller(client::Balancer& balancer) : balancer_(balancer) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        client::CallOptions call{.method = "/Greeter/SayHello",
                                 .deadline = balancer_.clock().Now() + absl::Seconds(2)};
        HelloRequest request;
        request.set_name("health");
        HelloReply reply;
        const absl::Time started = absl::Now();
        grpc::Status status =
            client::UnaryCall(balancer_, &Greeter::Stub::SayHello, call, request, &reply);
        std::lock_guard<std::mutex> lock(mu_);
        if (status.ok()) {
          const size_t at = reply.message().rfind("I am ");
          answers_.push_back({started, reply.message().substr(at + 5)});
        } else {
          ++failed_;
        }
      }
    });
  }
  ~SteadyCaller() { Stop(); }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  std::vector<Answer> answers() {
    std::lock_guard<std::mutex> lock(mu_);
    return answers_;
  }
  int failed() {
    std::lock_guard<std::mutex> lock(mu_);
    return failed_;
  }

 private:
  client::Balancer& balancer_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Answer> answers_;
  int failed_ = 0;
  std::thread thread_;
};

std::vector<std::unique_ptr<GreeterBackend>> StartBackends(int n) {
  std::vector<std::unique_ptr<GreeterBackend>> backends;
  for (int i = 0; i < n; ++i) {
    auto backend = GreeterBackend::Start(absl::StrCat("127.0.0.", 11 + i));
    EXPECT_TRUE(backend.ok()) << backend.status();
    if (backend.ok()) backends.push_back(std::move(*backend));
  }
  return backends;
}

std::string StaticTarget(const std::vector<std::unique_ptr<GreeterBackend>>& backends) {
  std::vector<std::string> addresses;
  for (const auto& backend : backends) addresses.push_back(backend->address());
  return "static://" + absl::StrJoin(addresses, ",");
}

std::string HealthOf(const client::Balancer& balancer, const std::string& address) {
  for (const auto& info : balancer.Backends()) {
    if (info.address == address) return info.health;
  }
  return "absent";
}

TEST(HealthCheckTest, ANotServingBackendStopsGettingCallsWithin100msAndComesBack) {
  auto backends = StartBackends(3);
  ASSERT_EQ(backends.size(), 3u);
  client::BalancerOptions options;
  options.target = StaticTarget(backends);
  options.policy = "round_robin";  // every backend gets its share while it is pickable
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok()) << balancer.status();
  ASSERT_TRUE((*balancer)->WaitForReady(3, absl::Seconds(10)));
  EXPECT_EQ(HealthOf(**balancer, backends[1]->address()), "serving");

  SteadyCaller caller(**balancer);
  absl::SleepFor(absl::Milliseconds(300));
  const absl::Time flipped = absl::Now();
  backends[1]->set_serving(false);
  absl::SleepFor(absl::Milliseconds(600));
  EXPECT_EQ(HealthOf(**balancer, backends[1]->address()), "not_serving");
  EXPECT_EQ((*balancer)->ReadyCount(), 2u);
  const absl::Time restored = absl::Now();
  backends[1]->set_serving(true);
  absl::SleepFor(absl::Milliseconds(600));
  caller.Stop();

  EXPECT_EQ(caller.failed(), 0);
  absl::Time last_while_flipping = absl::InfinitePast();
  int during = 0, after = 0, before = 0;
  for (const Answer& answer : caller.answers()) {
    if (answer.backend != backends[1]->address()) continue;
    if (answer.started < flipped) {
      ++before;
    } else if (answer.started < restored) {
      ++during;
      last_while_flipping = std::max(last_while_flipping, answer.started);
    } else {
      ++after;
    }
  }
  std::printf("NOT_SERVING at t0: %d calls to it started after t0, the last %s after t0\n", during,
              during > 0 ? absl::FormatDuration(last_while_flipping - flipped).c_str() : "-");
  EXPECT_GT(before, 10);
  // Calls that started within 100 ms of the flip may still reach it; none after.
  if (during > 0) {
    EXPECT_LT(last_while_flipping - flipped, absl::Milliseconds(100));
  }
  EXPECT_GT(after, 10) << "back in the rotation once SERVING again";
}

TEST(HealthCheckTest, WithChecksOffANotServingBackendStillGetsCalls) {
  auto backends = StartBackends(2);
  ASSERT_EQ(backends.size(), 2u);
  backends[0]->set_serving(false);
  client::BalancerOptions options;
  options.target = StaticTarget(backends);
  options.policy = "round_robin";
  options.health_check.enabled = false;
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok()) << balancer.status();
  ASSERT_TRUE((*balancer)->WaitForReady(2, absl::Seconds(10)));
  EXPECT_EQ(HealthOf(**balancer, backends[0]->address()), "not_checked");
  SteadyCaller caller(**balancer);
  absl::SleepFor(absl::Milliseconds(200));
  caller.Stop();
  EXPECT_GT(backends[0]->calls(), 0);
  EXPECT_GT(backends[1]->calls(), 0);
}

TEST(HealthCheckTest, ABackendNotServingFromTheStartIsNeverPickedAndBadOptionsAreRefused) {
  auto backends = StartBackends(2);
  ASSERT_EQ(backends.size(), 2u);
  backends[0]->set_serving(false);
  client::BalancerOptions options;
  options.target = StaticTarget(backends);
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok()) << balancer.status();
  ASSERT_TRUE((*balancer)->WaitForReady(1, absl::Seconds(10)));
  SteadyCaller caller(**balancer);
  absl::SleepFor(absl::Milliseconds(200));
  caller.Stop();
  EXPECT_EQ(backends[0]->calls(), 0);
  EXPECT_GT(backends[1]->calls(), 0);
  EXPECT_EQ((*balancer)->ReadyCount(), 1u);

  options.health_check.poll_interval = absl::ZeroDuration();
  auto refused = client::Balancer::Create(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("poll_interval"), std::string::npos)
      << refused.status();
}

// Load reports end to end: two real greeter_server processes attach ORCA reports to every answer
// (one 90% busy, one 10%); the library reads them at each call's end and weighted_round_robin
// weighs the backends by them (gRFC A58: qps / utilization).
TEST(LoadReportTest, WeightedRoundRobinSteersAwayFromABackendReportingHighUtilization) {
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
        {}, absl::StrCat(::testing::TempDir(), "orca-greeter-", ip, ".log"));
    ASSERT_TRUE(child.ok()) << child.status();
    servers.push_back(std::move(*child));
  }
  client::BalancerOptions options;
  options.target = "static://" + absl::StrJoin(addresses, ",");
  options.policy = "weighted_round_robin";
  options.policy_config = {{"blackout_period", "100ms"}, {"weight_update_period", "100ms"}};
  auto balancer = client::Balancer::Create(options);
  ASSERT_TRUE(balancer.ok()) << balancer.status();
  ASSERT_TRUE((*balancer)->WaitForReady(2, absl::Seconds(10)));
  SteadyCaller caller(**balancer);
  absl::SleepFor(absl::Milliseconds(1500));
  const absl::Time settled = absl::Now();
  absl::SleepFor(absl::Milliseconds(700));
  caller.Stop();
  EXPECT_EQ(caller.failed(), 0);
  int busy = 0, idle = 0;
  for (const Answer& answer : caller.answers()) {
    if (answer.started < settled) continue;
    busy += answer.backend == addresses[0];
    idle += answer.backend == addresses[1];
  }
  std::printf("after the reports settled: 90%%-busy backend %d calls, 10%%-busy %d\n", busy, idle);
  EXPECT_GT(idle, 0);
  // Equal weights would split the calls evenly; reported load makes it at least 3:1.
  EXPECT_GT(idle, 3 * busy);
}

}  // namespace
}  // namespace sluice
