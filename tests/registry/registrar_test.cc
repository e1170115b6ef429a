#include "sluice/registry/registrar.h"

#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "etcd_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "process.h"
#include "shared_etcd_test.h"
#include "sluice/core/log.h"
#include "sluice/core/naming_value.h"
#include "sluice/etcd/etcd_client.h"

namespace sluice::registry {
namespace {

using ::sluice::etcd::EtcdClient;
using ::sluice::etcd::EtcdClientOptions;
using ::sluice::testing::EtcdProcess;
using ::sluice::testing::FreePort;
using ::sluice::testing::WaitFor;
using ::testing::HasSubstr;

std::unique_ptr<EtcdClient> MakeClient(const std::string& endpoint) {
  EtcdClientOptions options;
  options.endpoints = {endpoint};
  options.call_timeout = absl::Seconds(5);
  auto client = EtcdClient::Create(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

RegistrarOptions BaseOptions(const std::string& etcd_endpoint, const std::string& prefix) {
  RegistrarOptions options;
  options.etcd.endpoints = {etcd_endpoint};
  options.prefix = prefix;
  options.endpoint.address = "127.0.0.11:50051";
  options.ttl_seconds = 10;
  options.retry_initial_backoff = absl::Milliseconds(50);
  options.retry_max_backoff = absl::Milliseconds(500);
  return options;
}

// The key's value, or nullopt if absent (or unreadable).
std::optional<std::string> ValueOf(EtcdClient& client, const std::string& key) {
  auto got = client.Get(key);
  if (!got.ok() || got->kvs.empty()) return std::nullopt;
  return got->kvs[0].value;
}

bool KeyPresent(EtcdClient& client, const std::string& key) {
  auto got = client.Get(key);
  return got.ok() && !got->kvs.empty();
}

bool KeyAbsent(EtcdClient& client, const std::string& key) {
  auto got = client.Get(key);
  return got.ok() && got->kvs.empty();
}

class RegistrarTest : public ::sluice::testing::SharedEtcdTest {
 protected:
  void SetUp() override {
    SharedEtcdTest::SetUp();
    if (HasFatalFailure()) return;
    client_ = MakeClient(etcd_->endpoint());
    ASSERT_NE(client_, nullptr);
    prefix_ = TestPrefix("services/");
  }

  std::unique_ptr<EtcdClient> client_;
  std::string prefix_;
};

TEST_F(RegistrarTest, WritesGoCompatibleValueAndBecomesVisibleQuickly) {
  absl::Time start = absl::Now();
  auto registrar = Registrar::Start(BaseOptions(etcd_->endpoint(), prefix_));
  ASSERT_TRUE(registrar.ok()) << registrar.status();
  const std::string key = prefix_ + "/127.0.0.11:50051";
  EXPECT_EQ((*registrar)->key(), key);
  ASSERT_TRUE(WaitFor([&] { return KeyPresent(*client_, key); }, absl::Seconds(10)));
  absl::Duration visible = absl::Now() - start;
  std::printf("registration visible in etcd %s after Registrar::Start\n",
              absl::FormatDuration(visible).c_str());
  EXPECT_LT(visible, absl::Seconds(2));

  ASSERT_TRUE((*registrar)->WaitUntilRegistered(absl::Seconds(10)));
  EXPECT_TRUE((*registrar)->registered());
  auto got = client_->Get(key);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->kvs.size(), 1u);
  EXPECT_EQ(got->kvs[0].value, R"({"Op":0,"Addr":"127.0.0.11:50051","Metadata":null})");
  EXPECT_NE((*registrar)->lease_id(), 0);
  EXPECT_EQ(got->kvs[0].lease, (*registrar)->lease_id());
  // Listing the prefix with the trailing slash finds exactly this instance.
  auto listed = client_->GetPrefix(prefix_ + "/");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->kvs.size(), 1u);
}

TEST_F(RegistrarTest, MetadataIsAJsonStringHoldingAnObject) {
  RegistrarOptions options = BaseOptions(etcd_->endpoint(), prefix_);
  options.endpoint.address = "127.0.0.12:50052";
  options.endpoint.weight = 100;
  options.endpoint.zone = "zone-a";
  options.instance_id = "pod-7";
  auto registrar = Registrar::Start(options);
  ASSERT_TRUE(registrar.ok()) << registrar.status();
  ASSERT_TRUE((*registrar)->WaitUntilRegistered(absl::Seconds(10)));
  const std::string key = prefix_ + "/pod-7";
  EXPECT_EQ((*registrar)->key(), key);
  std::optional<std::string> value = ValueOf(*client_, key);
  ASSERT_TRUE(value.has_value());
  EXPECT_EQ(*value, EncodeNamingValue(options.endpoint));

  nlohmann::json doc = nlohmann::json::parse(*value);
  EXPECT_EQ(doc["Op"], 0);
  EXPECT_EQ(doc["Addr"], "127.0.0.12:50052");
  ASSERT_TRUE(doc["Metadata"].is_string()) << *value;  // never an object: grpc-go panics on it
  nlohmann::json metadata = nlohmann::json::parse(doc["Metadata"].get<std::string>());
  ASSERT_TRUE(metadata.is_object());
  EXPECT_EQ(metadata["weight"], 100);
  EXPECT_EQ(metadata["zone"], "zone-a");

  auto parsed = ParseNamingValue(key, *value);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->weight, 100u);
  EXPECT_EQ(parsed->zone, "zone-a");
}

TEST_F(RegistrarTest, StopRemovesKeyWithin100ms) {
  auto registrar = Registrar::Start(BaseOptions(etcd_->endpoint(), prefix_));
  ASSERT_TRUE(registrar.ok()) << registrar.status();
  ASSERT_TRUE((*registrar)->WaitUntilRegistered(absl::Seconds(10)));
  const std::string key = (*registrar)->key();
  ASSERT_TRUE(KeyPresent(*client_, key));

  absl::Time start = absl::Now();
  absl::Status stopped = (*registrar)->Stop();
  ASSERT_TRUE(stopped.ok()) << stopped;
  ASSERT_TRUE(WaitFor([&] { return KeyAbsent(*client_, key); }, absl::Seconds(5)));
  absl::Duration gone = absl::Now() - start;
  std::printf("key gone %s after Stop()\n", absl::FormatDuration(gone).c_str());
  EXPECT_LT(gone, testing::Scaled(absl::Milliseconds(100)));
  EXPECT_FALSE((*registrar)->registered());
  EXPECT_TRUE((*registrar)->Stop().ok());  // idempotent
  EXPECT_FALSE((*registrar)->WaitUntilRegistered(absl::Milliseconds(10)));
}

TEST_F(RegistrarTest, AbandonLeavesKeyToExpireAfterTtl) {
  RegistrarOptions options = BaseOptions(etcd_->endpoint(), prefix_);
  options.ttl_seconds = 2;
  auto registrar = Registrar::Start(options);
  ASSERT_TRUE(registrar.ok()) << registrar.status();
  ASSERT_TRUE((*registrar)->WaitUntilRegistered(absl::Seconds(10)));
  const std::string key = (*registrar)->key();

  absl::Time start = absl::Now();
  (*registrar)->Abandon();
  EXPECT_FALSE((*registrar)->registered());
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_TRUE(KeyPresent(*client_, key)) << "Abandon() must not revoke the lease";
  registrar->reset();  // the destructor after Abandon() must not revoke either
  EXPECT_TRUE(KeyPresent(*client_, key));

  ASSERT_TRUE(WaitFor([&] { return KeyAbsent(*client_, key); }, absl::Seconds(2 + 3)));
  std::printf("abandoned key (ttl 2s) expired %s after Abandon()\n",
              absl::FormatDuration(absl::Now() - start).c_str());
}

TEST_F(RegistrarTest, ReRegistersWhenLeaseIsRevokedBehindItsBack) {
  RegistrarOptions options = BaseOptions(etcd_->endpoint(), prefix_);
  options.ttl_seconds = 3;  // keep-alive every second
  auto registrar = Registrar::Start(options);
  ASSERT_TRUE(registrar.ok()) << registrar.status();
  ASSERT_TRUE((*registrar)->WaitUntilRegistered(absl::Seconds(10)));
  const std::string key = (*registrar)->key();
  const int64_t old_lease = (*registrar)->lease_id();

  ASSERT_TRUE(client_->LeaseRevoke(old_lease).ok());
  ASSERT_TRUE(KeyAbsent(*client_, key));
  absl::Time start = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return KeyPresent(*client_, key); }, absl::Seconds(8)));
  std::printf("key back %s after its lease was revoked\n",
              absl::FormatDuration(absl::Now() - start).c_str());
  auto got = client_->Get(key);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->kvs.size(), 1u);
  EXPECT_NE(got->kvs[0].lease, old_lease);
  EXPECT_EQ(got->kvs[0].value, R"({"Op":0,"Addr":"127.0.0.11:50051","Metadata":null})");
  ASSERT_TRUE(
      WaitFor([&] { return (*registrar)->lease_id() == got->kvs[0].lease; }, absl::Seconds(2)));
  EXPECT_TRUE((*registrar)->registered());
}

TEST_F(RegistrarTest, RejectsBadOptionsSayingWhatToDo) {
  auto expect_error = [&](RegistrarOptions options, absl::string_view text) {
    auto registrar = Registrar::Start(std::move(options));
    ASSERT_FALSE(registrar.ok()) << text;
    EXPECT_EQ(registrar.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(registrar.status().message(), HasSubstr(text));
  };
  RegistrarOptions good = BaseOptions(etcd_->endpoint(), prefix_);

  RegistrarOptions o = good;
  o.prefix = "";
  expect_error(o, "RegistrarOptions.prefix is empty: set the service's key prefix");
  o = good;
  o.prefix = "services/greeter/";
  expect_error(o, "ends with '/': give it without the trailing slash");
  o = good;
  o.endpoint.address = "127.0.0.11";
  expect_error(o, "RegistrarOptions.endpoint.address: bad address '127.0.0.11': missing ':port'");
  o = good;
  o.endpoint.address = "";
  expect_error(o, "RegistrarOptions.endpoint.address");
  o = good;
  o.ttl_seconds = 0;
  expect_error(o, "RegistrarOptions.ttl_seconds is 0: it must be at least 1");
  o = good;
  o.etcd.endpoints.clear();
  expect_error(o, "RegistrarOptions.etcd.endpoints is empty: give at least one etcd member");
  o = good;
  o.etcd.endpoints = {"127.0.0.1"};
  expect_error(o, "RegistrarOptions.etcd: etcd endpoint: bad address '127.0.0.1'");
  o = good;
  o.retry_initial_backoff = absl::Seconds(5);
  o.retry_max_backoff = absl::Seconds(1);
  expect_error(o, "must be positive and not above max");
}

TEST(RegistrarNoEtcdTest, StaysUnregisteredAndStopsPromptly) {
  RegistrarOptions options = BaseOptions(absl::StrCat("127.0.0.1:", FreePort()), "services/x");
  options.etcd.call_timeout = absl::Milliseconds(500);
  auto registrar = Registrar::Start(options);
  ASSERT_TRUE(registrar.ok()) << registrar.status();
  EXPECT_FALSE((*registrar)->WaitUntilRegistered(absl::Milliseconds(500)));
  EXPECT_EQ((*registrar)->lease_id(), 0);
  absl::Time start = absl::Now();
  EXPECT_TRUE((*registrar)->Stop().ok());  // nothing to revoke
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

// The restart tests stop their own etcd.
TEST(RegistrarRestartTest, KeyComesBackAfterEtcdStopAndStart) {
  EtcdProcess etcd;
  ASSERT_TRUE(etcd.Start().ok());
  RegistrarOptions options = BaseOptions(etcd.endpoint(), "services/restart");
  options.ttl_seconds = 2;
  auto registrar = Registrar::Start(options);
  ASSERT_TRUE(registrar.ok()) << registrar.status();
  ASSERT_TRUE((*registrar)->WaitUntilRegistered(absl::Seconds(10)));
  const std::string key = (*registrar)->key();

  // Long enough down for keep-alives to fail (they run every ttl/3), short enough for etcd to
  // keep the lease (it restores leases with a fresh TTL on restart).
  std::vector<std::string> warnings;
  std::mutex warnings_mu;
  LogSink previous = SetLogSink([&](LogLevel level, absl::string_view message) {
    std::lock_guard<std::mutex> lock(warnings_mu);
    if (level == LogLevel::kWarning) warnings.emplace_back(message);
  });
  etcd.Stop();
  absl::SleepFor(absl::Seconds(1));
  absl::Status started = etcd.Start();
  SetLogSink(previous);
  ASSERT_TRUE(started.ok()) << started;
  {
    std::lock_guard<std::mutex> lock(warnings_mu);
    ASSERT_FALSE(warnings.empty());
    EXPECT_THAT(warnings[0], HasSubstr("keep-alive for " + key + " failed (1 in a row)"));
  }
  auto client = MakeClient(etcd.endpoint());
  absl::Time start = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return KeyPresent(*client, key); }, absl::Seconds(10)));
  ASSERT_TRUE((*registrar)->WaitUntilRegistered(absl::Seconds(10)));
  std::printf("key present %s after etcd restarted\n",
              absl::FormatDuration(absl::Now() - start).c_str());
  // Keep-alives work again: the key outlives its TTL and sits under the registrar's lease.
  absl::SleepFor(absl::Seconds(options.ttl_seconds + 1));
  auto got = client->Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->kvs.size(), 1u);
  EXPECT_EQ(got->kvs[0].lease, (*registrar)->lease_id());
  EXPECT_TRUE((*registrar)->registered());

  ASSERT_TRUE((*registrar)->Stop().ok());
  EXPECT_TRUE(KeyAbsent(*client, key));
}

TEST(RegistrarRestartTest, KeyComesBackAfterEtcdKilledLongerThanTtl) {
  EtcdProcess etcd;
  ASSERT_TRUE(etcd.Start().ok());
  RegistrarOptions options = BaseOptions(etcd.endpoint(), "services/killed");
  options.ttl_seconds = 2;
  auto registrar = Registrar::Start(options);
  ASSERT_TRUE(registrar.ok()) << registrar.status();
  ASSERT_TRUE((*registrar)->WaitUntilRegistered(absl::Seconds(10)));
  const std::string key = (*registrar)->key();

  etcd.Kill();
  // A whole TTL without keep-alives: the registrar no longer believes it is registered.
  ASSERT_TRUE(WaitFor([&] { return !(*registrar)->registered(); }, absl::Seconds(6)));
  absl::SleepFor(absl::Seconds(1));  // > ttl since the kill
  ASSERT_TRUE(etcd.Start().ok());
  auto client = MakeClient(etcd.endpoint());
  absl::Time start = absl::Now();
  ASSERT_TRUE((*registrar)->WaitUntilRegistered(absl::Seconds(10)));
  ASSERT_TRUE(WaitFor([&] { return KeyPresent(*client, key); }, absl::Seconds(10)));
  std::printf("key present %s after etcd restarted (killed for > ttl)\n",
              absl::FormatDuration(absl::Now() - start).c_str());
  // Whatever etcd did with the old lease on restart, the key stays alive past another TTL.
  absl::SleepFor(absl::Seconds(options.ttl_seconds + 2));
  auto got = client->Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->kvs.size(), 1u);
  EXPECT_EQ(got->kvs[0].lease, (*registrar)->lease_id());
  EXPECT_EQ(got->kvs[0].value, R"({"Op":0,"Addr":"127.0.0.11:50051","Metadata":null})");
}

}  // namespace
}  // namespace sluice::registry
