#include "sluice/core/json_file.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace sluice {
namespace {

// Line and column (1-based) of byte `offset` in `text`.
std::pair<size_t, size_t> LineColumn(absl::string_view text, size_t offset) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

}  // namespace

absl::StatusOr<nlohmann::json> ParseJsonFile(absl::string_view text,
                                             const std::string& file_name) {
  // The parser reports errors by exception; they stop here, at the module's edge.
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    const auto [line, column] = LineColumn(text, e.byte > 0 ? e.byte - 1 : 0);
    std::string why = e.what();
    // nlohmann's message repeats the position; keep its reason only.
    if (size_t at = why.find(": "); at != std::string::npos) why = why.substr(at + 2);
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ":", line, ":", column, ": not valid JSON: ", why));
  }
}

size_t LineOfKey(absl::string_view text, const std::vector<std::string>& path) {
  size_t at = 0;
  for (const std::string& key : path) {
    // The key as written: quoted and followed (after blanks) by a colon.
    const std::string quoted = absl::StrCat("\"", key, "\"");
    size_t found = text.find(quoted, at);
    while (found != absl::string_view::npos) {
      size_t next = found + quoted.size();
      while (next < text.size() && (text[next] == ' ' || text[next] == '\t' ||
                                    text[next] == '\n' || text[next] == '\r')) {
        ++next;
      }
      if (next < text.size() && text[next] == ':') break;
      found = text.find(quoted, found + 1);
    }
    if (found == absl::string_view::npos) return 0;
    at = found + quoted.size();
  }
  return path.empty() ? 0 : LineColumn(text, at).first;
}

}  // namespace sluice
