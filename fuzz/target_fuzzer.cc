// libFuzzer target: target strings come from flags and config files. Parsing must never crash,
// and an accepted target must be well formed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "sluice/discovery/target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto target = sluice::discovery::ParseTarget(text);
  if (!target.ok()) {
    // Every refusal tells the user what is accepted.
    if (!absl::StrContains(target.status().message(), "accepted targets")) std::abort();
    return 0;
  }
  using Scheme = sluice::discovery::Target::Scheme;
  switch (target->scheme) {
    case Scheme::kEtcd:
      if (target->etcd_endpoints.empty() || !absl::EndsWith(target->prefix, "/")) std::abort();
      break;
    case Scheme::kStatic:
      if (target->addresses.empty()) std::abort();
      break;
    case Scheme::kDns:
      if (target->dns_host.empty() || target->dns_port == 0) std::abort();
      break;
  }
  return 0;
}
