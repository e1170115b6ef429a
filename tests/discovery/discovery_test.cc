#include "sluice/discovery/discovery.h"

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::discovery {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

Endpoint Ep(std::string address, uint32_t weight = Endpoint::kDefaultWeight) {
  Endpoint e;
  e.address = std::move(address);
  e.weight = weight;
  return e;
}

std::vector<std::string> Addresses(const std::vector<Endpoint>& endpoints) {
  std::vector<std::string> out;
  for (const Endpoint& e : endpoints) out.push_back(e.address);
  return out;
}

// A source driven by hand: the test decides what it reports.
class ManualDiscovery final : public Discovery {
 public:
  ~ManualDiscovery() override { Stop(); }
  void Start(EndpointSetCallback callback) override { SetCallback(std::move(callback)); }
  void Stop() override { ClearCallback(); }
  void Report(std::vector<Endpoint> endpoints) { Publish(EndpointSet(std::move(endpoints))); }
  void Fail(absl::Status status) { ReportError(std::move(status)); }
};

struct Report {
  EndpointSet set;
  EndpointSetDiff diff;
};

class RecordingTest : public ::testing::Test {
 protected:
  EndpointSetCallback Recorder() {
    return [this](const EndpointSet& set, const EndpointSetDiff& diff) {
      std::lock_guard<std::mutex> lock(mu_);
      reports_.push_back(Report{set, diff});
    };
  }
  std::vector<Report> reports() {
    std::lock_guard<std::mutex> lock(mu_);
    return reports_;
  }

  std::mutex mu_;
  std::vector<Report> reports_;
};

TEST_F(RecordingTest, FirstReportIsDeliveredEvenWhenEmpty) {
  ManualDiscovery d;
  d.Start(Recorder());
  EXPECT_FALSE(d.HasReported());
  d.Report({});
  ASSERT_EQ(reports().size(), 1u);
  EXPECT_TRUE(reports()[0].set.empty());
  EXPECT_TRUE(reports()[0].diff.empty());
  EXPECT_TRUE(d.HasReported());
  EXPECT_TRUE(d.Current().empty());
}

TEST_F(RecordingTest, ReportsOnlyChangesWithTheirDiff) {
  ManualDiscovery d;
  d.Start(Recorder());
  d.Report({Ep("127.0.0.12:1"), Ep("127.0.0.11:1")});
  ASSERT_EQ(reports().size(), 1u);
  EXPECT_THAT(reports()[0].set.Addresses(), ElementsAre("127.0.0.11:1", "127.0.0.12:1"));
  EXPECT_THAT(Addresses(reports()[0].diff.added), ElementsAre("127.0.0.11:1", "127.0.0.12:1"));

  // The same set again, in another order: nothing changed, no callback.
  d.Report({Ep("127.0.0.11:1"), Ep("127.0.0.12:1")});
  EXPECT_EQ(reports().size(), 1u);

  // One added, one removed, one re-weighted.
  d.Report({Ep("127.0.0.11:1", 5), Ep("127.0.0.13:1")});
  std::vector<Report> all = reports();
  ASSERT_EQ(all.size(), 2u);
  const Report& r = all[1];
  EXPECT_THAT(r.set.Addresses(), ElementsAre("127.0.0.11:1", "127.0.0.13:1"));
  EXPECT_THAT(Addresses(r.diff.added), ElementsAre("127.0.0.13:1"));
  EXPECT_THAT(Addresses(r.diff.removed), ElementsAre("127.0.0.12:1"));
  ASSERT_THAT(Addresses(r.diff.updated), ElementsAre("127.0.0.11:1"));
  EXPECT_EQ(r.diff.updated[0].weight, 5u);
  EXPECT_EQ(d.Current(), r.set);

  // Everything gone is a change too.
  d.Report({});
  ASSERT_EQ(reports().size(), 3u);
  EXPECT_TRUE(reports()[2].set.empty());
  EXPECT_THAT(Addresses(reports()[2].diff.removed), ElementsAre("127.0.0.11:1", "127.0.0.13:1"));
  d.Report({});
  EXPECT_EQ(reports().size(), 3u);
}

TEST_F(RecordingTest, NoCallbackAfterStop) {
  ManualDiscovery d;
  d.Start(Recorder());
  d.Report({Ep("127.0.0.11:1")});
  d.Stop();
  d.Report({Ep("127.0.0.12:1")});
  EXPECT_EQ(reports().size(), 1u);
  // The set is still tracked; only delivery stopped.
  EXPECT_THAT(d.Current().Addresses(), ElementsAre("127.0.0.12:1"));
}

TEST(DiscoveryTest, StopWaitsForARunningCallback) {
  ManualDiscovery d;
  std::atomic<bool> entered{false};
  std::atomic<bool> finished{false};
  d.Start([&](const EndpointSet&, const EndpointSetDiff&) {
    entered = true;
    absl::SleepFor(absl::Milliseconds(200));
    finished = true;
  });
  std::thread source([&] { d.Report({Ep("127.0.0.11:1")}); });
  while (!entered) absl::SleepFor(absl::Milliseconds(1));
  d.Stop();
  // Stop() returned: the callback that was running has finished.
  EXPECT_TRUE(finished);
  source.join();
}

TEST(DiscoveryTest, WaitForFirstReport) {
  ManualDiscovery d;
  d.Start(nullptr);  // no callback: Current() is still kept
  absl::Time start = absl::Now();
  EXPECT_FALSE(d.WaitForFirstReport(absl::Milliseconds(50)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(45));

  std::thread source([&] {
    absl::SleepFor(absl::Milliseconds(50));
    d.Report({Ep("127.0.0.11:1")});
  });
  EXPECT_TRUE(d.WaitForFirstReport(absl::Seconds(10)));
  EXPECT_THAT(d.Current().Addresses(), ElementsAre("127.0.0.11:1"));
  source.join();
}

TEST(DiscoveryTest, WaitForFirstReportReturnsAfterTheCallback) {
  ManualDiscovery d;
  std::atomic<bool> finished{false};
  d.Start([&](const EndpointSet&, const EndpointSetDiff&) {
    absl::SleepFor(absl::Milliseconds(100));
    finished = true;
  });
  std::thread source([&] { d.Report({}); });
  ASSERT_TRUE(d.WaitForFirstReport(absl::Seconds(10)));
  EXPECT_TRUE(finished);
  EXPECT_TRUE(d.HasReported());
  source.join();
}

TEST(DiscoveryTest, LastErrorIsClearedByTheNextReport) {
  ManualDiscovery d;
  d.Start(nullptr);
  EXPECT_TRUE(d.LastError().ok());
  d.Report({Ep("127.0.0.11:1")});
  d.Fail(absl::UnavailableError("etcd down"));
  EXPECT_EQ(d.LastError().code(), absl::StatusCode::kUnavailable);
  // A failure never changes the set.
  EXPECT_THAT(d.Current().Addresses(), ElementsAre("127.0.0.11:1"));
  d.Report({Ep("127.0.0.11:1")});
  EXPECT_TRUE(d.LastError().ok());
}

TEST(CreateDiscoveryTest, BadTargetIsAnError) {
  absl::StatusOr<std::unique_ptr<Discovery>> d = CreateDiscovery("http://x:1");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(d.status().message()), ::testing::HasSubstr("http"));
}

TEST(CreateDiscoveryTest, HandBuiltTargetWithoutAddressesIsAnError) {
  Target target;
  target.scheme = Target::Scheme::kStatic;
  EXPECT_EQ(CreateDiscovery(target).status().code(), absl::StatusCode::kInvalidArgument);
  target.scheme = Target::Scheme::kEtcd;
  target.etcd_endpoints = {"127.0.0.1:2379"};
  EXPECT_EQ(CreateDiscovery(target).status().code(), absl::StatusCode::kInvalidArgument);
  target.scheme = Target::Scheme::kDns;
  EXPECT_EQ(CreateDiscovery(target).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CreateDiscoveryTest, DestroyingUnstartedDiscoveryIsFine) {
  for (const char* target :
       {"static://127.0.0.1:1", "dns://localhost:1", "etcd://127.0.0.1:1/services/x"}) {
    absl::StatusOr<std::unique_ptr<Discovery>> d = CreateDiscovery(target);
    ASSERT_TRUE(d.ok()) << target << ": " << d.status();
    EXPECT_FALSE((*d)->HasReported());
    EXPECT_THAT((*d)->Current().endpoints(), IsEmpty());
  }
}

}  // namespace
}  // namespace sluice::discovery
