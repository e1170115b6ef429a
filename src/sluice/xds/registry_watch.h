#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sluice/discovery/discovery.h"
#include "sluice/xds/resources.h"
#include "sluice/xds/xds_config.h"

namespace sluice::xds {

// Watches each named service's endpoints in the etcd registry and reports every service's
// resources on each change. While etcd is unreachable, the last known endpoints stay in force.
class RegistryWatch {
 public:
  // Called serially with every service's settings and current endpoints.
  using ChangeCallback = std::function<void(const std::map<std::string, ServiceResources>&)>;

  // `etcd_members` is "host:port,..."; each service is read from
  // <members>/<ServicePrefix(service)>.
  static absl::StatusOr<std::unique_ptr<RegistryWatch>> Start(
      const std::string& etcd_members, const std::vector<std::string>& services,
      const XdsConfig& config, discovery::DiscoveryOptions options, ChangeCallback on_change);
  ~RegistryWatch();

 private:
  RegistryWatch() = default;

  std::mutex mu_;  // serializes reports; held while on_change_ runs
  std::map<std::string, ServiceResources> services_;
  ChangeCallback on_change_;
  std::vector<std::unique_ptr<discovery::Discovery>> discoveries_;
};

}  // namespace sluice::xds
