#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sluice/balancer/policy.h"
#include "sluice/core/log.h"

namespace sluice {

// Reads one policy's JSON config with uniform, user-facing errors ("<policy>: 'field' must be
// ..., got <value>"). Never throws: types are checked before any nlohmann accessor is used.
// Each Read* leaves *out untouched when the field is absent, so callers preset the defaults.
class ConfigReader {
 public:
  // Null and {} mean "all defaults". Anything but an object, or an object with a field not in
  // `known_fields`, is InvalidArgument naming the field and the known ones.
  static absl::StatusOr<ConfigReader> Create(absl::string_view policy, const nlohmann::json& config,
                                             std::vector<std::string> known_fields);

  absl::Status ReadInt(absl::string_view field, int64_t min, int64_t max, int64_t* out) const;
  absl::Status ReadDouble(absl::string_view field, double min, double max, double* out) const;
  // A duration string such as "30ms", "1.5s" or "2m" (absl::ParseDuration), > 0.
  absl::Status ReadPositiveDuration(absl::string_view field, absl::Duration* out) const;

  // "<policy>: <message>" as InvalidArgument, for checks across fields.
  absl::Status Error(absl::string_view message) const;

 private:
  ConfigReader(std::string policy, const nlohmann::json* object)
      : policy_(std::move(policy)), object_(object) {}
  // The field's value, or null when absent.
  const nlohmann::json* Get(absl::string_view field) const;

  std::string policy_;
  const nlohmann::json* object_;  // null when the config was null; else a JSON object
};

// `config` as policy T's own config type. A config parsed by another factory is a caller bug:
// it is logged and `defaults` are used, so a picker still gets built.
template <typename T>
const T& ConfigAs(const PolicyConfig& config, absl::string_view policy, const T& defaults) {
  if (const T* typed = dynamic_cast<const T*>(&config)) return *typed;
  LogError(policy, ": CreatePicker was given another policy's config; using the defaults");
  return defaults;
}

// JSON text of `value` for error messages; never throws, even on invalid UTF-8.
std::string JsonForError(const nlohmann::json& value);

}  // namespace sluice
