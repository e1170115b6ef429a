#include "sluice/proxy/router.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sluice::proxy {
namespace {

TEST(ServiceOfPathTest, TakesTheServiceOfAGrpcPath) {
  EXPECT_EQ(ServiceOfPath("/helloworld.Greeter/SayHello"), "helloworld.Greeter");
  EXPECT_EQ(ServiceOfPath("/Greeter/SayHello"), "Greeter");
  EXPECT_EQ(ServiceOfPath("/nomethod"), "");
  EXPECT_EQ(ServiceOfPath("relative/x"), "");
  EXPECT_EQ(ServiceOfPath(""), "");
}

TEST(RouteConfigTest, ParsesRoutesAndDefaultOverBaseOptions) {
  client::BalancerOptions base;
  base.policy = "round_robin";
  base.retry.max_attempts = 2;
  auto routes = ParseRouteConfig(R"({
    "routes": [
      {"service": "helloworld.Greeter", "target": "static://127.0.0.11:1,127.0.0.12:1",
       "policy": "least_request", "policy_config": {"choice_count": 3},
       "idempotent": ["/helloworld.Greeter/SayHello"], "max_attempts": 4,
       "attempt_timeout": "250ms"}
    ],
    "default": {"target": "127.0.0.13:1"}
  })",
                                 "routes.json", base);
  ASSERT_TRUE(routes.ok()) << routes.status();
  ASSERT_EQ(routes->size(), 2u);
  EXPECT_EQ((*routes)[0].service, "helloworld.Greeter");
  EXPECT_EQ((*routes)[0].balancer.policy, "least_request");
  EXPECT_EQ((*routes)[0].balancer.policy_config["choice_count"], 3);
  EXPECT_EQ((*routes)[0].balancer.retry.max_attempts, 4);
  EXPECT_EQ((*routes)[0].balancer.retry.attempt_timeout, absl::Milliseconds(250));
  EXPECT_EQ((*routes)[0].balancer.retry.idempotent_methods.size(), 1u);
  EXPECT_EQ((*routes)[1].service, "");
  EXPECT_EQ((*routes)[1].balancer.target, "127.0.0.13:1");
  EXPECT_EQ((*routes)[1].balancer.policy, "round_robin");  // from base
  EXPECT_EQ((*routes)[1].balancer.retry.max_attempts, 2);
  EXPECT_EQ((*routes)[1].balancer.retry.attempt_timeout, absl::InfiniteDuration());

  auto router = Router::Create(std::move(*routes));
  ASSERT_TRUE(router.ok()) << router.status();
  client::Balancer* greeter = (*router)->ForPath("/helloworld.Greeter/SayHello");
  client::Balancer* other = (*router)->ForPath("/grpc.testing.TestService/EmptyCall");
  ASSERT_NE(greeter, nullptr);
  ASSERT_NE(other, nullptr);
  EXPECT_NE(greeter, other);
  EXPECT_TRUE(greeter->IsIdempotent("/helloworld.Greeter/SayHello"));
  EXPECT_EQ(other->options().target, "127.0.0.13:1");
}

TEST(RouteConfigTest, WithoutDefaultUnknownServicesHaveNoRoute) {
  auto routes = ParseRouteConfig(R"({"routes": [{"service": "a.A", "target": "127.0.0.11:1"}]})",
                                 "r.json", {});
  ASSERT_TRUE(routes.ok()) << routes.status();
  auto router = Router::Create(std::move(*routes));
  ASSERT_TRUE(router.ok());
  EXPECT_NE((*router)->ForPath("/a.A/M"), nullptr);
  EXPECT_EQ((*router)->ForPath("/b.B/M"), nullptr);
}

TEST(RouteConfigTest, ErrorsNameLineOrRouteAndReason) {
  auto syntax =
      ParseRouteConfig("{\n  \"routes\": [\n    {\"service\": \"a.A\",, }\n  ]\n}", "bad.json", {});
  ASSERT_FALSE(syntax.ok());
  EXPECT_TRUE(absl::StartsWith(syntax.status().message(), "bad.json:3:")) << syntax.status();

  auto missing = ParseRouteConfig(R"({"routes": [{"service": "a.A"}]})", "m.json", {});
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "route 1 (service a.A)"));
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "\"target\" is missing"));

  auto unknown = ParseRouteConfig(R"({"routes": [], "rutes": []})", "u.json", {});
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "unknown field \"rutes\""));

  for (const char* bad : {R"("soon")", "200", R"("-1s")"}) {
    auto timeout = ParseRouteConfig(
        absl::StrCat(R"({"routes": [{"service": "a.A", "target": "x:1", "attempt_timeout": )", bad,
                     "}]}"),
        "a.json", {});
    ASSERT_FALSE(timeout.ok()) << bad;
    EXPECT_TRUE(absl::StrContains(timeout.status().message(), "\"attempt_timeout\" must be"))
        << timeout.status();
  }

  auto twice = ParseRouteConfig(
      R"({"routes": [{"service": "a.A", "target": "x:1"}, {"service": "a.A", "target": "y:1"}]})",
      "t.json", {});
  ASSERT_FALSE(twice.ok());
  EXPECT_TRUE(absl::StrContains(twice.status().message(), "routed twice"));

  auto routes = ParseRouteConfig(R"({"routes": [{"service": "a.A", "target": "127.0.0.11:1",
                                                 "policy": "bogus"}]})",
                                 "p.json", {});
  ASSERT_TRUE(routes.ok());
  auto router = Router::Create(std::move(*routes));
  ASSERT_FALSE(router.ok());
  EXPECT_TRUE(absl::StrContains(router.status().message(), "route for a.A")) << router.status();
  EXPECT_TRUE(absl::StrContains(router.status().message(), "bogus"));
}

TEST(RouteConfigTest, TlsPerRouteIsOffFilesOrInherited) {
  auto routes = ParseRouteConfig(R"({"routes": [
      {"service": "a.A", "target": "x:1", "tls": {"ca": "ca.pem", "cert": "c.pem", "key": "k.pem"}},
      {"service": "b.B", "target": "x:1", "tls": false},
      {"service": "c.C", "target": "x:1"}]})",
                                 "tls.json", {});
  ASSERT_TRUE(routes.ok()) << routes.status();
  ASSERT_EQ(routes->size(), 3u);
  EXPECT_EQ((*routes)[0].backend_tls, RouteConfig::BackendTls::kFiles);
  EXPECT_EQ((*routes)[0].backend_tls_files.ca, "ca.pem");
  EXPECT_EQ((*routes)[0].backend_tls_files.cert, "c.pem");
  EXPECT_EQ((*routes)[0].backend_tls_files.key, "k.pem");
  EXPECT_TRUE(absl::StrContains((*routes)[0].backend_tls_files.origin, "route 1 (service a.A)"));
  EXPECT_EQ((*routes)[1].backend_tls, RouteConfig::BackendTls::kOff);
  EXPECT_EQ((*routes)[2].backend_tls, RouteConfig::BackendTls::kInherit);

  for (auto [tls, why] : std::vector<std::pair<std::string, std::string>>{
           {R"(true)", "\"tls\" must be false or"},
           {R"({"cert": "c.pem", "key": "k.pem"})", "\"tls\".\"ca\" is missing"},
           {R"({"ca": "ca.pem", "cert": "c.pem"})", "go together"},
           {R"({"ca": "ca.pem", "crt": "c.pem"})", "unknown field \"tls\".\"crt\""},
           {R"({"ca": 7})", "\"tls\".\"ca\" must be a file name"}}) {
    auto bad = ParseRouteConfig(
        absl::StrCat(R"({"routes": [{"service": "a.A", "target": "x:1", "tls": )", tls, "}]}"),
        "bad.json", {});
    ASSERT_FALSE(bad.ok()) << tls;
    EXPECT_TRUE(absl::StrContains(bad.status().message(), "bad.json: route 1 (service a.A)"))
        << bad.status();
    EXPECT_TRUE(absl::StrContains(bad.status().message(), why)) << bad.status();
  }
}

}  // namespace
}  // namespace sluice::proxy
