#include "sluice/xds/registry_watch.h"

#include "absl/strings/str_cat.h"
#include "sluice/discovery/target.h"

namespace sluice::xds {

absl::StatusOr<std::unique_ptr<RegistryWatch>> RegistryWatch::Start(
    const std::string& etcd_members, const std::vector<std::string>& services,
    const XdsConfig& config, discovery::DiscoveryOptions options, ChangeCallback on_change) {
  std::unique_ptr<RegistryWatch> watch(new RegistryWatch());
  watch->on_change_ = std::move(on_change);
  for (const std::string& service : services) {
    watch->services_[service].settings = config.For(service);
  }
  for (const std::string& service : services) {
    const std::string target =
        absl::StrCat("etcd://", etcd_members, "/", discovery::ServicePrefix(service));
    auto discovery = discovery::CreateDiscovery(target, options);
    if (!discovery.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("service ", service, ": ", discovery.status().message()));
    }
    watch->discoveries_.push_back(std::move(*discovery));
  }
  for (size_t i = 0; i < services.size(); ++i) {
    RegistryWatch* self = watch.get();
    const std::string service = services[i];
    watch->discoveries_[i]->Start(
        [self, service](const EndpointSet& current, const EndpointSetDiff&) {
          std::lock_guard<std::mutex> lock(self->mu_);
          self->services_[service].endpoints = current;
          self->on_change_(self->services_);
        });
  }
  return watch;
}

RegistryWatch::~RegistryWatch() {
  for (auto& discovery : discoveries_) discovery->Stop();
}

}  // namespace sluice::xds
