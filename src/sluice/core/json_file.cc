#include "sluice/core/json_file.h"

#include <utility>

#include "absl/strings/numbers.h"
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

absl::StatusOr<nlohmann::json> ParseJsonFile(absl::string_view text, const std::string& file_name) {
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
  } catch (const nlohmann::json::exception& e) {
    // A number too large for a double ("1e999") is out_of_range, without a position; the
    // message quotes the number, so find it in the text for the line.
    std::string why = e.what();
    if (size_t at = why.find("] "); at != std::string::npos) why = why.substr(at + 2);
    size_t line = 1;
    const size_t open = why.find('\''), close = why.rfind('\'');
    if (open != std::string::npos && close > open) {
      const size_t found = text.find(why.substr(open + 1, close - open - 1));
      if (found != absl::string_view::npos) line = LineColumn(text, found).first;
    }
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ":", line, ": not valid JSON: ", why));
  }
}

namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// The offset where element `index` of the array that opens at or after `at` starts, or npos.
size_t ElementStart(absl::string_view text, size_t at, size_t index) {
  at = text.find('[', at);
  if (at == absl::string_view::npos) return at;
  size_t depth = 0, element = 0;
  bool in_string = false;
  for (size_t i = at; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (depth == 1 && element == index && !IsBlank(c) && c != ',' && c != ']') return i;
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if (c == ']' || c == '}') {
      if (--depth == 0) return absl::string_view::npos;
    } else if (c == ',' && depth == 1) {
      ++element;
    }
  }
  return absl::string_view::npos;
}

}  // namespace

size_t LineOfKey(absl::string_view text, const std::vector<std::string>& path) {
  size_t at = 0;
  for (const std::string& key : path) {
    size_t index = 0;
    if (key.size() > 2 && key.front() == '[' && key.back() == ']' &&
        absl::SimpleAtoi(absl::string_view(key).substr(1, key.size() - 2), &index)) {
      at = ElementStart(text, at, index);
      if (at == absl::string_view::npos) return 0;
      continue;
    }
    // The key as written: quoted and followed (after blanks) by a colon.
    const std::string quoted = absl::StrCat("\"", key, "\"");
    size_t found = text.find(quoted, at);
    while (found != absl::string_view::npos) {
      size_t next = found + quoted.size();
      while (next < text.size() && IsBlank(text[next])) ++next;
      if (next < text.size() && text[next] == ':') break;
      found = text.find(quoted, found + 1);
    }
    if (found == absl::string_view::npos) return 0;
    at = found + quoted.size();
  }
  return path.empty() ? 0 : LineColumn(text, at).first;
}

}  // namespace sluice
