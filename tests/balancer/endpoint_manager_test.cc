#include "sluice/balancer/endpoint_manager.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "sluice/balancer/builtin_policies.h"
#include "sluice/core/clock.h"

namespace sluice {
namespace {

Endpoint At(int i) {
  Endpoint endpoint;
  endpoint.address = absl::StrCat("127.0.0.", 10 + i, ":50051");
  return endpoint;
}

class EndpointManagerTest : public ::testing::Test {
 protected:
  EndpointManagerTest() { RegisterBuiltinPolicies(registry_); }

  // A manager whose transports start `initial` (kIdle: watched; kReady: nothing watches).
  std::unique_ptr<EndpointManager> Make(TransportState initial,
                                        OutlierDetectionOptions outlier_options = {}) {
    outlier_ = std::make_unique<OutlierDetector>(outlier_options, clock_, "svc");
    auto policy = registry_.Configure("round_robin", nlohmann::json());
    EXPECT_TRUE(policy.ok());
    return std::make_unique<EndpointManager>(
        "svc", "static://test", *policy, *outlier_, initial, clock_, 1,
        EndpointManager::Hooks{
            .make_handle =
                [this](const Endpoint& endpoint, const EndpointHandle* previous) {
                  ++handles_made_;
                  return std::make_shared<EndpointHandle>(
                      endpoint, previous != nullptr ? previous->shared_stats()
                                                    : std::make_shared<EndpointStats>());
                },
            .published =
                [this](size_t not_ready) {
                  ++published_;
                  not_ready_ = not_ready;
                }});
  }

  // Applies a whole new set, as discovery would.
  std::vector<std::shared_ptr<EndpointHandle>> Set(EndpointManager& manager,
                                                   std::vector<Endpoint> endpoints) {
    EndpointSet next(std::move(endpoints));
    EndpointSetDiff diff = DiffEndpointSets(current_, next);
    current_ = next;
    return manager.OnEndpoints(current_, diff);
  }

  std::string PickAddress(EndpointManager& manager, const EndpointHandle* avoid = nullptr) {
    auto picked = manager.TryPick(*manager.snapshot(), std::nullopt, avoid);
    return picked.ok() ? (*picked)->address() : std::string(picked.status().message());
  }

  PolicyRegistry registry_;
  FakeClock clock_;
  std::unique_ptr<OutlierDetector> outlier_;
  EndpointSet current_;
  int handles_made_ = 0;
  int published_ = 0;
  size_t not_ready_ = 0;
};

TEST_F(EndpointManagerTest, SaysWhyNothingCanBePicked) {
  auto manager = Make(TransportState::kIdle);
  EXPECT_TRUE(absl::StrContains(PickAddress(*manager), "discovery has not found any endpoint"));
  Set(*manager, {});
  EXPECT_TRUE(absl::StrContains(PickAddress(*manager), "has no registered endpoints"));
  Set(*manager, {At(1)});
  EXPECT_TRUE(absl::StrContains(PickAddress(*manager), "none of its 1 endpoints is ready"));
  EXPECT_EQ(not_ready_, 1u);
}

TEST_F(EndpointManagerTest, AnEndpointIsPickableWhenItsTransportIsReadyAndHealthAgrees) {
  auto manager = Make(TransportState::kIdle);
  auto joined = Set(*manager, {At(1), At(2)});
  ASSERT_EQ(joined.size(), 2u);
  manager->SetTransport(joined[0], TransportState::kReady);
  EXPECT_EQ(manager->snapshot()->endpoints.size(), 1u);
  EXPECT_EQ(PickAddress(*manager), joined[0]->address());
  EXPECT_EQ(not_ready_, 1u);
  // A failing health check takes it out although its transport is fine; SERVING brings it back.
  manager->SetHealth(joined[0], HealthState::kNotServing);
  EXPECT_TRUE(manager->snapshot()->endpoints.empty());
  EXPECT_EQ(manager->Views()[0].state, "not_serving");
  manager->SetHealth(joined[0], HealthState::kServing);
  EXPECT_EQ(manager->snapshot()->endpoints.size(), 1u);
  manager->SetTransport(joined[1], TransportState::kReady);
  EXPECT_EQ(manager->snapshot()->endpoints.size(), 2u);
  EXPECT_EQ(not_ready_, 0u);
  manager->SetTransport(joined[1], TransportState::kTransientFailure);
  EXPECT_EQ(manager->Views()[1].state, "transient_failure");
}

TEST_F(EndpointManagerTest, APickThatDoesNotWaitForReadyFailsOnceNoEndpointIsComing) {
  // gRPC's rule for calls without wait_for_ready: queue while something is connecting (or its
  // first health answer is due), fail once every endpoint has failed; with it, keep waiting.
  auto manager = Make(TransportState::kIdle);
  auto joined = Set(*manager, {At(1), At(2)});
  std::vector<std::string> impatient, patient;
  auto record = [](std::vector<std::string>* into) {
    return [into](absl::StatusOr<std::shared_ptr<EndpointHandle>> got) {
      into->push_back(got.ok() ? (*got)->address() : std::string(got.status().message()));
    };
  };
  const absl::Time deadline = clock_.Now() + absl::Seconds(10);
  manager->AddPendingPick({deadline, std::nullopt, nullptr, record(&impatient), false});
  manager->AddPendingPick({deadline, std::nullopt, nullptr, record(&patient), true});
  EXPECT_EQ(manager->snapshot()->coming, 2u);
  manager->SetTransport(joined[0], TransportState::kTransientFailure);
  // A ready transport whose first health answer is due is still coming.
  manager->SetHealth(joined[1], HealthState::kPending);
  manager->SetTransport(joined[1], TransportState::kReady);
  EXPECT_EQ(manager->snapshot()->coming, 1u);
  EXPECT_TRUE(impatient.empty() && patient.empty());
  manager->SetHealth(joined[1], HealthState::kNotServing);
  EXPECT_EQ(manager->snapshot()->coming, 0u);
  ASSERT_EQ(impatient.size(), 1u);
  EXPECT_TRUE(absl::StrContains(impatient[0], "none of its 2 endpoints is ready")) << impatient[0];
  EXPECT_TRUE(patient.empty()) << "a pick that waits for ready waits until its deadline";
  manager->SetHealth(joined[1], HealthState::kServing);
  ASSERT_EQ(patient.size(), 1u);
  EXPECT_EQ(patient[0], joined[1]->address());
}

TEST_F(EndpointManagerTest, WithoutATransportWatcherEveryEndpointIsReadyAtOnce) {
  auto manager = Make(TransportState::kReady);
  Set(*manager, {At(1), At(2), At(3)});
  EXPECT_EQ(manager->snapshot()->endpoints.size(), 3u);
}

TEST_F(EndpointManagerTest, AppliesTheDiffKeepingStatsAcrossUpdates) {
  auto manager = Make(TransportState::kReady);
  auto joined = Set(*manager, {At(1), At(2)});
  std::shared_ptr<EndpointHandle> first = joined[0];
  first->stats().OnCallStarted();
  Endpoint heavier = At(1);
  heavier.weight = 5;
  auto updated = Set(*manager, {heavier});  // At(2) leaves, At(1) changes weight
  ASSERT_EQ(updated.size(), 1u);
  EXPECT_TRUE(first->removed);                       // the old handle is let go...
  EXPECT_EQ(&updated[0]->stats(), &first->stats());  // ...but its stats carry on
  EXPECT_EQ(updated[0]->endpoint().weight, 5u);
  EXPECT_TRUE(joined[1]->removed);
  EXPECT_EQ(manager->snapshot()->endpoints.size(), 1u);
  EXPECT_EQ(handles_made_, 3);
  // A report about a handle that left changes nothing.
  manager->SetTransport(first, TransportState::kTransientFailure);
  EXPECT_EQ(manager->snapshot()->endpoints.size(), 1u);
}

TEST_F(EndpointManagerTest, ARetryAvoidsThePreviousEndpoint) {
  auto manager = Make(TransportState::kReady);
  auto joined = Set(*manager, {At(1), At(2)});
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(PickAddress(*manager, joined[0].get()), joined[1]->address());
  }
}

TEST_F(EndpointManagerTest, PendingPicksWaitForAnEndpointOrTheirDeadline) {
  auto manager = Make(TransportState::kIdle);
  auto joined = Set(*manager, {At(1)});
  std::vector<std::string> results;
  auto record = [&](absl::StatusOr<std::shared_ptr<EndpointHandle>> picked) {
    results.push_back(picked.ok() ? (*picked)->address() : "failed");
  };
  manager->AddPendingPick({clock_.Now() + absl::Seconds(1), std::nullopt, nullptr, record});
  manager->AddPendingPick({clock_.Now() + absl::Seconds(5), std::nullopt, nullptr, record});
  EXPECT_EQ(manager->pending_picks(), 2u);
  clock_.Advance(absl::Seconds(2));
  manager->OnTick();
  ASSERT_EQ(results, std::vector<std::string>{"failed"});
  manager->SetTransport(joined[0], TransportState::kReady);
  EXPECT_EQ(results, (std::vector<std::string>{"failed", joined[0]->address()}));
  EXPECT_EQ(manager->pending_picks(), 0u);
  manager->AddPendingPick({clock_.Now() + absl::Seconds(5), std::nullopt, nullptr, record});
  EXPECT_EQ(results.size(), 3u);  // resolved at once
  manager->SetTransport(joined[0], TransportState::kConnecting);
  manager->AddPendingPick({clock_.Now() + absl::Seconds(5), std::nullopt, nullptr, record});
  manager->Clear("shutting down");
  EXPECT_EQ(results.back(), "failed");
  EXPECT_TRUE(joined[0]->removed);
}

TEST_F(EndpointManagerTest, EjectionRemovesAnEndpointUntilItsTimeHasPassed) {
  OutlierDetectionOptions options;
  options.consecutive_failures = 2;
  options.base_ejection_time = absl::Seconds(30);
  auto manager = Make(TransportState::kReady, options);
  auto joined = Set(*manager, {At(1), At(2), At(3)});
  EXPECT_FALSE(outlier_->RecordResult(*joined[0], absl::StatusCode::kUnavailable));
  ASSERT_TRUE(outlier_->RecordResult(*joined[0], absl::StatusCode::kUnavailable));
  // Requested once until the control plane acts on it.
  EXPECT_FALSE(outlier_->RecordResult(*joined[0], absl::StatusCode::kUnavailable));
  manager->Eject(*joined[0]);
  EXPECT_EQ(manager->snapshot()->endpoints.size(), 2u);
  EXPECT_EQ(manager->Views()[0].state, "ejected");
  clock_.Advance(absl::Seconds(29));
  manager->OnTick();
  EXPECT_EQ(manager->snapshot()->endpoints.size(), 2u);
  clock_.Advance(absl::Seconds(1));
  manager->OnTick();
  EXPECT_EQ(manager->snapshot()->endpoints.size(), 3u);
  EXPECT_EQ(manager->Views()[0].ejections, 1);
}

}  // namespace
}  // namespace sluice
