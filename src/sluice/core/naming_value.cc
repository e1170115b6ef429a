#include "sluice/core/naming_value.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "sluice/core/address.h"

namespace sluice {
namespace {

using Json = nlohmann::json;

// The metadata object Sluice writes: every raw field, with the typed fields on top.
Json MetadataObject(const Endpoint& endpoint) {
  Json object = Json::object();
  for (const auto& [name, json_text] : endpoint.metadata) {
    Json value = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
    object[name] = value.is_discarded() ? Json(json_text) : value;
  }
  if (endpoint.weight != Endpoint::kDefaultWeight || object.contains("weight")) {
    object["weight"] = endpoint.weight;
  }
  if (!endpoint.zone.empty()) object["zone"] = endpoint.zone;
  if (!endpoint.version.empty()) object["version"] = endpoint.version;
  if (endpoint.draining) object["draining"] = true;
  return object;
}

// `context` names where the value came from ("registry key 'k'", "--meta weight=x").
absl::Status ApplyTypedField(absl::string_view context, const std::string& name, const Json& value,
                             Endpoint& endpoint) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(context, ": metadata field '",
                                                   name, "' ", why));
  };
  if (name == "weight") {
    uint64_t weight = 0;
    if (value.is_number_unsigned()) {
      weight = value.get<uint64_t>();
    } else if (value.is_number_integer()) {
      return bad("must not be negative");
    } else if (value.is_number_float()) {
      double d = value.get<double>();
      if (d < 0 || d != static_cast<double>(static_cast<uint64_t>(d))) {
        return bad("must be a whole number >= 0");
      }
      weight = static_cast<uint64_t>(d);
    } else if (!value.is_string() || !absl::SimpleAtoi(value.get<std::string>(), &weight)) {
      return bad("must be a whole number >= 0, e.g. {\"weight\":100}");
    }
    if (weight > UINT32_MAX) return bad("is larger than 4294967295");
    endpoint.weight = static_cast<uint32_t>(weight);
  } else if (name == "zone" || name == "version") {
    if (!value.is_string()) return bad("must be a string");
    (name == "zone" ? endpoint.zone : endpoint.version) = value.get<std::string>();
  } else if (name == "draining") {
    if (!value.is_boolean()) return bad("must be true or false");
    endpoint.draining = value.get<bool>();
  }
  return absl::OkStatus();
}

}  // namespace

std::string GoJsonQuote(absl::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back('"');
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      default: break;
    }
    if (c < 0x20 || c == '<' || c == '>' || c == '&') {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else if (c == 0xE2 && i + 2 < text.size() && static_cast<unsigned char>(text[i + 1]) == 0x80 &&
               (static_cast<unsigned char>(text[i + 2]) == 0xA8 ||
                static_cast<unsigned char>(text[i + 2]) == 0xA9)) {
      // U+2028 and U+2029: Go escapes them so the JSON is also valid JavaScript.
      out += static_cast<unsigned char>(text[i + 2]) == 0xA8 ? "\\u2028" : "\\u2029";
      i += 2;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  return out;
}

std::string EncodeNamingValue(const Endpoint& endpoint) {
  Json metadata = MetadataObject(endpoint);
  std::string metadata_text =
      metadata.empty() ? "null" : GoJsonQuote(metadata.dump(-1, ' ', false));
  // Field order and spacing are fixed: they are what Go's encoding/json writes for the struct.
  return absl::StrCat("{\"Op\":0,\"Addr\":", GoJsonQuote(endpoint.address),
                      ",\"Metadata\":", metadata_text, "}");
}

absl::StatusOr<Endpoint> ParseNamingValue(absl::string_view key, absl::string_view value) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "registry key '", key, "': ", why,
        "; expected a value like {\"Op\":0,\"Addr\":\"127.0.0.11:50051\",\"Metadata\":null}"));
  };
  if (value.empty()) return bad("empty value");
  Json doc = Json::parse(value.begin(), value.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return bad("value is not valid JSON");
  if (!doc.is_object()) return bad("value is JSON but not an object");

  auto op = doc.find("Op");
  if (op != doc.end()) {
    if (!op->is_number_integer()) return bad("\"Op\" is not a number");
    int64_t op_value = op->get<int64_t>();
    if (op_value == 1) {
      return absl::NotFoundError(absl::StrCat("registry key '", key, "': a delete (Op 1)"));
    }
    if (op_value != 0) return bad(absl::StrCat("\"Op\" is ", op_value, ", not 0 (add)"));
  }
  auto addr = doc.find("Addr");
  if (addr == doc.end()) return bad("no \"Addr\" field");
  if (!addr->is_string()) return bad("\"Addr\" is not a string");
  Endpoint endpoint;
  endpoint.address = addr->get<std::string>();
  if (auto parsed = ParseHostPort(endpoint.address); !parsed.ok()) {
    return bad(parsed.status().message());
  }

  auto metadata = doc.find("Metadata");
  if (metadata == doc.end() || metadata->is_null()) return endpoint;
  Json object;
  if (metadata->is_object()) {
    object = *metadata;
  } else if (metadata->is_string()) {
    const std::string& text = metadata->get_ref<const std::string&>();
    Json inner = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (inner.is_object()) {
      object = std::move(inner);
    } else {
      // Go clients may store any string; keep it, it just carries no typed fields.
      endpoint.metadata["raw"] = metadata->dump();
      return endpoint;
    }
  } else {
    endpoint.metadata["raw"] = metadata->dump();
    return endpoint;
  }
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (absl::Status s = ApplyTypedField(absl::StrCat("registry key '", key, "'"), it.key(), it.value(), endpoint); !s.ok()) return s;
    endpoint.metadata[it.key()] = it.value().dump();
  }
  return endpoint;
}

absl::Status ApplyMetadataFlag(absl::string_view flag, Endpoint& endpoint) {
  size_t eq = flag.find('=');
  if (eq == absl::string_view::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad metadata '", flag, "': expected NAME=VALUE, e.g. weight=100 or zone=a"));
  }
  std::string name(flag.substr(0, eq));
  std::string text(flag.substr(eq + 1));
  Json value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded() || value.is_object() || value.is_array() || value.is_string()) {
    value = Json(text);
  }
  if (absl::Status s = ApplyTypedField(absl::StrCat("--meta ", flag), name, value, endpoint);
      !s.ok()) {
    return s;
  }
  endpoint.metadata[name] = value.dump();
  return absl::OkStatus();
}

}  // namespace sluice
