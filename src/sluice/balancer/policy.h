#pragma once

#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sluice/balancer/picker.h"
#include "sluice/core/random.h"

namespace sluice {

// One policy's parsed configuration. Opaque to everyone but the factory that parsed it.
class PolicyConfig {
 public:
  virtual ~PolicyConfig();
};

// A load-balancing policy: a name, a config parser and a picker builder. Stateless and
// thread-safe; the balancer calls CreatePicker (on its own thread) on every endpoint-set change.
class PolicyFactory {
 public:
  virtual ~PolicyFactory();

  virtual absl::string_view name() const = 0;

  // Parses the policy's JSON config. Null or an empty object gives the defaults. A field that is
  // unknown, of the wrong type or out of range is InvalidArgument naming the policy, the field
  // and what is allowed.
  virtual absl::StatusOr<std::shared_ptr<const PolicyConfig>> ParseConfig(
      const nlohmann::json& config) const = 0;

  // Builds a picker over `endpoints`; PickResult indexes refer to this vector. `config` must come
  // from this factory's ParseConfig (any other config is logged and replaced by the defaults).
  // `random` only seeds per-picker choices, such as round robin's starting point, so that many
  // clients built at the same moment do not all start on the same endpoint.
  virtual std::unique_ptr<Picker> CreatePicker(std::vector<PickerEndpoint> endpoints,
                                               const PolicyConfig& config,
                                               Random& random) const = 0;

  // Whether its pickers read the backends' ORCA load reports (EndpointStats::OnLoadReport).
  // Callers decode the reports at each call's end only for such a policy: a few thousand
  // instructions a call that no other policy needs.
  virtual bool UsesLoadReports() const { return false; }
};

// A factory together with a config it parsed: what a balancer keeps to rebuild pickers.
struct ConfiguredPolicy {
  const PolicyFactory* factory = nullptr;
  std::shared_ptr<const PolicyConfig> config;

  std::unique_ptr<Picker> CreatePicker(std::vector<PickerEndpoint> endpoints,
                                       Random& random) const {
    return factory->CreatePicker(std::move(endpoints), *config, random);
  }
  bool uses_load_reports() const { return factory->UsesLoadReports(); }
};

// The policies a process knows, by name. Built once at startup (RegisterBuiltinPolicies plus any
// of the application's own), then only read: reads are safe from any thread once registration is
// done. Not a global: whoever builds balancers owns one and passes it on.
class PolicyRegistry {
 public:
  PolicyRegistry() = default;
  PolicyRegistry(const PolicyRegistry&) = delete;
  PolicyRegistry& operator=(const PolicyRegistry&) = delete;

  // Registering a name twice replaces the earlier factory, so an application may override a
  // built-in policy with its own.
  void Register(std::unique_ptr<PolicyFactory> factory);

  // Null when no policy has that name.
  const PolicyFactory* Find(absl::string_view name) const;
  // InvalidArgument "unknown load-balancing policy 'x'; known policies: a, b, c".
  absl::StatusOr<const PolicyFactory*> Lookup(absl::string_view name) const;
  // Lookup plus ParseConfig.
  absl::StatusOr<ConfiguredPolicy> Configure(absl::string_view name,
                                             const nlohmann::json& config) const;

  // Sorted.
  std::vector<std::string> Names() const;

 private:
  std::map<std::string, std::unique_ptr<PolicyFactory>, std::less<>> factories_;
};

}  // namespace sluice
