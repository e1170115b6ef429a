// EtcdDiscovery against a real etcd (tests/support EtcdProcess), with keys written the way
// etcd's Go naming manager writes them.

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "discovery_test_util.h"
#include "etcd_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "process.h"
#include "sluice/core/log.h"
#include "sluice/core/naming_value.h"
#include "sluice/discovery/discovery.h"
#include "sluice/etcd/etcd_client.h"

namespace sluice::discovery {
namespace {

using ::sluice::etcd::EtcdClient;
using ::sluice::testing::EtcdProcess;
using ::sluice::testing::WaitFor;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kPrefix[] = "services/greeter/";

// The bytes etcd's Go manager (client/v3/naming/endpoints) writes for an endpoint without
// metadata.
std::string GoValue(absl::string_view address) {
  return absl::StrCat("{\"Op\":0,\"Addr\":\"", address, "\",\"Metadata\":null}");
}

std::string Key(absl::string_view instance) { return absl::StrCat(kPrefix, instance); }

DiscoveryOptions FastOptions() {
  DiscoveryOptions options;
  options.etcd_call_timeout = absl::Seconds(2);
  options.retry_initial_backoff = absl::Milliseconds(50);
  options.retry_max_backoff = absl::Milliseconds(400);
  return options;
}

std::unique_ptr<EtcdClient> NewClient(const std::string& endpoint) {
  etcd::EtcdClientOptions options;
  options.endpoints = {endpoint};
  absl::StatusOr<std::unique_ptr<EtcdClient>> client = EtcdClient::Create(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

absl::Duration Median(std::vector<absl::Duration> samples) {
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

std::string Join(const std::vector<absl::Duration>& samples) {
  return absl::StrJoin(samples, ", ", [](std::string* out, absl::Duration d) {
    absl::StrAppend(out, absl::FormatDuration(d));
  });
}

class EtcdDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status started = etcd_.Start();
    ASSERT_TRUE(started.ok()) << started;
    client_ = NewClient(etcd_.endpoint());
    ASSERT_NE(client_, nullptr);
  }

  std::string Target() const { return absl::StrCat("etcd://", etcd_.endpoint(), "/", kPrefix); }

  std::unique_ptr<Discovery> StartDiscovery(Recorder& recorder,
                                            DiscoveryOptions options = FastOptions()) {
    absl::StatusOr<std::unique_ptr<Discovery>> d = CreateDiscovery(Target(), options);
    EXPECT_TRUE(d.ok()) << d.status();
    if (!d.ok()) return nullptr;
    (*d)->Start(recorder.Callback());
    return *std::move(d);
  }

  void Put(absl::string_view key, absl::string_view value) {
    absl::StatusOr<int64_t> revision = client_->Put(key, value);
    ASSERT_TRUE(revision.ok()) << revision.status();
  }
  void Delete(absl::string_view key) {
    absl::StatusOr<int64_t> deleted = client_->Delete(key);
    ASSERT_TRUE(deleted.ok()) << deleted.status();
    ASSERT_EQ(*deleted, 1);
  }

  EtcdProcess etcd_;
  std::unique_ptr<EtcdClient> client_;
};

TEST_F(EtcdDiscoveryTest, ReadsGoManagerValuesAndEveryMetadataForm) {
  const std::string null_metadata = GoValue("127.0.0.11:50051");
  // Sanity: our encoder writes the very same bytes as the Go manager.
  Endpoint plain;
  plain.address = "127.0.0.11:50051";
  ASSERT_EQ(EncodeNamingValue(plain), null_metadata);

  Put(Key("127.0.0.11:50051"), null_metadata);
  Put(Key("b"), R"({"Op":0,"Addr":"127.0.0.12:50051","Metadata":"{\"weight\":100}"})");
  Put(Key("c"), R"({"Op":0,"Addr":"127.0.0.13:50051","Metadata":{"weight":7,"zone":"z1"}})");

  LogCapture warnings;
  Recorder recorder;
  std::unique_ptr<Discovery> d = StartDiscovery(recorder);
  ASSERT_TRUE(d->WaitForFirstReport(absl::Seconds(10)));
  EndpointSet set = d->Current();
  ASSERT_THAT(set.Addresses(),
              ElementsAre("127.0.0.11:50051", "127.0.0.12:50051", "127.0.0.13:50051"));
  EXPECT_EQ(set.Find("127.0.0.11:50051")->weight, Endpoint::kDefaultWeight);
  EXPECT_EQ(set.Find("127.0.0.12:50051")->weight, 100u);
  EXPECT_EQ(set.Find("127.0.0.13:50051")->weight, 7u);
  EXPECT_EQ(set.Find("127.0.0.13:50051")->zone, "z1");
  EXPECT_EQ(recorder.count(), 1u);
  EXPECT_EQ(recorder.diff(0).added.size(), 3u);

  // The same forms arriving through the watch.
  Put(Key("d"),
      R"({"Op":0,"Addr":"127.0.0.14:50051","Metadata":"{\"weight\":40,\"draining\":true}"})");
  ASSERT_TRUE(
      WaitFor([&] { return d->Current().Find("127.0.0.14:50051") != nullptr; }, absl::Seconds(10)));
  const EndpointSet now = d->Current();
  const Endpoint* watched = now.Find("127.0.0.14:50051");
  ASSERT_NE(watched, nullptr);
  EXPECT_EQ(watched->weight, 40u);
  EXPECT_TRUE(watched->draining);
  // A weight change of a known key is an update, not an add.
  Put(Key("b"), R"({"Op":0,"Addr":"127.0.0.12:50051","Metadata":"{\"weight\":5}"})");
  ASSERT_TRUE(WaitFor([&] { return d->Current().Find("127.0.0.12:50051")->weight == 5u; },
                      absl::Seconds(10)));
  EndpointSetDiff last = recorder.diff(recorder.count() - 1);
  EXPECT_TRUE(last.added.empty());
  ASSERT_EQ(last.updated.size(), 1u);
  EXPECT_EQ(last.updated[0].address, "127.0.0.12:50051");
  EXPECT_THAT(warnings.lines(), IsEmpty());
}

TEST_F(EtcdDiscoveryTest, EmptyPrefixIsReportedAsAnEmptyFirstSet) {
  Recorder recorder;
  std::unique_ptr<Discovery> d = StartDiscovery(recorder);
  ASSERT_TRUE(d->WaitForFirstReport(absl::Seconds(10)));
  ASSERT_EQ(recorder.count(), 1u);
  EXPECT_TRUE(recorder.set(0).empty());
  EXPECT_TRUE(d->LastError().ok());
}

TEST_F(EtcdDiscoveryTest, PutAndDeleteAreSeenWithin100Milliseconds) {
  Put(Key("base"), GoValue("127.0.0.10:50051"));
  Recorder recorder;
  std::unique_ptr<Discovery> d = StartDiscovery(recorder);
  ASSERT_TRUE(d->WaitForFirstReport(absl::Seconds(10)));

  std::vector<absl::Duration> put_latency;
  std::vector<absl::Duration> delete_latency;
  for (int i = 0; i < 7; ++i) {
    const std::string address = absl::StrCat("127.0.0.", 20 + i, ":50051");
    const std::string key = Key(address);

    size_t before = recorder.count();
    absl::Time start = absl::Now();
    Put(key, GoValue(address));
    ASSERT_TRUE(WaitFor([&] { return recorder.count() > before; }, absl::Seconds(10)));
    put_latency.push_back(recorder.time(before) - start);
    EXPECT_NE(recorder.set(before).Find(address), nullptr);
    EXPECT_THAT(recorder.diff(before).added.size(), 1u);

    before = recorder.count();
    start = absl::Now();
    Delete(key);
    ASSERT_TRUE(WaitFor([&] { return recorder.count() > before; }, absl::Seconds(10)));
    delete_latency.push_back(recorder.time(before) - start);
    EXPECT_EQ(recorder.set(before).Find(address), nullptr);
    EXPECT_THAT(recorder.diff(before).removed.size(), 1u);
  }
  std::printf("put-to-seen latency: median %s (samples: %s)\n",
              absl::FormatDuration(Median(put_latency)).c_str(), Join(put_latency).c_str());
  std::printf("delete-to-seen latency: median %s (samples: %s)\n",
              absl::FormatDuration(Median(delete_latency)).c_str(), Join(delete_latency).c_str());
  // The median carries the assertion, so one scheduler hiccup on a busy 2-core machine does
  // not fail the test; a polling or batching source would miss it on every sample.
  EXPECT_LT(Median(put_latency), testing::Scaled(absl::Milliseconds(100)));
  EXPECT_LT(Median(delete_latency), testing::Scaled(absl::Milliseconds(100)));
  for (absl::Duration l : put_latency) EXPECT_LT(l, absl::Seconds(1));
  for (absl::Duration l : delete_latency) EXPECT_LT(l, absl::Seconds(1));
  EXPECT_THAT(d->Current().Addresses(), ElementsAre("127.0.0.10:50051"));
}

TEST_F(EtcdDiscoveryTest, MalformedValuesAreSkippedWithAWarningNamingTheKey) {
  Put(Key("good"), GoValue("127.0.0.11:50051"));
  Put(Key("bad-json"), "{\"Op\":0,\"Addr\":");
  Put(Key("foreign"), R"({"host":"x"})");
  Put(Key("empty"), "");
  Put(Key("bad-port"), GoValue("127.0.0.1:0"));
  // Op 1 is a delete in the Go manager's vocabulary: absent, without a warning.
  Put(Key("op1"), R"({"Op":1,"Addr":"127.0.0.15:50051","Metadata":null})");

  LogCapture warnings;
  Recorder recorder;
  std::unique_ptr<Discovery> d = StartDiscovery(recorder);
  ASSERT_TRUE(d->WaitForFirstReport(absl::Seconds(10)));
  EXPECT_THAT(d->Current().Addresses(), ElementsAre("127.0.0.11:50051"));
  for (const char* key : {"bad-json", "foreign", "empty", "bad-port"}) {
    EXPECT_EQ(warnings.CountContaining(absl::StrCat("'", Key(key), "'")), 1u) << key;
  }
  EXPECT_EQ(warnings.CountContaining("op1"), 0u);
  EXPECT_TRUE(warnings.Contains("not valid JSON"));
  EXPECT_TRUE(warnings.Contains("no \"Addr\" field"));
  EXPECT_TRUE(warnings.Contains("empty value"));

  // Through the watch: a bad value does not stop the watch nor remove others.
  Put(Key("later-bad"), "[1,2]");
  Put(Key("good2"), GoValue("127.0.0.12:50051"));
  ASSERT_TRUE(WaitFor([&] { return d->Current().size() == 2; }, absl::Seconds(10)));
  EXPECT_THAT(d->Current().Addresses(), ElementsAre("127.0.0.11:50051", "127.0.0.12:50051"));
  EXPECT_TRUE(warnings.Contains(absl::StrCat("'", Key("later-bad"), "'")));

  // A key overwritten with garbage no longer names an endpoint: it goes, the others stay.
  Put(Key("good"), "garbage");
  ASSERT_TRUE(WaitFor([&] { return d->Current().size() == 1; }, absl::Seconds(10)));
  EXPECT_THAT(d->Current().Addresses(), ElementsAre("127.0.0.12:50051"));
  EXPECT_TRUE(warnings.Contains(absl::StrCat("'", Key("good"), "'")));

  // An Op 1 value over a live key removes it, silently.
  size_t warnings_before = warnings.lines().size();
  Put(Key("good2"), R"({"Op":1,"Addr":"127.0.0.12:50051","Metadata":null})");
  ASSERT_TRUE(WaitFor([&] { return d->Current().empty(); }, absl::Seconds(10)));
  EXPECT_EQ(warnings.lines().size(), warnings_before);
  EXPECT_TRUE(d->LastError().ok());
}

TEST_F(EtcdDiscoveryTest, NeighbouringPrefixesAreNeverSeen) {
  Put("services/greeter2/127.0.0.99:50051", GoValue("127.0.0.99:50051"));
  Put("services/greeter", GoValue("127.0.0.98:50051"));
  Put("services/greeterX/a", GoValue("127.0.0.97:50051"));
  Put("services/gre", GoValue("127.0.0.96:50051"));
  Put(Key("a"), GoValue("127.0.0.11:50051"));

  Recorder recorder;
  std::unique_ptr<Discovery> d = StartDiscovery(recorder);
  ASSERT_TRUE(d->WaitForFirstReport(absl::Seconds(10)));
  EXPECT_THAT(d->Current().Addresses(), ElementsAre("127.0.0.11:50051"));

  // Writes next door while watching, then a marker under our prefix: once the marker is seen,
  // anything leaking from next door would have been seen too.
  Put("services/greeter2/127.0.0.95:50051", GoValue("127.0.0.95:50051"));
  Put("services/greeter", GoValue("127.0.0.94:50051"));
  Put("services/greeter0", GoValue("127.0.0.93:50051"));
  Put(Key("marker"), GoValue("127.0.0.12:50051"));
  ASSERT_TRUE(WaitFor([&] { return d->Current().size() == 2; }, absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_THAT(d->Current().Addresses(), ElementsAre("127.0.0.11:50051", "127.0.0.12:50051"));
  for (size_t i = 0; i < recorder.count(); ++i) {
    for (const std::string& address : recorder.set(i).Addresses()) {
      EXPECT_TRUE(address == "127.0.0.11:50051" || address == "127.0.0.12:50051") << address;
    }
  }

  // The same prefix written without its slash in the target means the same thing.
  absl::StatusOr<std::unique_ptr<Discovery>> no_slash = CreateDiscovery(
      absl::StrCat("etcd://", etcd_.endpoint(), "/services/greeter"), FastOptions());
  ASSERT_TRUE(no_slash.ok()) << no_slash.status();
  (*no_slash)->Start(nullptr);
  ASSERT_TRUE((*no_slash)->WaitForFirstReport(absl::Seconds(10)));
  EXPECT_THAT((*no_slash)->Current().Addresses(),
              ElementsAre("127.0.0.11:50051", "127.0.0.12:50051"));
}

TEST_F(EtcdDiscoveryTest, CompactedWatchRevisionLeadsToAFreshList) {
  Put(Key("a"), GoValue("127.0.0.11:50051"));
  Put(Key("b"), GoValue("127.0.0.12:50051"));
  LogCapture logs(LogLevel::kInfo);
  Recorder recorder;
  DiscoveryOptions options = FastOptions();
  // A long pause after the watch breaks: time for the test to restart etcd, change keys and
  // compact before the discovery resumes its watch from the old revision.
  options.retry_initial_backoff = absl::Seconds(4);
  options.retry_max_backoff = absl::Seconds(4);
  std::unique_ptr<Discovery> d = StartDiscovery(recorder, options);
  ASSERT_TRUE(d->WaitForFirstReport(absl::Seconds(10)));
  ASSERT_THAT(d->Current().Addresses(), ElementsAre("127.0.0.11:50051", "127.0.0.12:50051"));

  etcd_.Kill();
  ASSERT_TRUE(WaitFor([&] { return !d->LastError().ok(); }, absl::Seconds(10)));
  absl::Status restarted = etcd_.Start();
  ASSERT_TRUE(restarted.ok()) << restarted;
  client_ = NewClient(etcd_.endpoint());
  ASSERT_NE(client_, nullptr);
  Delete(Key("a"));
  Put(Key("c"), GoValue("127.0.0.13:50051"));
  Put(Key("d"), GoValue("127.0.0.14:50051"));
  absl::StatusOr<int64_t> revision = client_->Put(Key("b"), GoValue("127.0.0.22:50051"));
  ASSERT_TRUE(revision.ok()) << revision.status();
  ASSERT_TRUE(client_->Compact(*revision).ok());
  // Nothing was seen yet: the last good set stays in force.
  EXPECT_THAT(d->Current().Addresses(), ElementsAre("127.0.0.11:50051", "127.0.0.12:50051"));

  ASSERT_TRUE(WaitFor(
      [&] {
        return d->Current().Addresses() ==
               std::vector<std::string>{"127.0.0.13:50051", "127.0.0.14:50051", "127.0.0.22:50051"};
      },
      absl::Seconds(30)))
      << absl::StrJoin(d->Current().Addresses(), ",");
  EXPECT_TRUE(logs.Contains("compacted")) << absl::StrJoin(logs.lines(), "\n");
  // The rebuilt set arrives as one change.
  EndpointSetDiff last = recorder.diff(recorder.count() - 1);
  EXPECT_EQ(last.added.size(), 3u);
  EXPECT_EQ(last.removed.size(), 2u);

  // And the new watch works.
  Put(Key("e"), GoValue("127.0.0.15:50051"));
  ASSERT_TRUE(
      WaitFor([&] { return d->Current().Find("127.0.0.15:50051") != nullptr; }, absl::Seconds(10)));
}

TEST_F(EtcdDiscoveryTest, EtcdRestartKeepsTheLastSetAndChangesAreSeenAfterwards) {
  Put(Key("a"), GoValue("127.0.0.11:50051"));
  Put(Key("b"), GoValue("127.0.0.12:50051"));
  LogCapture warnings;
  Recorder recorder;
  std::unique_ptr<Discovery> d = StartDiscovery(recorder);
  ASSERT_TRUE(d->WaitForFirstReport(absl::Seconds(10)));
  const EndpointSet before = d->Current();
  ASSERT_EQ(before.size(), 2u);
  const size_t reports = recorder.count();

  etcd_.Stop();
  ASSERT_TRUE(WaitFor([&] { return !d->LastError().ok(); }, absl::Seconds(10)));
  // Let several retries fail.
  absl::SleepFor(absl::Milliseconds(800));
  EXPECT_EQ(d->Current(), before);
  EXPECT_EQ(recorder.count(), reports);
  // One warning for the whole outage, not one per retry.
  EXPECT_EQ(warnings.CountContaining("keeping the last 2 endpoint(s)"), 1u)
      << absl::StrJoin(warnings.lines(), "\n");

  absl::Status restarted = etcd_.Start();
  ASSERT_TRUE(restarted.ok()) << restarted;
  client_ = NewClient(etcd_.endpoint());
  ASSERT_NE(client_, nullptr);
  Put(Key("c"), GoValue("127.0.0.13:50051"));
  Delete(Key("a"));
  ASSERT_TRUE(WaitFor(
      [&] {
        return d->Current().Addresses() ==
               std::vector<std::string>{"127.0.0.12:50051", "127.0.0.13:50051"};
      },
      absl::Seconds(20)))
      << absl::StrJoin(d->Current().Addresses(), ",");
  EXPECT_TRUE(WaitFor([&] { return d->LastError().ok(); }, absl::Seconds(10)));
}

TEST_F(EtcdDiscoveryTest, StopIsPromptAndNoCallbackFollowsIt) {
  Put(Key("a"), GoValue("127.0.0.11:50051"));
  Recorder recorder;
  std::unique_ptr<Discovery> d = StartDiscovery(recorder);
  ASSERT_TRUE(d->WaitForFirstReport(absl::Seconds(10)));
  absl::Time start = absl::Now();
  d->Stop();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  const size_t reports = recorder.count();
  Put(Key("b"), GoValue("127.0.0.12:50051"));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(recorder.count(), reports);
  d->Stop();  // idempotent
}

TEST_F(EtcdDiscoveryTest, SecondMemberIsUsedWhenTheFirstIsDown) {
  Put(Key("a"), GoValue("127.0.0.11:50051"));
  const std::string target = absl::StrCat("etcd://127.0.0.1:", ::sluice::testing::FreePort(), ",",
                                          etcd_.endpoint(), "/", kPrefix);
  absl::StatusOr<std::unique_ptr<Discovery>> d = CreateDiscovery(target, FastOptions());
  ASSERT_TRUE(d.ok()) << d.status();
  (*d)->Start(nullptr);
  ASSERT_TRUE((*d)->WaitForFirstReport(absl::Seconds(10)));
  EXPECT_THAT((*d)->Current().Addresses(), ElementsAre("127.0.0.11:50051"));
  Put(Key("b"), GoValue("127.0.0.12:50051"));
  EXPECT_TRUE(WaitFor([&] { return (*d)->Current().size() == 2; }, absl::Seconds(10)));
}

// No fixture: etcd is not running when the discovery starts.
TEST(EtcdDiscoveryUnreachableTest, RetriesUntilEtcdAnswersAndStopsPromptly) {
  EtcdProcess etcd;
  LogCapture warnings;
  Recorder recorder;
  absl::StatusOr<std::unique_ptr<Discovery>> d =
      CreateDiscovery(absl::StrCat("etcd://", etcd.endpoint(), "/", kPrefix), FastOptions());
  ASSERT_TRUE(d.ok()) << d.status();
  (*d)->Start(recorder.Callback());
  ASSERT_TRUE(WaitFor([&] { return !(*d)->LastError().ok(); }, absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_FALSE((*d)->HasReported());
  EXPECT_EQ(recorder.count(), 0u);
  EXPECT_EQ(warnings.CountContaining(etcd.endpoint()), 1u) << absl::StrJoin(warnings.lines(), "\n");

  absl::Status started = etcd.Start();
  ASSERT_TRUE(started.ok()) << started;
  std::unique_ptr<EtcdClient> client = NewClient(etcd.endpoint());
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Put(Key("a"), GoValue("127.0.0.11:50051")).ok());
  ASSERT_TRUE(WaitFor([&] { return (*d)->Current().size() == 1; }, absl::Seconds(20)));
  EXPECT_THAT((*d)->Current().Addresses(), ElementsAre("127.0.0.11:50051"));

  // Stop while etcd is unreachable again must not hang either.
  etcd.Kill();
  ASSERT_TRUE(WaitFor([&] { return !(*d)->LastError().ok(); }, absl::Seconds(10)));
  absl::Time start = absl::Now();
  (*d)->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

}  // namespace
}  // namespace sluice::discovery
