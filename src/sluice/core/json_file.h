#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice {

// Parses a configuration file's text. On malformed JSON the error reads
// "FILE:LINE:COLUMN: not valid JSON: why".
absl::StatusOr<nlohmann::json> ParseJsonFile(absl::string_view text, const std::string& file_name);

// The line on which the value at `path` (object keys from the top level down, "[i]" for an array
// element) is written, found by searching the text for each key in turn after the previous one;
// 0 if not found. For error messages about a value that parsed as JSON but is wrong for its field.
size_t LineOfKey(absl::string_view text, const std::vector<std::string>& path);

}  // namespace sluice
