#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sluice/balancer/policy.h"
#include "sluice/core/json_reader.h"
#include "sluice/core/log.h"

namespace sluice {

// A reader of one policy's JSON config, its errors named after the policy
// ("prequal: probes: must be an integer from 2 to 16, got 1"). Null and {} mean "all defaults";
// anything but an object, or a field not in `known_fields`, is InvalidArgument naming the field
// and the known ones. Each Read* leaves *out untouched when the field is absent, so callers
// preset the defaults.
absl::StatusOr<JsonReader> ReadPolicyConfig(absl::string_view policy, const nlohmann::json& config,
                                            const std::vector<std::string>& known_fields);

// `config` as policy T's own config type. A config parsed by another factory is a caller bug:
// it is logged and `defaults` are used, so a picker still gets built.
template <typename T>
const T& ConfigAs(const PolicyConfig& config, absl::string_view policy, const T& defaults) {
  if (const T* typed = dynamic_cast<const T*>(&config)) return *typed;
  LogError(policy, ": CreatePicker was given another policy's config; using the defaults");
  return defaults;
}

}  // namespace sluice
