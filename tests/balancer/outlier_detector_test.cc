#include "sluice/balancer/outlier_detector.h"

#include <gtest/gtest.h>

#include "sluice/core/clock.h"

namespace sluice {
namespace {

// Endpoints as the control-plane calls see them, kept by the test.
struct Pool {
  explicit Pool(int n) : addresses(n), ejections(n), ready(n, true) {
    for (int i = 0; i < n; ++i) {
      addresses[i] = "127.0.0." + std::to_string(11 + i) + ":50051";
      handles.push_back(std::make_unique<EndpointHandle>(Endpoint{.address = addresses[i]},
                                                         std::make_shared<EndpointStats>()));
    }
  }
  std::vector<OutlierDetector::Member> Members() {
    std::vector<OutlierDetector::Member> members;
    for (size_t i = 0; i < addresses.size(); ++i) {
      members.push_back({&addresses[i], static_cast<bool>(ready[i]), &ejections[i]});
    }
    return members;
  }
  int Ejected() const {
    int count = 0;
    for (const auto& e : ejections) count += e.ejected;
    return count;
  }
  std::vector<std::string> addresses;
  std::vector<EjectionState> ejections;
  std::vector<char> ready;
  std::vector<std::unique_ptr<EndpointHandle>> handles;
};

TEST(OutlierDetectorTest, OnlyFailuresInARowCountAndOnlyServerSideFailures) {
  FakeClock clock;
  OutlierDetector detector({.consecutive_failures = 3}, clock, "svc");
  Pool pool(1);
  EndpointHandle& endpoint = *pool.handles[0];
  EXPECT_FALSE(detector.RecordResult(endpoint, absl::StatusCode::kUnavailable));
  EXPECT_FALSE(detector.RecordResult(endpoint, absl::StatusCode::kInternal));
  EXPECT_FALSE(detector.RecordResult(endpoint, absl::StatusCode::kOk));  // the streak ends
  EXPECT_FALSE(detector.RecordResult(endpoint, absl::StatusCode::kUnavailable));
  EXPECT_FALSE(detector.RecordResult(endpoint, absl::StatusCode::kUnknown));
  // The caller's own errors are answers: the endpoint works, the streak ends.
  EXPECT_FALSE(detector.RecordResult(endpoint, absl::StatusCode::kNotFound));
  EXPECT_FALSE(detector.RecordResult(endpoint, absl::StatusCode::kUnavailable));
  EXPECT_FALSE(detector.RecordResult(endpoint, absl::StatusCode::kUnknown));
  EXPECT_TRUE(detector.RecordResult(endpoint, absl::StatusCode::kDataLoss));
  OutlierDetector off({.enabled = false, .consecutive_failures = 1}, clock, "svc");
  EXPECT_FALSE(off.RecordResult(*pool.handles[0], absl::StatusCode::kUnavailable));
}

TEST(OutlierDetectorTest, EachEjectionLastsLongerUpToTheMaximum) {
  FakeClock clock;
  OutlierDetector detector(
      {.base_ejection_time = absl::Seconds(10), .max_ejection_time = absl::Seconds(25)}, clock,
      "svc");
  Pool pool(4);
  for (int round = 1; round <= 3; ++round) {
    auto members = pool.Members();
    ASSERT_EQ(detector.Eject(members, 0, *pool.handles[0]),
              OutlierDetector::EjectOutcome::kEjected);
    const absl::Duration expected = std::min(absl::Seconds(10) * round, absl::Seconds(25));
    EXPECT_EQ(pool.ejections[0].ejected_until - clock.Now(), expected) << round;
    clock.Advance(expected - absl::Milliseconds(1));
    EXPECT_FALSE(detector.ReleaseExpired(members));
    clock.Advance(absl::Milliseconds(1));
    EXPECT_TRUE(detector.ReleaseExpired(members));
    EXPECT_FALSE(pool.ejections[0].ejected);
  }
}

TEST(OutlierDetectorTest, NeverEjectsBeyondTheShareNorTheLastReadyEndpoint) {
  FakeClock clock;
  OutlierDetector detector({.max_ejection_percent = 50}, clock, "svc");
  Pool pool(4);
  auto members = pool.Members();
  EXPECT_EQ(detector.Eject(members, 0, *pool.handles[0]), OutlierDetector::EjectOutcome::kEjected);
  EXPECT_EQ(detector.Eject(members, 1, *pool.handles[1]), OutlierDetector::EjectOutcome::kEjected);
  pool.handles[2]->consecutive_failures = 7;
  EXPECT_EQ(detector.Eject(members, 2, *pool.handles[2]), OutlierDetector::EjectOutcome::kRefused);
  EXPECT_EQ(pool.handles[2]->consecutive_failures, 0);  // its streak starts again
  EXPECT_EQ(pool.Ejected(), 2);

  Pool pair(2);
  pair.ready[1] = false;  // only one endpoint is ready: it is never ejected
  auto pair_members = pair.Members();
  EXPECT_EQ(detector.Eject(pair_members, 0, *pair.handles[0]),
            OutlierDetector::EjectOutcome::kRefused);
}

TEST(OutlierDetectorTest, EjectionsComeBackEarlyWhenTheSetChanges) {
  FakeClock clock;
  OutlierDetector detector({.base_ejection_time = absl::Seconds(30)}, clock, "svc");
  Pool pool(4);
  auto members = pool.Members();
  ASSERT_EQ(detector.Eject(members, 0, *pool.handles[0]), OutlierDetector::EjectOutcome::kEjected);
  clock.Advance(absl::Seconds(1));
  ASSERT_EQ(detector.Eject(members, 1, *pool.handles[1]), OutlierDetector::EjectOutcome::kEjected);
  // The two others stop being ready: no ready endpoint is left but the ejected ones, so the one
  // whose ejection ends first comes back.
  pool.ready[2] = pool.ready[3] = false;
  members = pool.Members();
  EXPECT_TRUE(detector.ReleaseBeyondLimits(members));
  EXPECT_FALSE(pool.ejections[0].ejected);
  EXPECT_TRUE(pool.ejections[1].ejected);
  EXPECT_FALSE(detector.ReleaseBeyondLimits(members));
}

}  // namespace
}  // namespace sluice
