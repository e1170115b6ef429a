#include "sluice/discovery/target.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::discovery {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseTargetTest, EtcdWithOneMember) {
  absl::StatusOr<Target> t = ParseTarget("etcd://127.0.0.1:2379/services/greeter");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->scheme, Target::Scheme::kEtcd);
  EXPECT_EQ(t->text, "etcd://127.0.0.1:2379/services/greeter");
  EXPECT_THAT(t->etcd_endpoints, ElementsAre("127.0.0.1:2379"));
  EXPECT_EQ(t->prefix, "services/greeter/");
  EXPECT_TRUE(t->addresses.empty());
  EXPECT_TRUE(t->dns_host.empty());
}

TEST(ParseTargetTest, EtcdWithSeveralMembersAndTrailingSlashes) {
  absl::StatusOr<Target> t =
      ParseTarget("etcd://127.0.0.1:2379,127.0.0.2:22379,[::1]:32379/services/greeter///");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->scheme, Target::Scheme::kEtcd);
  EXPECT_THAT(t->etcd_endpoints, ElementsAre("127.0.0.1:2379", "127.0.0.2:22379", "[::1]:32379"));
  EXPECT_EQ(t->prefix, "services/greeter/");
}

TEST(ParseTargetTest, EtcdPrefixKeepsInnerSlashes) {
  absl::StatusOr<Target> t = ParseTarget("etcd://localhost:2379/a/b/c/");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(t->etcd_endpoints, ElementsAre("localhost:2379"));
  EXPECT_EQ(t->prefix, "a/b/c/");
}

TEST(ParseTargetTest, StaticList) {
  absl::StatusOr<Target> t = ParseTarget("static://127.0.0.11:50051,127.0.0.12:50052,[::1]:50053");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->scheme, Target::Scheme::kStatic);
  EXPECT_THAT(t->addresses, ElementsAre("127.0.0.11:50051", "127.0.0.12:50052", "[::1]:50053"));
  EXPECT_TRUE(t->etcd_endpoints.empty());
  EXPECT_TRUE(t->prefix.empty());
}

TEST(ParseTargetTest, SchemeIsCaseInsensitive) {
  absl::StatusOr<Target> t = ParseTarget("STATIC://127.0.0.11:50051");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->scheme, Target::Scheme::kStatic);
  EXPECT_THAT(t->addresses, ElementsAre("127.0.0.11:50051"));
}

TEST(ParseTargetTest, Dns) {
  absl::StatusOr<Target> t = ParseTarget("dns://greeter.default.svc:50051");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->scheme, Target::Scheme::kDns);
  EXPECT_EQ(t->dns_host, "greeter.default.svc");
  EXPECT_EQ(t->dns_port, 50051);
}

TEST(ParseTargetTest, DnsInGrpcSpellingWithEmptyAuthority) {
  absl::StatusOr<Target> t = ParseTarget("dns:///localhost:8080");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->scheme, Target::Scheme::kDns);
  EXPECT_EQ(t->dns_host, "localhost");
  EXPECT_EQ(t->dns_port, 8080);
}

TEST(ParseTargetTest, PlainAddressIsStaticWithOneEntry) {
  absl::StatusOr<Target> t = ParseTarget("127.0.0.11:50051");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->scheme, Target::Scheme::kStatic);
  EXPECT_THAT(t->addresses, ElementsAre("127.0.0.11:50051"));

  t = ParseTarget("[::1]:50051");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->scheme, Target::Scheme::kStatic);
  EXPECT_THAT(t->addresses, ElementsAre("[::1]:50051"));
}

struct BadCase {
  std::string target;
  // Every one of these must appear in the error: the offending part, and why.
  std::vector<std::string> mentions;
};

class BadTargetTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadTargetTest, NamesTheBadPartAndListsTheAcceptedForms) {
  const BadCase& c = GetParam();
  absl::StatusOr<Target> t = ParseTarget(c.target);
  ASSERT_FALSE(t.ok()) << "'" << c.target << "' parsed";
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  std::string message(t.status().message());
  EXPECT_THAT(message, HasSubstr(absl::StrCat("'", c.target, "'")));
  for (const std::string& mention : c.mentions) EXPECT_THAT(message, HasSubstr(mention));
  EXPECT_THAT(message, HasSubstr(std::string(kTargetForms)));
}

INSTANTIATE_TEST_SUITE_P(
    All, BadTargetTest,
    ::testing::Values(
        BadCase{"", {"empty"}}, BadCase{"etcd:/x", {"no scheme"}},
        BadCase{"etcd//127.0.0.1:2379/x", {"no scheme"}},
        BadCase{"http://127.0.0.1:80", {"unknown scheme 'http'"}},
        BadCase{"etcd://127.0.0.1:2379", {"key prefix"}},
        BadCase{"etcd://127.0.0.1:2379/", {"key prefix"}},
        BadCase{"etcd://127.0.0.1:2379///", {"key prefix"}},
        BadCase{"etcd:///services/greeter", {"no etcd member"}},
        BadCase{"etcd://127.0.0.1:2379,/services/greeter", {"empty etcd member"}},
        BadCase{"etcd://127.0.0.1:0/services/greeter", {"'127.0.0.1:0'", "port"}},
        BadCase{"etcd://127.0.0.1/services/greeter", {"'127.0.0.1'", "port"}},
        BadCase{"static://", {"no static address"}},
        BadCase{"static://127.0.0.1:1,,127.0.0.1:2", {"empty static address"}},
        BadCase{"static://127.0.0.1:0", {"'127.0.0.1:0'", "1 to 65535"}},
        BadCase{"static://127.0.0.1:70000", {"'127.0.0.1:70000'", "1 to 65535"}},
        BadCase{"static://127.0.0.1:abc", {"'127.0.0.1:abc'", "port"}},
        BadCase{"static://127.0.0.1:50051,127.0.0.2", {"'127.0.0.2'", "port"}},
        BadCase{"127.0.0.1:abc", {"'127.0.0.1:abc'", "port"}},
        BadCase{"127.0.0.1:70000", {"1 to 65535"}}, BadCase{"greeter", {"'greeter'", "port"}},
        // IPv6 without brackets is ambiguous: the last ':' could be part of the address.
        BadCase{"::1:50051", {"brackets"}},
        BadCase{"static://::1:50051", {"'::1:50051'", "brackets"}},
        // IPv6 with broken brackets, or something that is not IPv6 inside them.
        BadCase{"static://[::1:50051", {"'[::1:50051'", "]"}},
        BadCase{"static://[::1]", {"'[::1]'", "port"}},
        BadCase{"static://[not-ipv6]:50051", {"'[not-ipv6]:50051'", "IPv6"}},
        BadCase{"dns://localhost", {"'localhost'", "port"}},
        BadCase{"dns://localhost:0", {"'localhost:0'", "1 to 65535"}},
        BadCase{"dns://", {"no name"}}, BadCase{"dns://a:1,b:2", {"one NAME:PORT"}}));

TEST(ServicePrefixTest, PrependsServices) {
  EXPECT_EQ(ServicePrefix("greeter"), "services/greeter");
  EXPECT_EQ(ServicePrefix("greeter/"), "services/greeter");
}

}  // namespace
}  // namespace sluice::discovery
