#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sluice {

// `value` as compact JSON for an error message, cut at 80 characters.
std::string JsonForError(const nlohmann::json& value);

// "routes[1].tls.ca": the path of a value, object keys joined by dots, array elements as [i].
std::string JsonPathText(const std::vector<std::string>& path);

// Reads one JSON value of a configuration: the proxy's route file, the xDS server's settings
// file, a balancing policy's config. Every type is checked before nlohmann's accessors run
// (they throw), so a wrong value is an InvalidArgument naming where it is:
//   "<origin>[:LINE]: <path>: <why>", e.g. "routes.json:7: routes[1].max_attempts: must be ..."
// The origin is a file name (with its text, for the line) or a name such as a policy's.
// A field that is absent or JSON null keeps the caller's default.
class JsonReader {
 public:
  struct Origin {
    std::string name;
    absl::string_view text;  // the file's text, for line numbers; empty for none
  };

  // `value` (and `origin.text`) must outlive the reader and its children.
  JsonReader(Origin origin, const nlohmann::json& value, std::vector<std::string> path = {});

  // InvalidArgument about this value, or about one field of it.
  absl::Status Error(absl::string_view why) const;
  absl::Status FieldError(absl::string_view field, absl::string_view why) const;

  // This value must be a JSON object (or null, when `null_is_empty`) whose keys are all in
  // `known`.
  absl::Status CheckObject(const std::vector<std::string>& known, bool null_is_empty = false) const;

  // The field's value; null when it is absent, is JSON null, or this value is not an object.
  const nlohmann::json* Get(absl::string_view field) const;

  // An integer in [min, max]; 4.0 counts as one (JSON has one number type), 4.5 does not.
  absl::Status ReadInt(absl::string_view field, int64_t min, int64_t max, int64_t* out) const;
  template <typename T>
  absl::Status ReadInt(absl::string_view field, int64_t min, int64_t max, T* out) const {
    int64_t value = static_cast<int64_t>(*out);
    absl::Status status = ReadInt(field, min, max, &value);
    if (status.ok()) *out = static_cast<T>(value);
    return status;
  }
  absl::Status ReadDouble(absl::string_view field, double min, double max, double* out) const;
  // A duration string such as "250ms", "1.5s" or "2m" (absl::ParseDuration), finite and > 0.
  absl::Status ReadPositiveDuration(absl::string_view field, absl::Duration* out) const;
  absl::Status ReadString(absl::string_view field, std::string* out) const;
  absl::Status ReadBool(absl::string_view field, bool* out) const;
  absl::Status ReadStringList(absl::string_view field, std::vector<std::string>* out) const;

  // A reader of one field of this object, or of one element of this array; of JSON null when
  // there is none.
  JsonReader Child(absl::string_view field) const;
  JsonReader Element(size_t index) const;

  const nlohmann::json& value() const { return value_; }
  const std::vector<std::string>& path() const { return path_; }
  // "<origin>[:LINE]: <path>", the prefix of this value's errors.
  std::string Where() const { return WhereOf(path_); }

 private:
  std::vector<std::string> PathOf(absl::string_view field) const;
  std::string WhereOf(const std::vector<std::string>& path) const;
  absl::Status ErrorAt(const std::vector<std::string>& path, absl::string_view why) const;

  Origin origin_;
  const nlohmann::json& value_;
  std::vector<std::string> path_;
};

}  // namespace sluice
