#include "sluice/etcd/etcd_client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "etcd_client_fixture.h"
#include "etcd_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "process.h"
#include "sluice/core/log.h"

namespace sluice::etcd {
namespace {

using ::sluice::testing::EtcdProcess;
using ::sluice::testing::FreePort;
using ::sluice::testing::WaitFor;
using test_support::DeadEndpoint;
using test_support::EtcdClientTest;
using test_support::MakeClient;
using test_support::WatchRecorder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A port that accepts TCP connections but never speaks HTTP/2: a member that hangs.
class Blackhole {
 public:
  Blackhole() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 64);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~Blackhole() { close(fd_); }
  std::string endpoint() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int fd_;
  int port_;
};

// The test fixture itself: ports found free can be taken before etcd binds them (ctest runs
// tests side by side), and a first start must then move on rather than fail the test.
TEST(EtcdProcessTest, AFirstStartWhosePortWasTakenMovesToFreshPorts) {
  EtcdProcess etcd;
  const int taken_port = etcd.client_port();
  int squatter = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(taken_port));
  ASSERT_EQ(bind(squatter, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(squatter, 1), 0);
  const absl::Status started = etcd.Start();
  close(squatter);
  ASSERT_TRUE(started.ok()) << started;
  EXPECT_NE(etcd.client_port(), taken_port);
  EXPECT_TRUE(testing::EtcdHealthy(etcd.client_port()));
}

TEST(PrefixRangeEndTest, IncrementsLastByte) {
  EXPECT_EQ(PrefixRangeEnd("a/"), "a0");
  EXPECT_EQ(PrefixRangeEnd("services/greeter/"), "services/greeter0");
  EXPECT_EQ(PrefixRangeEnd("a\xff"), "b");
  EXPECT_EQ(PrefixRangeEnd("\xff\xff"), std::string(1, '\0'));
  EXPECT_EQ(PrefixRangeEnd(""), std::string(1, '\0'));
}

TEST(ParseEtcdEndpointsTest, AcceptsListsAndNormalizes) {
  auto one = ParseEtcdEndpoints("127.0.0.1:2379");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_THAT(*one, ElementsAre("127.0.0.1:2379"));

  auto many = ParseEtcdEndpoints(" 127.0.0.1:2379, http://127.0.0.2:22379/ ,[::1]:2379,etcd:2379");
  ASSERT_TRUE(many.ok()) << many.status();
  EXPECT_THAT(*many, ElementsAre("127.0.0.1:2379", "127.0.0.2:22379", "[::1]:2379", "etcd:2379"));

  // https:// is reported to the caller, who turns TLS on; the scheme itself is not kept.
  bool https = false;
  auto secure = ParseEtcdEndpoints("https://127.0.0.1:2379,127.0.0.2:2379", &https);
  ASSERT_TRUE(secure.ok()) << secure.status();
  EXPECT_THAT(*secure, ElementsAre("127.0.0.1:2379", "127.0.0.2:2379"));
  EXPECT_TRUE(https);
  ASSERT_TRUE(ParseEtcdEndpoints("http://127.0.0.1:2379", &https).ok());
  EXPECT_FALSE(https);
}

TEST(ParseEtcdEndpointsTest, RejectsBadInputNamingThePart) {
  auto expect_error = [](absl::string_view text, absl::string_view part) {
    auto parsed = ParseEtcdEndpoints(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr(part)) << text;
  };
  expect_error("", "no etcd endpoints given");
  expect_error("   ", "e.g. 127.0.0.1:2379");
  expect_error("127.0.0.1:2379,,127.0.0.2:2379", "#2");
  expect_error("127.0.0.1:2379,", "is empty");
  expect_error("127.0.0.1", "missing ':port'");
  expect_error("127.0.0.1:2379,127.0.0.1:0", "#2");
  expect_error("127.0.0.1:99999", "1 to 65535");
  expect_error("https://127.0.0.1:2379,http://127.0.0.2:2379", "mix http:// and https://");
  expect_error("http://127.0.0.1:2379/v3", "has a path");
  expect_error("127.0.0.1:2379,http://127.0.0.1:2379", "listed twice");
}

TEST(EtcdClientCreateTest, RejectsBadOptions) {
  EtcdClientOptions options;
  auto none = EtcdClient::Create(options);
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.status().message(), HasSubstr("no etcd endpoints"));

  options.endpoints = {"localhost"};
  auto bad = EtcdClient::Create(options);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("'localhost'"));

  options.endpoints = {"127.0.0.1:2379"};
  options.call_timeout = absl::ZeroDuration();
  auto zero = EtcdClient::Create(options);
  ASSERT_FALSE(zero.ok());
  EXPECT_THAT(zero.status().message(), HasSubstr("call_timeout"));
}

TEST_F(EtcdClientTest, PutGetDeleteWithIncreasingRevisions) {
  const std::string key = prefix_ + "k";
  auto missing = client_->Get(key);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_TRUE(missing->kvs.empty());
  EXPECT_GT(missing->revision, 0);

  auto rev1 = client_->Put(key, "v1");
  ASSERT_TRUE(rev1.ok()) << rev1.status();
  EXPECT_GT(*rev1, missing->revision);
  auto rev2 = client_->Put(key, std::string("v2\0bin", 6));
  ASSERT_TRUE(rev2.ok()) << rev2.status();
  EXPECT_EQ(*rev2, *rev1 + 1);

  auto got = client_->Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->kvs.size(), 1u);
  EXPECT_EQ(got->kvs[0].key, key);
  EXPECT_EQ(got->kvs[0].value, std::string("v2\0bin", 6));
  EXPECT_EQ(got->kvs[0].create_revision, *rev1);
  EXPECT_EQ(got->kvs[0].mod_revision, *rev2);
  EXPECT_EQ(got->kvs[0].version, 2);
  EXPECT_EQ(got->kvs[0].lease, 0);
  EXPECT_GE(got->revision, *rev2);

  auto deleted = client_->Delete(key);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 1);
  auto after = client_->Get(key);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->kvs.empty());
  EXPECT_GT(after->revision, *rev2);
  auto again = client_->Delete(key);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0);
}

TEST_F(EtcdClientTest, EmptyKeyErrorNamesOperationAndMember) {
  auto put = client_->Put("", "v");
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(put.status().message(), HasSubstr("etcd Put"));
  EXPECT_THAT(put.status().message(), HasSubstr(etcd_->endpoint()));
  EXPECT_THAT(put.status().message(), HasSubstr("key is not provided"));
}

TEST_F(EtcdClientTest, GetPrefixDoesNotReturnSiblings) {
  const std::string a = prefix_ + "a/";
  for (const std::string& key :
       {a + "y", a + "x", prefix_ + "a2/x", prefix_ + "a", prefix_ + "b"}) {
    ASSERT_TRUE(client_->Put(key, "v:" + key).ok());
  }
  auto listed = client_->GetPrefix(a);
  ASSERT_TRUE(listed.ok()) << listed.status();
  std::vector<std::string> keys;
  for (const KeyValue& kv : listed->kvs) keys.push_back(kv.key);
  EXPECT_THAT(keys, ElementsAre(a + "x", a + "y"));  // sorted, no "a2/x", no "a"
  EXPECT_EQ(listed->kvs[0].value, "v:" + a + "x");

  auto wide = client_->GetPrefix(prefix_ + "a");
  ASSERT_TRUE(wide.ok());
  EXPECT_EQ(wide->kvs.size(), 4u);

  auto deleted = client_->DeletePrefix(a);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 2);
  auto rest = client_->GetPrefix(prefix_);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->kvs.size(), 3u);
}

TEST_F(EtcdClientTest, LeaseAttachesKeyAndRevokeDeletesIt) {
  auto lease = client_->LeaseGrant(30);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_NE(lease->id, 0);
  EXPECT_EQ(lease->ttl_seconds, 30);
  const std::string key = prefix_ + "leased";
  ASSERT_TRUE(client_->Put(key, "v", lease->id).ok());
  auto got = client_->Get(key);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->kvs.size(), 1u);
  EXPECT_EQ(got->kvs[0].lease, lease->id);

  ASSERT_TRUE(client_->LeaseRevoke(lease->id).ok());
  auto gone = client_->Get(key);
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(gone->kvs.empty());

  absl::Status again = client_->LeaseRevoke(lease->id);
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound) << again;
  auto put = client_->Put(key, "v", lease->id);
  EXPECT_EQ(put.status().code(), absl::StatusCode::kNotFound) << put.status();
}

TEST_F(EtcdClientTest, KeepAliveRenewsAndReportsLostLease) {
  auto lease = client_->LeaseGrant(2);
  ASSERT_TRUE(lease.ok()) << lease.status();
  const std::string key = prefix_ + "kept";
  ASSERT_TRUE(client_->Put(key, "v", lease->id).ok());
  // Renew for well past the TTL: without renewals the key would be gone after ~2-3 s.
  absl::Time end = absl::Now() + absl::Milliseconds(3500);
  while (absl::Now() < end) {
    auto ttl = client_->LeaseKeepAliveOnce(lease->id);
    ASSERT_TRUE(ttl.ok()) << ttl.status();
    EXPECT_EQ(*ttl, 2);
    absl::SleepFor(absl::Milliseconds(400));
  }
  auto got = client_->Get(key);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->kvs.size(), 1u);

  ASSERT_TRUE(client_->LeaseRevoke(lease->id).ok());
  auto lost = client_->LeaseKeepAliveOnce(lease->id);
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kNotFound) << lost.status();
  EXPECT_THAT(lost.status().message(), HasSubstr("no longer exists"));
}

TEST_F(EtcdClientTest, FailsOverFromDeadMember) {
  const std::string dead = DeadEndpoint();
  auto client = MakeClient({dead, etcd_->endpoint()});
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->endpoints().size(), 2u);
  auto put = client->Put(prefix_ + "k", "v");
  ASSERT_TRUE(put.ok()) << put.status();
  auto got = client->Get(prefix_ + "k");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->kvs.size(), 1u);
  auto lease = client->LeaseGrant(10);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_TRUE(client->LeaseKeepAliveOnce(lease->id).ok());

  // A watch on a fresh client also starts on the live member.
  auto fresh = MakeClient({dead, etcd_->endpoint()});
  WatchRecorder recorder;
  auto watch = fresh->WatchPrefix(prefix_, got->revision, recorder.OnUpdate(), recorder.OnEnd());
  ASSERT_TRUE(WaitFor([&] { return recorder.event_count() > 0 || recorder.ends() > 0; },
                      absl::Seconds(10)));
  EXPECT_EQ(recorder.ends(), 0) << recorder.end_status();
  ASSERT_GE(recorder.event_count(), 1u);
  EXPECT_EQ(recorder.events()[0].kv.key, prefix_ + "k");
}

TEST_F(EtcdClientTest, FailsOverFromHangingMemberAfterTimeoutAndRemembers) {
  Blackhole hang;
  auto client = MakeClient({hang.endpoint(), etcd_->endpoint()}, absl::Milliseconds(500));
  ASSERT_NE(client, nullptr);
  absl::Time start = absl::Now();
  auto first = client->Put(prefix_ + "k", "v");
  absl::Duration first_took = absl::Now() - start;
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_GE(first_took, absl::Milliseconds(450));  // waited out the hanging member
  EXPECT_LT(first_took, absl::Seconds(3));

  start = absl::Now();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client->Get(prefix_ + "k").ok());
  absl::Duration next_took = absl::Now() - start;
  EXPECT_LT(next_took, absl::Milliseconds(400)) << "the working member was not remembered";
  // A watch on a fresh client moves on from the hanging member too.
  auto fresh = MakeClient({hang.endpoint(), etcd_->endpoint()}, absl::Milliseconds(500));
  WatchRecorder recorder;
  auto watch = fresh->WatchPrefix(prefix_, *first, recorder.OnUpdate(), recorder.OnEnd());
  ASSERT_TRUE(WaitFor([&] { return recorder.event_count() > 0 || recorder.ends() > 0; },
                      absl::Seconds(10)));
  EXPECT_EQ(recorder.ends(), 0) << recorder.end_status();
  EXPECT_EQ(recorder.event_count(), 1u);
  std::printf("hanging member: first call %s, next 5 calls %s\n",
              absl::FormatDuration(first_took).c_str(), absl::FormatDuration(next_took).c_str());
}

TEST_F(EtcdClientTest, AllMembersDeadFailsFastNamingEachMember) {
  const std::string dead1 = DeadEndpoint();
  const std::string dead2 = DeadEndpoint();
  auto client = MakeClient({dead1, dead2}, absl::Seconds(1));
  absl::Time start = absl::Now();
  auto got = client->Get("some/key");
  absl::Duration took = absl::Now() - start;
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("etcd Get 'some/key'"));
  EXPECT_THAT(got.status().message(), HasSubstr(dead1));
  EXPECT_THAT(got.status().message(), HasSubstr(dead2));
  EXPECT_LT(took, absl::Seconds(2));

  // A member that hangs costs one timeout, not more.
  Blackhole hang;
  auto hanging = MakeClient({hang.endpoint(), dead1}, absl::Milliseconds(300));
  start = absl::Now();
  auto put = hanging->Put("some/key", "v");
  took = absl::Now() - start;
  ASSERT_FALSE(put.ok());
  EXPECT_THAT(put.status().message(), HasSubstr(hang.endpoint()));
  EXPECT_THAT(put.status().message(), HasSubstr("DEADLINE_EXCEEDED"));
  EXPECT_THAT(put.status().message(), HasSubstr(dead1));
  EXPECT_GE(took, absl::Milliseconds(250));
  EXPECT_LT(took, absl::Milliseconds(1500));

  // A watch, too, gives up on a hanging member after the call timeout.
  WatchRecorder hang_recorder;
  start = absl::Now();
  auto hang_watch =
      hanging->WatchPrefix("some/", 0, hang_recorder.OnUpdate(), hang_recorder.OnEnd());
  ASSERT_TRUE(WaitFor([&] { return hang_recorder.ends() > 0; }, absl::Seconds(10)));
  took = absl::Now() - start;
  EXPECT_EQ(hang_recorder.end_status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(hang_recorder.end_status().message(), HasSubstr(hang.endpoint()));
  EXPECT_THAT(hang_recorder.end_status().message(), HasSubstr("not connected within"));
  EXPECT_LT(took, absl::Milliseconds(1500));

  WatchRecorder recorder;
  auto watch = client->WatchPrefix("some/", 0, recorder.OnUpdate(), recorder.OnEnd());
  ASSERT_TRUE(WaitFor([&] { return recorder.ends() > 0; }, absl::Seconds(10)));
  EXPECT_EQ(recorder.end_status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(recorder.end_status().message(), HasSubstr(dead1));
  EXPECT_THAT(recorder.end_status().message(), HasSubstr(dead2));
}

absl::Status RunEtcdctl(const std::string& endpoint, std::vector<std::string> args) {
  std::vector<std::string> argv = {"etcdctl", "--endpoints", endpoint};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = ::sluice::testing::ChildProcess::Start(argv, {{"ETCDCTL_API", "3"}}, "/dev/null");
  if (!child.ok()) return child.status();
  auto code = child->Wait(absl::Seconds(20));
  if (!code.ok()) return code.status();
  if (*code != 0) return absl::InternalError(absl::StrCat("etcdctl exited with ", *code));
  return absl::OkStatus();
}

TEST(EtcdClientAuthTest, AuthenticatesAndAuthenticatesAgainWhenTokenIsRefused) {
  EtcdProcess etcd;
  ASSERT_TRUE(etcd.Start().ok());
  ASSERT_TRUE(RunEtcdctl(etcd.endpoint(), {"user", "add", "root:rootpw"}).ok());
  ASSERT_TRUE(RunEtcdctl(etcd.endpoint(), {"auth", "enable"}).ok());

  EtcdClientOptions options;
  options.endpoints = {etcd.endpoint()};
  options.username = "root";
  options.password = "rootpw";
  auto client = EtcdClient::Create(options);
  ASSERT_TRUE(client.ok());
  auto put = (*client)->Put("auth/k", "v");
  ASSERT_TRUE(put.ok()) << put.status();

  auto anonymous = MakeClient({etcd.endpoint()});
  auto denied = anonymous->Get("auth/k");
  ASSERT_FALSE(denied.ok());
  EXPECT_THAT(denied.status().message(), HasSubstr("etcd Get 'auth/k'"));

  options.password = "wrong";
  auto wrong = EtcdClient::Create(options);
  ASSERT_TRUE(wrong.ok());
  auto refused = (*wrong)->Get("auth/k");
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("authentication failed"));

  // etcd keeps simple tokens in memory: after a restart it may not know the client's token any
  // more, and the client must then authenticate again by itself.
  etcd.Stop();
  ASSERT_TRUE(etcd.Start().ok());
  absl::StatusOr<RangeResult> got;
  ASSERT_TRUE(WaitFor(
      [&] {
        got = (*client)->Get("auth/k");
        return got.ok();
      },
      absl::Seconds(10)))
      << got.status();
  ASSERT_EQ(got->kvs.size(), 1u);

  // Turning auth off and on drops every token etcd issued. The client must notice and
  // authenticate again, for a unary call and for a watch alike.
  std::vector<std::string> logs;
  std::mutex logs_mu;
  LogSink previous = SetLogSink([&](LogLevel, absl::string_view message) {
    std::lock_guard<std::mutex> lock(logs_mu);
    logs.emplace_back(message);
  });
  // Restores the sink even when an assertion returns early: it captures locals.
  std::shared_ptr<void> restore_sink(nullptr, [&](void*) { SetLogSink(previous); });
  auto drop_tokens = [&] {
    ASSERT_TRUE(RunEtcdctl(etcd.endpoint(), {"--user", "root:rootpw", "auth", "disable"}).ok());
    ASSERT_TRUE(RunEtcdctl(etcd.endpoint(), {"auth", "enable"}).ok());
  };
  drop_tokens();
  got = (*client)->Get("auth/k");
  EXPECT_TRUE(got.ok()) << got.status();

  drop_tokens();
  WatchRecorder recorder;
  auto watch = (*client)->WatchPrefix("auth/", *put, recorder.OnUpdate(), recorder.OnEnd());
  bool done =
      WaitFor([&] { return recorder.event_count() > 0 || recorder.ends() > 0; }, absl::Seconds(10));
  restore_sink.reset();
  ASSERT_TRUE(done);
  EXPECT_EQ(recorder.ends(), 0) << recorder.end_status();
  ASSERT_EQ(recorder.event_count(), 1u);
  EXPECT_EQ(recorder.events()[0].kv.key, "auth/k");
  std::lock_guard<std::mutex> lock(logs_mu);
  ASSERT_EQ(logs.size(), 2u);
  EXPECT_THAT(logs[0], HasSubstr("Get 'auth/k': etcd refused the auth token"));
  EXPECT_THAT(logs[1], HasSubstr("Watch 'auth/': etcd refused the auth token"));
}

}  // namespace
}  // namespace sluice::etcd
