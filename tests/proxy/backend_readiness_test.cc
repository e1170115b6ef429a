// The proxy's connection pool as a balancer's transport input, on its own: a fake reporter
// records what the balancer would hear, a fake prober records the connection attempts asked of
// the workers, and the test plays the connections' outcomes.
#include "sluice/proxy/backend_readiness.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "sluice/balancer/endpoint_stats.h"
#include "sluice/core/clock.h"

namespace sluice::proxy {
namespace {

struct RecordingReporter final : ReadinessReporter {
  std::vector<std::pair<std::string, TransportState>> reports;
  void ReportTransport(const std::shared_ptr<EndpointHandle>& endpoint,
                       TransportState state) override {
    reports.emplace_back(endpoint->address(), state);
  }
  void ReportHealth(const std::shared_ptr<EndpointHandle>&, HealthState) override {}
  TransportState Last() const { return reports.back().second; }
};

std::shared_ptr<EndpointHandle> Handle(const std::string& address) {
  Endpoint endpoint;
  endpoint.address = address;
  return std::make_shared<EndpointHandle>(endpoint, std::make_shared<EndpointStats>());
}

class BackendReadinessTest : public ::testing::Test {
 protected:
  BackendReadinessTest() : readiness_(clock_, Backoff(), /*seed=*/1) {
    readiness_.SetProber(
        [this](const std::string& address, absl::Time at) { probes_.emplace_back(address, at); });
  }
  static BackoffOptions Backoff() {
    BackoffOptions options;
    options.initial = absl::Milliseconds(100);
    options.max = absl::Seconds(2);
    options.jitter = 0;  // exact waits to compare against
    return options;
  }

  FakeClock clock_;
  BackendReadiness readiness_;
  RecordingReporter reporter_;
  std::vector<std::pair<std::string, absl::Time>> probes_;
};

TEST_F(BackendReadinessTest, ANewBackendIsConnectingAndProbedAtOnceThenReadyWhenConfirmed) {
  auto endpoint = Handle("127.0.0.11:50051");
  readiness_.Watch(endpoint, reporter_);
  ASSERT_EQ(reporter_.reports.size(), 1u);
  EXPECT_EQ(reporter_.Last(), TransportState::kConnecting);
  ASSERT_EQ(probes_.size(), 1u);
  EXPECT_EQ(probes_[0].first, "127.0.0.11:50051");
  EXPECT_EQ(probes_[0].second, clock_.Now());
  EXPECT_TRUE(readiness_.WantsProbe("127.0.0.11:50051"));

  readiness_.OnConnected("127.0.0.11:50051");
  EXPECT_EQ(reporter_.Last(), TransportState::kReady);
  EXPECT_FALSE(readiness_.WantsProbe("127.0.0.11:50051"));
}

TEST_F(BackendReadinessTest, FailedConnectsAreProbedAgainWithGrowingBackoffUntilOneSucceeds) {
  auto endpoint = Handle("127.0.0.11:1");
  readiness_.Watch(endpoint, reporter_);
  readiness_.OnConnectFailed("127.0.0.11:1");
  EXPECT_EQ(reporter_.Last(), TransportState::kTransientFailure);
  ASSERT_EQ(probes_.size(), 2u);
  EXPECT_EQ(probes_[1].second - clock_.Now(), absl::Milliseconds(100));
  readiness_.OnConnectFailed("127.0.0.11:1");
  ASSERT_EQ(probes_.size(), 3u);
  EXPECT_EQ(probes_[2].second - clock_.Now(), absl::Milliseconds(200));
  const size_t reports = reporter_.reports.size();
  readiness_.OnConnectFailed("127.0.0.11:1");
  EXPECT_EQ(reporter_.reports.size(), reports) << "a second failure is no news";
  readiness_.OnConnected("127.0.0.11:1");
  EXPECT_EQ(reporter_.Last(), TransportState::kReady);
  // The streak ended: the next failure waits the initial backoff again.
  readiness_.OnConnectFailed("127.0.0.11:1");
  EXPECT_EQ(probes_.back().second - clock_.Now(), absl::Milliseconds(100));
}

TEST_F(BackendReadinessTest, ABrokenConnectionStopsPicksUntilAProbeConfirmsTheBackendAgain) {
  auto endpoint = Handle("127.0.0.11:2");
  readiness_.Watch(endpoint, reporter_);
  readiness_.OnConnected("127.0.0.11:2");
  probes_.clear();
  readiness_.OnConnectionLost("127.0.0.11:2");
  EXPECT_EQ(reporter_.Last(), TransportState::kConnecting);
  ASSERT_EQ(probes_.size(), 1u);
  EXPECT_EQ(probes_[0].second, clock_.Now());
  readiness_.OnConnected("127.0.0.11:2");
  EXPECT_EQ(reporter_.Last(), TransportState::kReady);
}

TEST_F(BackendReadinessTest, ProbesAskedBeforeTheWorkersRunAreAskedOnceAProberIsSet) {
  BackendReadiness early(clock_, Backoff(), 2);
  auto endpoint = Handle("127.0.0.12:3");
  early.Watch(endpoint, reporter_);
  std::vector<std::string> asked;
  early.SetProber([&](const std::string& address, absl::Time) { asked.push_back(address); });
  EXPECT_EQ(asked, std::vector<std::string>{"127.0.0.12:3"});
  early.SetProber(nullptr);
  early.OnConnectFailed("127.0.0.12:3");  // a stopped proxy asks nothing more
  EXPECT_EQ(asked.size(), 1u);
}

TEST_F(BackendReadinessTest, ASecondBalancerWatchingTheSameBackendHearsItsCurrentState) {
  auto endpoint = Handle("127.0.0.11:4");
  readiness_.Watch(endpoint, reporter_);
  readiness_.OnConnected("127.0.0.11:4");
  RecordingReporter other;
  auto other_endpoint = Handle("127.0.0.11:4");
  readiness_.Watch(other_endpoint, other);
  ASSERT_EQ(other.reports.size(), 1u);
  EXPECT_EQ(other.Last(), TransportState::kReady);
  EXPECT_EQ(probes_.size(), 1u) << "no second probe for a backend already known";
  readiness_.OnConnectionLost("127.0.0.11:4");
  EXPECT_EQ(reporter_.Last(), TransportState::kConnecting);
  EXPECT_EQ(other.Last(), TransportState::kConnecting);
}

TEST_F(BackendReadinessTest, RemovedEndpointsAndUnwatchedReportersHearNothingMore) {
  auto endpoint = Handle("127.0.0.11:5");
  readiness_.Watch(endpoint, reporter_);
  endpoint->removed = true;
  readiness_.OnConnected("127.0.0.11:5");
  EXPECT_EQ(reporter_.reports.size(), 1u);
  EXPECT_FALSE(readiness_.WantsProbe("127.0.0.11:5")) << "nobody wants a removed endpoint";
  EXPECT_EQ(readiness_.StateOf("127.0.0.11:5"), TransportState::kShutdown);

  auto second = Handle("127.0.0.11:6");
  readiness_.Watch(second, reporter_);
  readiness_.Unwatch(reporter_);
  const size_t reports = reporter_.reports.size();
  readiness_.OnConnected("127.0.0.11:6");
  EXPECT_EQ(reporter_.reports.size(), reports);
}

}  // namespace
}  // namespace sluice::proxy
