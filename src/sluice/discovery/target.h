#pragma once

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::discovery {

// Where a service's endpoints come from, parsed from a target string:
//   etcd://127.0.0.1:2379[,127.0.0.1:22379]/services/greeter   (prefix after the first '/')
//   static://127.0.0.11:50051,127.0.0.12:50051
//   dns://greeter.default.svc:50051   (every A/AAAA record, re-resolved periodically)
//   127.0.0.11:50051                  (a plain address: shorthand for static:// with one entry)
struct Target {
  enum class Scheme { kEtcd, kStatic, kDns };
  Scheme scheme = Scheme::kStatic;
  std::string text;                          // the target as given
  std::vector<std::string> etcd_endpoints;   // kEtcd: "host:port" of each member
  std::string prefix;                        // kEtcd: key prefix, always ending in '/'
  std::vector<std::string> addresses;        // kStatic: "host:port" each
  std::string dns_host;                      // kDns
  uint16_t dns_port = 0;                     // kDns
};

// The error message names what was wrong and lists the accepted forms (kTargetForms).
absl::StatusOr<Target> ParseTarget(absl::string_view text);

inline constexpr absl::string_view kTargetForms =
    "accepted targets: etcd://HOST:PORT[,HOST:PORT...]/PREFIX, "
    "static://IP:PORT[,IP:PORT...], dns://NAME:PORT, or a plain IP:PORT";

// The registry prefix of a service name: "greeter" -> "services/greeter".
std::string ServicePrefix(absl::string_view service);

}  // namespace sluice::discovery
