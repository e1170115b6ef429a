// libFuzzer target: configuration files (the proxy's --config routes, `sluice xds --config`,
// and any policy_config object) come from users. Reading them must never crash or throw, and
// every refusal must name the file it is about.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "sluice/balancer/builtin_policies.h"
#include "sluice/core/json_file.h"
#include "sluice/proxy/router.h"
#include "sluice/xds/xds_config.h"

namespace {

void RequireNamesFile(const absl::Status& status) {
  if (!status.ok() && !absl::StartsWith(status.message(), "fuzz.json:")) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  RequireNamesFile(sluice::proxy::ParseRouteConfig(text, "fuzz.json", {}).status());
  RequireNamesFile(sluice::xds::ParseXdsConfig(text, "fuzz.json").status());
  // The same text as each policy's config object: refusals name the policy.
  absl::StatusOr<nlohmann::json> json = sluice::ParseJsonFile(text, "fuzz.json");
  if (!json.ok()) return 0;
  static sluice::PolicyRegistry* registry = [] {
    auto* r = new sluice::PolicyRegistry();
    sluice::RegisterBuiltinPolicies(*r);
    return r;
  }();
  for (const std::string& name : registry->Names()) {
    auto configured = registry->Configure(name, *json);
    if (!configured.ok() && !absl::StartsWith(configured.status().message(), name + ": ")) {
      std::abort();
    }
  }
  return 0;
}
