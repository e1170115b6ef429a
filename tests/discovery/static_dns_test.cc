#include <atomic>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "discovery_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "process.h"
#include "sluice/core/log.h"
#include "sluice/discovery/discovery.h"
#include "sluice/discovery/sources.h"

namespace sluice::discovery {
namespace {

using ::sluice::testing::WaitFor;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

using WarningCapture = LogCapture;

TEST(StaticDiscoveryTest, DeliversTheSetOnceOnStart) {
  absl::StatusOr<std::unique_ptr<Discovery>> d =
      CreateDiscovery("static://127.0.0.12:50051,127.0.0.11:50051");
  ASSERT_TRUE(d.ok()) << d.status();
  Recorder recorder;
  (*d)->Start(recorder.Callback());
  // A static source reports inside Start().
  ASSERT_EQ(recorder.count(), 1u);
  EXPECT_THAT(recorder.set(0).Addresses(), ElementsAre("127.0.0.11:50051", "127.0.0.12:50051"));
  EXPECT_EQ(recorder.diff(0).added.size(), 2u);
  EXPECT_TRUE((*d)->HasReported());
  EXPECT_EQ((*d)->Current(), recorder.set(0));
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(recorder.count(), 1u);
  (*d)->Stop();
  (*d)->Stop();  // idempotent
  EXPECT_EQ(recorder.count(), 1u);
}

TEST(StaticDiscoveryTest, PlainAddressAndDefaultWeight) {
  absl::StatusOr<std::unique_ptr<Discovery>> d = CreateDiscovery("127.0.0.11:50051");
  ASSERT_TRUE(d.ok()) << d.status();
  (*d)->Start(nullptr);
  ASSERT_EQ((*d)->Current().size(), 1u);
  EXPECT_EQ((*d)->Current().endpoints()[0].address, "127.0.0.11:50051");
  EXPECT_EQ((*d)->Current().endpoints()[0].weight, Endpoint::kDefaultWeight);
}

TEST(DnsDiscoveryTest, LocalhostResolvesToLoopback) {
  DiscoveryOptions options;
  options.dns_refresh_interval = absl::Milliseconds(20);
  absl::StatusOr<std::unique_ptr<Discovery>> d = CreateDiscovery("dns://localhost:50051", options);
  ASSERT_TRUE(d.ok()) << d.status();
  Recorder recorder;
  (*d)->Start(recorder.Callback());
  ASSERT_TRUE((*d)->WaitForFirstReport(absl::Seconds(10)));
  EXPECT_THAT((*d)->Current().Addresses(), Contains("127.0.0.1:50051"));
  for (const std::string& address : (*d)->Current().Addresses()) {
    // Only loopback: 127.x (IPv4) or [::1] (IPv6), always with the port.
    EXPECT_TRUE(absl::StartsWith(address, "127.") || address == "[::1]:50051") << address;
    EXPECT_TRUE(absl::EndsWith(address, ":50051")) << address;
  }
  // Several refreshes later the answer is the same: no further callback.
  absl::SleepFor(absl::Milliseconds(150));
  EXPECT_EQ(recorder.count(), 1u);
  EXPECT_TRUE((*d)->LastError().ok());
}

TEST(DnsDiscoveryTest, UnresolvableNameKeepsAnEmptySetAndWarns) {
  WarningCapture warnings;
  DiscoveryOptions options;
  options.dns_refresh_interval = absl::Milliseconds(20);
  absl::StatusOr<std::unique_ptr<Discovery>> d =
      CreateDiscovery("dns://no-such-host.invalid:1", options);
  ASSERT_TRUE(d.ok()) << d.status();
  Recorder recorder;
  (*d)->Start(recorder.Callback());
  ASSERT_TRUE(
      WaitFor([&] { return warnings.Contains("no-such-host.invalid"); }, absl::Seconds(30)));
  // Let a few more attempts fail: one warning for a lasting failure, no report, no crash.
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(warnings.CountContaining("no-such-host.invalid"), 1u);
  EXPECT_FALSE((*d)->HasReported());
  EXPECT_THAT((*d)->Current().endpoints(), IsEmpty());
  EXPECT_FALSE((*d)->LastError().ok());
  EXPECT_EQ(recorder.count(), 0u);
  (*d)->Stop();
}

// A resolver the test scripts: each lookup takes the next answer; the last one repeats.
class ScriptedResolver {
 public:
  explicit ScriptedResolver(std::vector<absl::StatusOr<std::vector<std::string>>> answers)
      : answers_(answers.begin(), answers.end()) {}
  DnsResolver Resolver() {
    return [this](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
      std::lock_guard<std::mutex> lock(mu_);
      ++lookups_;
      last_host_ = host;
      absl::StatusOr<std::vector<std::string>> answer = answers_.front();
      if (answers_.size() > 1) answers_.pop_front();
      return answer;
    };
  }
  int lookups() {
    std::lock_guard<std::mutex> lock(mu_);
    return lookups_;
  }
  std::string last_host() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_host_;
  }

 private:
  std::mutex mu_;
  std::deque<absl::StatusOr<std::vector<std::string>>> answers_;
  int lookups_ = 0;
  std::string last_host_;
};

TEST(DnsDiscoveryTest, RefreshReportsChangesAndAFailureKeepsTheLastSet) {
  WarningCapture warnings;
  ScriptedResolver resolver({
      std::vector<std::string>{"10.0.0.2", "10.0.0.1", "fd00::1"},
      absl::UnavailableError("resolver timed out"),
      std::vector<std::string>{"10.0.0.1"},
  });
  DiscoveryOptions options;
  options.dns_refresh_interval = absl::Milliseconds(10);
  std::unique_ptr<Discovery> d =
      NewDnsDiscovery("greeter.example", 8080, options, resolver.Resolver());
  Recorder recorder;
  d->Start(recorder.Callback());
  ASSERT_TRUE(WaitFor([&] { return recorder.count() >= 2; }, absl::Seconds(10)));
  EXPECT_EQ(resolver.last_host(), "greeter.example");
  EXPECT_THAT(recorder.set(0).Addresses(),
              ElementsAre("10.0.0.1:8080", "10.0.0.2:8080", "[fd00::1]:8080"));
  // The failed lookup in between reported nothing and warned once.
  EXPECT_TRUE(warnings.Contains("resolver timed out"));
  EXPECT_THAT(recorder.set(1).Addresses(), ElementsAre("10.0.0.1:8080"));
  EXPECT_THAT(recorder.diff(1).removed.size(), 2u);
  EXPECT_TRUE(recorder.diff(1).added.empty());
  // The last answer repeats: lookups go on, reports do not.
  int lookups = resolver.lookups();
  ASSERT_TRUE(WaitFor([&] { return resolver.lookups() >= lookups + 3; }, absl::Seconds(10)));
  EXPECT_EQ(recorder.count(), 2u);
  EXPECT_TRUE(d->LastError().ok());
}

TEST(DnsDiscoveryTest, FailureAfterASuccessKeepsTheSet) {
  ScriptedResolver resolver({
      std::vector<std::string>{"10.0.0.1"},
      absl::NotFoundError("gone"),
  });
  WarningCapture warnings;
  DiscoveryOptions options;
  options.dns_refresh_interval = absl::Milliseconds(10);
  std::unique_ptr<Discovery> d = NewDnsDiscovery("svc", 1, options, resolver.Resolver());
  d->Start(nullptr);
  ASSERT_TRUE(WaitFor([&] { return resolver.lookups() >= 4; }, absl::Seconds(10)));
  EXPECT_THAT(d->Current().Addresses(), ElementsAre("10.0.0.1:1"));
  EXPECT_EQ(d->LastError().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(warnings.Contains("keeping the last 1 endpoint(s)"));
}

TEST(DnsDiscoveryTest, StopIsPromptDuringALongRefreshInterval) {
  DiscoveryOptions options;
  options.dns_refresh_interval = absl::Hours(1);
  absl::StatusOr<std::unique_ptr<Discovery>> d = CreateDiscovery("dns://localhost:1", options);
  ASSERT_TRUE(d.ok()) << d.status();
  std::atomic<int> calls{0};
  (*d)->Start([&](const EndpointSet&, const EndpointSetDiff&) { ++calls; });
  ASSERT_TRUE((*d)->WaitForFirstReport(absl::Seconds(10)));
  absl::Time start = absl::Now();
  (*d)->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(calls.load(), 1);
  d->reset();  // destructor after Stop is fine
}

}  // namespace
}  // namespace sluice::discovery
