#include "sluice/core/json_reader.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sluice/core/json_file.h"

namespace sluice {

std::string JsonForError(const nlohmann::json& value) {
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  constexpr size_t kMaxLength = 80;
  if (text.size() > kMaxLength) text = absl::StrCat(text.substr(0, kMaxLength), "...");
  return text;
}

std::string JsonPathText(const std::vector<std::string>& path) {
  std::string text;
  for (const std::string& step : path) {
    if (!text.empty() && !absl::StartsWith(step, "[")) text += '.';
    text += step;
  }
  return text;
}

JsonReader::JsonReader(Origin origin, const nlohmann::json& value, std::vector<std::string> path)
    : origin_(std::move(origin)), value_(value), path_(std::move(path)) {}

std::vector<std::string> JsonReader::PathOf(absl::string_view field) const {
  std::vector<std::string> path = path_;
  path.emplace_back(field);
  return path;
}

std::string JsonReader::WhereOf(const std::vector<std::string>& path) const {
  std::string where = origin_.name;
  if (!origin_.text.empty()) {
    const size_t line = LineOfKey(origin_.text, path);
    absl::StrAppend(&where, ":", line == 0 ? 1 : line);
  }
  if (!path.empty()) absl::StrAppend(&where, ": ", JsonPathText(path));
  return where;
}

absl::Status JsonReader::ErrorAt(const std::vector<std::string>& path,
                                 absl::string_view why) const {
  return absl::InvalidArgumentError(absl::StrCat(WhereOf(path), ": ", why));
}

absl::Status JsonReader::Error(absl::string_view why) const { return ErrorAt(path_, why); }

absl::Status JsonReader::FieldError(absl::string_view field, absl::string_view why) const {
  return ErrorAt(PathOf(field), why);
}

absl::Status JsonReader::CheckObject(const std::vector<std::string>& known,
                                     bool null_is_empty) const {
  if (null_is_empty && value_.is_null()) return absl::OkStatus();
  if (!value_.is_object()) {
    return Error(absl::StrCat("must be a JSON object, got ", JsonForError(value_)));
  }
  for (const auto& [key, unused] : value_.items()) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    return FieldError(
        key, known.empty()
                 ? "unknown field (no fields are taken here)"
                 : absl::StrCat("unknown field (known: ", absl::StrJoin(known, ", "), ")"));
  }
  return absl::OkStatus();
}

const nlohmann::json* JsonReader::Get(absl::string_view field) const {
  if (!value_.is_object()) return nullptr;
  auto it = value_.find(std::string(field));
  if (it == value_.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status JsonReader::ReadInt(absl::string_view field, int64_t min, int64_t max,
                                 int64_t* out) const {
  const nlohmann::json* value = Get(field);
  if (value == nullptr) return absl::OkStatus();
  auto fail = [&] {
    return FieldError(field, absl::StrCat("must be an integer from ", min, " to ", max, ", got ",
                                          JsonForError(*value)));
  };
  int64_t n;
  if (value->is_number_unsigned()) {
    const uint64_t u = value->get<uint64_t>();
    if (u > static_cast<uint64_t>(max)) return fail();
    n = static_cast<int64_t>(u);
  } else if (value->is_number_integer()) {
    n = value->get<int64_t>();
  } else if (value->is_number_float()) {
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

absl::Status JsonReader::ReadDouble(absl::string_view field, double min, double max,
                                    double* out) const {
  const nlohmann::json* value = Get(field);
  if (value == nullptr) return absl::OkStatus();
  const bool in_range =
      value->is_number() && value->get<double>() >= min && value->get<double>() <= max;
  if (!in_range) {
    return FieldError(field, absl::StrCat("must be a number from ", min, " to ", max, ", got ",
                                          JsonForError(*value)));
  }
  *out = value->get<double>();
  return absl::OkStatus();
}

absl::Status JsonReader::ReadPositiveDuration(absl::string_view field, absl::Duration* out) const {
  const nlohmann::json* value = Get(field);
  if (value == nullptr) return absl::OkStatus();
  absl::Duration parsed;
  if (!value->is_string() || !absl::ParseDuration(value->get_ref<const std::string&>(), &parsed) ||
      parsed <= absl::ZeroDuration() || parsed == absl::InfiniteDuration()) {
    return FieldError(field, absl::StrCat("must be a positive duration such as \"250ms\" or "
                                          "\"10s\", got ",
                                          JsonForError(*value)));
  }
  *out = parsed;
  return absl::OkStatus();
}

absl::Status JsonReader::ReadString(absl::string_view field, std::string* out) const {
  const nlohmann::json* value = Get(field);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_string()) {
    return FieldError(field, absl::StrCat("must be a string, got ", JsonForError(*value)));
  }
  *out = value->get<std::string>();
  return absl::OkStatus();
}

absl::Status JsonReader::ReadBool(absl::string_view field, bool* out) const {
  const nlohmann::json* value = Get(field);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_boolean()) {
    return FieldError(field, absl::StrCat("must be true or false, got ", JsonForError(*value)));
  }
  *out = value->get<bool>();
  return absl::OkStatus();
}

absl::Status JsonReader::ReadStringList(absl::string_view field,
                                        std::vector<std::string>* out) const {
  const nlohmann::json* value = Get(field);
  if (value == nullptr) return absl::OkStatus();
  const bool all_strings =
      value->is_array() && std::all_of(value->begin(), value->end(),
                                       [](const nlohmann::json& v) { return v.is_string(); });
  if (!all_strings) {
    return FieldError(field, absl::StrCat("must be a list of strings, got ", JsonForError(*value)));
  }
  out->clear();
  for (const auto& item : *value) out->push_back(item.get<std::string>());
  return absl::OkStatus();
}

namespace {
// What a reader of a missing field or element reads: its checks then say "got null".
const nlohmann::json& NullJson() {
  static const nlohmann::json null_value;
  return null_value;
}
}  // namespace

JsonReader JsonReader::Child(absl::string_view field) const {
  const nlohmann::json* value = Get(field);
  return JsonReader(origin_, value != nullptr ? *value : NullJson(), PathOf(field));
}

JsonReader JsonReader::Element(size_t index) const {
  const bool exists = value_.is_array() && index < value_.size();
  return JsonReader(origin_, exists ? value_[index] : NullJson(),
                    PathOf(absl::StrCat("[", index, "]")));
}

}  // namespace sluice
