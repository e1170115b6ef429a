#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sluice::xds {

// What a route retries, as gRPC clients honour it (gRFC A44).
struct RetrySettings {
  // gRPC status names in xDS spelling: cancelled, deadline-exceeded, internal,
  // resource-exhausted, unavailable.
  std::vector<std::string> retry_on = {"unavailable"};
  uint32_t max_attempts = 2;  // the first attempt included; gRPC caps it at 5
  absl::Duration initial_backoff = absl::Milliseconds(25);
  absl::Duration max_backoff = absl::Milliseconds(250);
};

// Outlier detection as gRPC clients honour it (gRFC A50). Unset fields take gRPC's defaults.
struct OutlierSettings {
  struct SuccessRate {
    uint32_t stdev_factor = 1900;  // in thousandths
    uint32_t enforcing = 100;      // percent
    uint32_t minimum_hosts = 5;
    uint32_t request_volume = 100;
  };
  struct FailurePercentage {
    uint32_t threshold = 85;  // percent
    uint32_t enforcing = 100;
    uint32_t minimum_hosts = 5;
    uint32_t request_volume = 50;
  };
  absl::Duration interval = absl::Seconds(10);
  absl::Duration base_ejection_time = absl::Seconds(30);
  absl::Duration max_ejection_time = absl::Seconds(300);
  uint32_t max_ejection_percent = 10;
  std::optional<SuccessRate> success_rate;
  std::optional<FailurePercentage> failure_percentage;
};

// One service's settings; what is absent is not sent, and clients use their defaults.
struct ServiceSettings {
  // An upper bound on each call's deadline (RouteAction.max_stream_duration).
  std::optional<absl::Duration> timeout;
  std::optional<RetrySettings> retry;
  std::optional<OutlierSettings> outlier_detection;
};

// `sluice xds --config FILE`:
//   {"default": SETTINGS, "services": {"greeter": SETTINGS, ...}}
// SETTINGS: {"timeout": "5s",
//            "retry": {"on": ["unavailable"], "max_attempts": 3, "initial_backoff": "25ms",
//                      "max_backoff": "250ms"},
//            "outlier_detection": {"interval": "10s", "base_ejection_time": "30s",
//                                  "max_ejection_time": "300s", "max_ejection_percent": 10,
//                                  "success_rate": {"stdev_factor": 1900, "enforcing": 100,
//                                                   "minimum_hosts": 5, "request_volume": 100},
//                                  "failure_percentage": {"threshold": 85, "enforcing": 100,
//                                                         "minimum_hosts": 5,
//                                                         "request_volume": 50}}}
// A service's own "timeout", "retry" or "outlier_detection" replaces the default's whole.
struct XdsConfig {
  ServiceSettings defaults;
  std::map<std::string, ServiceSettings> services;

  ServiceSettings For(const std::string& service) const;
};

// Errors read "FILE:LINE: FIELD.PATH: what is wrong (what is accepted)".
absl::StatusOr<XdsConfig> ParseXdsConfig(absl::string_view text, const std::string& file_name);

}  // namespace sluice::xds
