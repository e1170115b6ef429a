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
       "attempt_timeout": "250ms", "retry_budget_ratio": 0.5, "retry_budget_min": 0,
       "health_check": {"service": "greeter", "enabled": false}}
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
  EXPECT_EQ((*routes)[0].balancer.retry.budget_ratio, 0.5);
  EXPECT_EQ((*routes)[0].balancer.retry.budget_min, 0);
  EXPECT_EQ((*routes)[0].balancer.health_check.service, "greeter");
  EXPECT_FALSE((*routes)[0].balancer.health_check.enabled);
  EXPECT_TRUE((*routes)[0].health_check_enabled_set);
  EXPECT_FALSE((*routes)[1].health_check_enabled_set);
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
  EXPECT_EQ(missing.status().message(), "m.json:1: routes[0]: \"target\" is missing");

  auto unknown = ParseRouteConfig(R"({"routes": [], "rutes": []})", "u.json", {});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().message(), "u.json:1: rutes: unknown field (known: routes, default)");

  for (const char* bad : {R"("soon")", "200", R"("-1s")"}) {
    auto timeout = ParseRouteConfig(
        absl::StrCat(R"({"routes": [{"service": "a.A", "target": "x:1", "attempt_timeout": )", bad,
                     "}]}"),
        "a.json", {});
    ASSERT_FALSE(timeout.ok()) << bad;
    EXPECT_TRUE(
        absl::StrContains(timeout.status().message(),
                          "a.json:1: routes[0].attempt_timeout: must be a positive duration"))
        << timeout.status();
  }

  auto twice = ParseRouteConfig(
      R"({"routes": [{"service": "a.A", "target": "x:1"}, {"service": "a.A", "target": "y:1"}]})",
      "t.json", {});
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.status().message(),
            "t.json:1: routes[1].service: \"a.A\" is routed twice (also by routes[0])");

  // The route's retry fields take the ranges their flags take.
  auto budget = ParseRouteConfig(
      R"({"routes": [{"service": "a.A", "target": "x:1", "retry_budget_min": 100001}]})", "b.json",
      {});
  ASSERT_FALSE(budget.ok());
  EXPECT_EQ(
      budget.status().message(),
      "b.json:1: routes[0].retry_budget_min: must be an integer from 0 to 100000, got 100001");

  auto health = ParseRouteConfig(
      R"({"routes": [{"service": "a.A", "target": "x:1", "health_check": {"enable": true}}]})",
      "h.json", {});
  ASSERT_FALSE(health.ok());
  EXPECT_EQ(health.status().message(),
            "h.json:1: routes[0].health_check.enable: unknown field (known: service, enabled)");

  // The line is the one the wrong value is written on, in the route it belongs to.
  auto on_line = ParseRouteConfig(R"({
  "routes": [
    {"service": "a.A", "target": "x:1", "max_attempts": 3},
    {"service": "b.B",
     "target": "y:1",
     "max_attempts": 30}
  ]
})",
                                  "l.json", {});
  ASSERT_FALSE(on_line.ok());
  EXPECT_EQ(on_line.status().message(),
            "l.json:6: routes[1].max_attempts: must be an integer from 1 to 10, got 30");

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
  EXPECT_EQ((*routes)[0].backend_tls_files.origin, "tls.json:2: routes[0].tls (route for a.A)");
  EXPECT_EQ((*routes)[1].backend_tls, RouteConfig::BackendTls::kOff);
  EXPECT_EQ((*routes)[2].backend_tls, RouteConfig::BackendTls::kInherit);

  for (auto [tls, why] : std::vector<std::pair<std::string, std::string>>{
           {R"(true)", "routes[0].tls: must be false or"},
           {R"({"cert": "c.pem", "key": "k.pem"})", "routes[0].tls: \"ca\" is missing"},
           {R"({"ca": "ca.pem", "cert": "c.pem"})",
            "routes[0].tls: \"cert\" and \"key\" go together"},
           {R"({"ca": "ca.pem", "crt": "c.pem"})",
            "routes[0].tls.crt: unknown field (known: ca, cert, key)"},
           {R"({"ca": 7})", "routes[0].tls.ca: must be a string, got 7"},
           {R"({"ca": ""})", "routes[0].tls.ca: must be a file name"}}) {
    auto bad = ParseRouteConfig(
        absl::StrCat(R"({"routes": [{"service": "a.A", "target": "x:1", "tls": )", tls, "}]}"),
        "bad.json", {});
    ASSERT_FALSE(bad.ok()) << tls;
    EXPECT_TRUE(absl::StartsWith(bad.status().message(), "bad.json:1: routes[0].tls"))
        << bad.status();
    EXPECT_TRUE(absl::StrContains(bad.status().message(), why)) << bad.status();
  }
}

}  // namespace
}  // namespace sluice::proxy
