#include "sluice/balancer/config_reader.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sluice {

std::string JsonForError(const nlohmann::json& value) {
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  constexpr size_t kMaxLength = 80;
  if (text.size() > kMaxLength) text = absl::StrCat(text.substr(0, kMaxLength), "...");
  return text;
}

absl::StatusOr<ConfigReader> ConfigReader::Create(absl::string_view policy,
                                                  const nlohmann::json& config,
                                                  std::vector<std::string> known_fields) {
  ConfigReader reader(std::string(policy), config.is_object() ? &config : nullptr);
  if (!config.is_null() && !config.is_object()) {
    return reader.Error(absl::StrCat("config must be a JSON object, got ", JsonForError(config)));
  }
  if (reader.object_ == nullptr) return reader;
  std::sort(known_fields.begin(), known_fields.end());
  for (const auto& [key, value] : reader.object_->items()) {
    if (std::binary_search(known_fields.begin(), known_fields.end(), key)) continue;
    if (known_fields.empty()) {
      return reader.Error(
          absl::StrCat("unknown config field '", key, "'; this policy takes no config fields"));
    }
    return reader.Error(absl::StrCat("unknown config field '", key,
                                     "'; known fields: ", absl::StrJoin(known_fields, ", ")));
  }
  return reader;
}

absl::Status ConfigReader::Error(absl::string_view message) const {
  return absl::InvalidArgumentError(absl::StrCat(policy_, ": ", message));
}

const nlohmann::json* ConfigReader::Get(absl::string_view field) const {
  if (object_ == nullptr) return nullptr;
  auto it = object_->find(std::string(field));
  if (it == object_->end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status ConfigReader::ReadInt(absl::string_view field, int64_t min, int64_t max,
                                   int64_t* out) const {
  const nlohmann::json* value = Get(field);
  if (value == nullptr) return absl::OkStatus();
  auto fail = [&] {
    return Error(absl::StrCat("'", field, "' must be an integer >= ", min, " and <= ", max,
                              ", got ", JsonForError(*value)));
  };
  int64_t n;
  if (value->is_number_unsigned()) {
    const uint64_t u = value->get<uint64_t>();
    if (u > static_cast<uint64_t>(max)) return fail();
    n = static_cast<int64_t>(u);
  } else if (value->is_number_integer()) {
    n = value->get<int64_t>();
  } else if (value->is_number_float()) {
    // JSON has one number type; 4.0 is an integer to a user, 4.5 is not.
    const double d = value->get<double>();
    if (!(d == std::floor(d)) || d < static_cast<double>(min) || d > static_cast<double>(max)) {
      return fail();
    }
    n = static_cast<int64_t>(d);
  } else {
    return fail();
  }
  if (n < min || n > max) return fail();
  *out = n;
  return absl::OkStatus();
}

absl::Status ConfigReader::ReadDouble(absl::string_view field, double min, double max,
                                      double* out) const {
  const nlohmann::json* value = Get(field);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_number()) {
    return Error(absl::StrCat("'", field, "' must be a number >= ", min, " and <= ", max, ", got ",
                              JsonForError(*value)));
  }
  const double d = value->get<double>();
  if (!(d >= min && d <= max)) {
    return Error(absl::StrCat("'", field, "' must be a number >= ", min, " and <= ", max, ", got ",
                              JsonForError(*value)));
  }
  *out = d;
  return absl::OkStatus();
}

absl::Status ConfigReader::ReadPositiveDuration(absl::string_view field,
                                                absl::Duration* out) const {
  const nlohmann::json* value = Get(field);
  if (value == nullptr) return absl::OkStatus();
  absl::Duration d;
  if (!value->is_string() || !absl::ParseDuration(value->get_ref<const std::string&>(), &d) ||
      d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return Error(absl::StrCat("'", field,
                              "' must be a positive duration string such as \"250ms\" or \"10s\", "
                              "got ",
                              JsonForError(*value)));
  }
  *out = d;
  return absl::OkStatus();
}

}  // namespace sluice
