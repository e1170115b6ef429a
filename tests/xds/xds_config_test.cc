#include "sluice/xds/xds_config.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace sluice::xds {
namespace {

TEST(XdsConfigTest, ReadsDefaultsAndPerServiceSettings) {
  const char* text = R"({
  "default": {"timeout": "5s", "retry": {"on": ["unavailable"], "max_attempts": 3}},
  "services": {
    "greeter": {
      "retry": {"on": ["unavailable", "resource-exhausted"], "max_attempts": 4,
                "initial_backoff": "10ms", "max_backoff": "100ms"},
      "outlier_detection": {"interval": "1s", "base_ejection_time": "5s",
                            "max_ejection_percent": 50,
                            "failure_percentage": {"threshold": 50, "minimum_hosts": 2,
                                                   "request_volume": 10}}
    }
  }
})";
  auto config = ParseXdsConfig(text, "xds.json");
  ASSERT_TRUE(config.ok()) << config.status();
  const ServiceSettings greeter = config->For("greeter");
  ASSERT_TRUE(greeter.timeout.has_value());  // from the default
  EXPECT_EQ(*greeter.timeout, absl::Seconds(5));
  ASSERT_TRUE(greeter.retry.has_value());
  EXPECT_EQ(greeter.retry->max_attempts, 4u);
  EXPECT_EQ(greeter.retry->retry_on,
            (std::vector<std::string>{"unavailable", "resource-exhausted"}));
  EXPECT_EQ(greeter.retry->initial_backoff, absl::Milliseconds(10));
  ASSERT_TRUE(greeter.outlier_detection.has_value());
  EXPECT_EQ(greeter.outlier_detection->interval, absl::Seconds(1));
  EXPECT_EQ(greeter.outlier_detection->max_ejection_percent, 50u);
  EXPECT_FALSE(greeter.outlier_detection->success_rate.has_value());
  ASSERT_TRUE(greeter.outlier_detection->failure_percentage.has_value());
  EXPECT_EQ(greeter.outlier_detection->failure_percentage->threshold, 50u);
  EXPECT_EQ(greeter.outlier_detection->failure_percentage->enforcing, 100u);  // gRPC's default

  const ServiceSettings other = config->For("other");
  ASSERT_TRUE(other.retry.has_value());
  EXPECT_EQ(other.retry->max_attempts, 3u);
  EXPECT_FALSE(other.outlier_detection.has_value());
}

// Each bad file is refused with its line and the field's path.
TEST(XdsConfigTest, ABadFileNamesTheLineAndTheField) {
  struct Case {
    const char* text;
    const char* want;
  };
  const Case cases[] = {
      {"{\n  \"services\": {\n    \"greeter\": {\n      \"timeout\": \"soon\"\n    }\n  }\n}",
       "xds.json:4: services.greeter.timeout: must be a positive duration"},
      {"{\n  \"services\": {\"greeter\": {\n    \"retry\": {\n      \"max_attempts\": 9}}}}",
       "xds.json:4: services.greeter.retry.max_attempts: must be an integer from 2 to 5, got 9"},
      {"{\"default\": {\n\"retry\": {\"on\": [\"unavailable\", \"not-found\"]}}}",
       "xds.json:2: default.retry.on: unknown status \"not-found\""},
      {"{\"default\": {\"timeout\": \"1s\",\n  \"lb_policy\": \"ring_hash\"}}",
       "xds.json:2: default.lb_policy: unknown field (known: timeout, retry, outlier_detection)"},
      {"{\"default\": {\"outlier_detection\": {\n \"failure_percentage\": {\"threshold\": 101}}}}",
       "xds.json:2: default.outlier_detection.failure_percentage.threshold: must be an integer "
       "from 0 to 100"},
      {"{\n\"services\": {\"greeter\": {\"timeout\": \"1s\",}}}", "xds.json:2:"},
      {"{\"routes\": []}", "xds.json:1: routes: unknown field (known: default, services)"},
  };
  for (const Case& c : cases) {
    auto config = ParseXdsConfig(c.text, "xds.json");
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_TRUE(absl::StartsWith(config.status().message(), c.want))
        << "got: " << config.status().message() << "\nwant: " << c.want;
  }
}

}  // namespace
}  // namespace sluice::xds
