#include "sluice/balancer/policy.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sluice {

PolicyConfig::~PolicyConfig() = default;
PolicyFactory::~PolicyFactory() = default;

void PolicyRegistry::Register(std::unique_ptr<PolicyFactory> factory) {
  std::string name(factory->name());
  factories_[std::move(name)] = std::move(factory);
}

const PolicyFactory* PolicyRegistry::Find(absl::string_view name) const {
  auto it = factories_.find(name);
  return it == factories_.end() ? nullptr : it->second.get();
}

absl::StatusOr<const PolicyFactory*> PolicyRegistry::Lookup(absl::string_view name) const {
  if (const PolicyFactory* factory = Find(name)) return factory;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown load-balancing policy '", name, "'; known policies: ",
                   factories_.empty() ? "(none registered)" : absl::StrJoin(Names(), ", ")));
}

absl::StatusOr<ConfiguredPolicy> PolicyRegistry::Configure(absl::string_view name,
                                                           const nlohmann::json& config) const {
  absl::StatusOr<const PolicyFactory*> factory = Lookup(name);
  if (!factory.ok()) return factory.status();
  absl::StatusOr<std::shared_ptr<const PolicyConfig>> parsed = (*factory)->ParseConfig(config);
  if (!parsed.ok()) return parsed.status();
  return ConfiguredPolicy{*factory, *std::move(parsed)};
}

std::vector<std::string> PolicyRegistry::Names() const {
  std::vector<std::string> names;
  names.reserve(factories_.size());
  for (const auto& [name, factory] : factories_) names.push_back(name);
  return names;
}

}  // namespace sluice
