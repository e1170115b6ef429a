#include "sluice/xds/xds_config.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sluice/balancer/config_reader.h"
#include "sluice/core/json_file.h"

namespace sluice::xds {
namespace {

constexpr const char* kRetryableCodes[] = {"cancelled", "deadline-exceeded", "internal",
                                           "resource-exhausted", "unavailable"};

// Reads one JSON object of the config, naming the file, the line and the field path in every
// error. Never throws: types are checked before nlohmann's accessors are used.
class FieldReader {
 public:
  FieldReader(absl::string_view text, const std::string& file, std::vector<std::string> path,
              const nlohmann::json& object)
      : text_(text), file_(file), path_(std::move(path)), object_(object) {}

  absl::Status Error(const std::vector<std::string>& path, absl::string_view why) const {
    const size_t line = LineOfKey(text_, path);
    return absl::InvalidArgumentError(absl::StrCat(file_, ":", line == 0 ? 1 : line, ": ",
                                                   absl::StrJoin(path, "."), ": ", why));
  }
  absl::Status Error(absl::string_view why) const { return Error(path_, why); }

  std::vector<std::string> PathOf(const std::string& field) const {
    std::vector<std::string> path = path_;
    path.push_back(field);
    return path;
  }

  // Every key must be one of `known`.
  absl::Status CheckKnown(const std::vector<std::string>& known) const {
    if (!object_.is_object()) {
      return Error(absl::StrCat("must be a JSON object, got ", JsonForError(object_)));
    }
    for (const auto& [key, value] : object_.items()) {
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        return Error(PathOf(key), absl::StrCat("unknown field (known: ",
                                               absl::StrJoin(known, ", "), ")"));
      }
    }
    return absl::OkStatus();
  }

  const nlohmann::json* Get(const std::string& field) const {
    auto it = object_.find(field);
    return it == object_.end() ? nullptr : &*it;
  }

  absl::Status ReadDuration(const std::string& field, absl::Duration* out) const {
    const nlohmann::json* value = Get(field);
    if (value == nullptr) return absl::OkStatus();
    absl::Duration parsed;
    if (!value->is_string() || !absl::ParseDuration(value->get<std::string>(), &parsed) ||
        parsed <= absl::ZeroDuration()) {
      return Error(PathOf(field), absl::StrCat("must be a positive duration such as \"250ms\" or "
                                               "\"5s\", got ",
                                               JsonForError(*value)));
    }
    *out = parsed;
    return absl::OkStatus();
  }

  absl::Status ReadUint(const std::string& field, uint32_t min, uint32_t max,
                        uint32_t* out) const {
    const nlohmann::json* value = Get(field);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_number_integer() || value->get<int64_t>() < min ||
        value->get<int64_t>() > max) {
      return Error(PathOf(field), absl::StrCat("must be an integer from ", min, " to ", max,
                                               ", got ", JsonForError(*value)));
    }
    *out = static_cast<uint32_t>(value->get<int64_t>());
    return absl::OkStatus();
  }

  FieldReader Child(const std::string& field) const {
    return FieldReader(text_, file_, PathOf(field), *Get(field));
  }

 private:
  absl::string_view text_;
  const std::string& file_;
  std::vector<std::string> path_;
  const nlohmann::json& object_;
};

absl::StatusOr<RetrySettings> ParseRetry(const FieldReader& reader) {
  if (absl::Status s =
          reader.CheckKnown({"on", "max_attempts", "initial_backoff", "max_backoff"});
      !s.ok()) {
    return s;
  }
  RetrySettings retry;
  if (const nlohmann::json* on = reader.Get("on")) {
    const std::string accepted = absl::StrJoin(kRetryableCodes, ", ");
    if (!on->is_array() || on->empty()) {
      return reader.Error(reader.PathOf("on"),
                          absl::StrCat("must be a non-empty list of status names (", accepted,
                                       "), got ", JsonForError(*on)));
    }
    retry.retry_on.clear();
    for (const auto& code : *on) {
      const bool known =
          code.is_string() && std::find(std::begin(kRetryableCodes), std::end(kRetryableCodes),
                                        code.get<std::string>()) != std::end(kRetryableCodes);
      if (!known) {
        return reader.Error(reader.PathOf("on"), absl::StrCat("unknown status ",
                                                               JsonForError(code), " (accepted: ",
                                                               accepted, ")"));
      }
      retry.retry_on.push_back(code.get<std::string>());
    }
  }
  // gRPC clients cap attempts at 5.
  if (absl::Status s = reader.ReadUint("max_attempts", 2, 5, &retry.max_attempts); !s.ok()) {
    return s;
  }
  if (absl::Status s = reader.ReadDuration("initial_backoff", &retry.initial_backoff); !s.ok()) {
    return s;
  }
  if (absl::Status s = reader.ReadDuration("max_backoff", &retry.max_backoff); !s.ok()) return s;
  if (retry.max_backoff < retry.initial_backoff) {
    return reader.Error(reader.PathOf("max_backoff"), "must not be less than initial_backoff");
  }
  return retry;
}

absl::StatusOr<OutlierSettings> ParseOutlier(const FieldReader& reader) {
  if (absl::Status s = reader.CheckKnown({"interval", "base_ejection_time", "max_ejection_time",
                                          "max_ejection_percent", "success_rate",
                                          "failure_percentage"});
      !s.ok()) {
    return s;
  }
  OutlierSettings outlier;
  for (auto [field, out] : {std::pair{"interval", &outlier.interval},
                            std::pair{"base_ejection_time", &outlier.base_ejection_time},
                            std::pair{"max_ejection_time", &outlier.max_ejection_time}}) {
    if (absl::Status s = reader.ReadDuration(field, out); !s.ok()) return s;
  }
  if (absl::Status s = reader.ReadUint("max_ejection_percent", 0, 100,
                                       &outlier.max_ejection_percent);
      !s.ok()) {
    return s;
  }
  if (reader.Get("success_rate") != nullptr) {
    FieldReader sr = reader.Child("success_rate");
    if (absl::Status s =
            sr.CheckKnown({"stdev_factor", "enforcing", "minimum_hosts", "request_volume"});
        !s.ok()) {
      return s;
    }
    OutlierSettings::SuccessRate rate;
    if (absl::Status s = sr.ReadUint("stdev_factor", 1, 1000000, &rate.stdev_factor); !s.ok()) {
      return s;
    }
    if (absl::Status s = sr.ReadUint("enforcing", 0, 100, &rate.enforcing); !s.ok()) return s;
    if (absl::Status s = sr.ReadUint("minimum_hosts", 1, 100000, &rate.minimum_hosts); !s.ok()) {
      return s;
    }
    if (absl::Status s = sr.ReadUint("request_volume", 1, 1000000, &rate.request_volume);
        !s.ok()) {
      return s;
    }
    outlier.success_rate = rate;
  }
  if (reader.Get("failure_percentage") != nullptr) {
    FieldReader fp = reader.Child("failure_percentage");
    if (absl::Status s =
            fp.CheckKnown({"threshold", "enforcing", "minimum_hosts", "request_volume"});
        !s.ok()) {
      return s;
    }
    OutlierSettings::FailurePercentage percentage;
    if (absl::Status s = fp.ReadUint("threshold", 0, 100, &percentage.threshold); !s.ok()) {
      return s;
    }
    if (absl::Status s = fp.ReadUint("enforcing", 0, 100, &percentage.enforcing); !s.ok()) {
      return s;
    }
    if (absl::Status s = fp.ReadUint("minimum_hosts", 1, 100000, &percentage.minimum_hosts);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = fp.ReadUint("request_volume", 1, 1000000, &percentage.request_volume);
        !s.ok()) {
      return s;
    }
    outlier.failure_percentage = percentage;
  }
  if (outlier.max_ejection_time < outlier.base_ejection_time) {
    return reader.Error(reader.PathOf("max_ejection_time"),
                        "must not be less than base_ejection_time");
  }
  return outlier;
}

absl::StatusOr<ServiceSettings> ParseSettings(const FieldReader& reader) {
  if (absl::Status s = reader.CheckKnown({"timeout", "retry", "outlier_detection"}); !s.ok()) {
    return s;
  }
  ServiceSettings settings;
  if (reader.Get("timeout") != nullptr) {
    absl::Duration timeout;
    if (absl::Status s = reader.ReadDuration("timeout", &timeout); !s.ok()) return s;
    settings.timeout = timeout;
  }
  if (reader.Get("retry") != nullptr) {
    absl::StatusOr<RetrySettings> retry = ParseRetry(reader.Child("retry"));
    if (!retry.ok()) return retry.status();
    settings.retry = *retry;
  }
  if (reader.Get("outlier_detection") != nullptr) {
    absl::StatusOr<OutlierSettings> outlier = ParseOutlier(reader.Child("outlier_detection"));
    if (!outlier.ok()) return outlier.status();
    settings.outlier_detection = *outlier;
  }
  return settings;
}

}  // namespace

ServiceSettings XdsConfig::For(const std::string& service) const {
  auto it = services.find(service);
  if (it == services.end()) return defaults;
  ServiceSettings merged = it->second;
  if (!merged.timeout) merged.timeout = defaults.timeout;
  if (!merged.retry) merged.retry = defaults.retry;
  if (!merged.outlier_detection) merged.outlier_detection = defaults.outlier_detection;
  return merged;
}

absl::StatusOr<XdsConfig> ParseXdsConfig(absl::string_view text, const std::string& file_name) {
  absl::StatusOr<nlohmann::json> root = ParseJsonFile(text, file_name);
  if (!root.ok()) return root.status();
  if (!root->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ":1: the top level must be a JSON object with \"default\" "
                                "and/or \"services\""));
  }
  FieldReader top(text, file_name, {}, *root);
  XdsConfig config;
  for (const auto& [key, value] : root->items()) {
    if (key == "default") {
      absl::StatusOr<ServiceSettings> settings = ParseSettings(top.Child("default"));
      if (!settings.ok()) return settings.status();
      config.defaults = *settings;
    } else if (key == "services") {
      FieldReader services = top.Child("services");
      if (!value.is_object()) {
        return services.Error("must be an object of service name -> settings");
      }
      for (const auto& [service, settings_json] : value.items()) {
        absl::StatusOr<ServiceSettings> settings = ParseSettings(services.Child(service));
        if (!settings.ok()) return settings.status();
        config.services[service] = *settings;
      }
    } else {
      return top.Error({key}, "unknown field (known: default, services)");
    }
  }
  return config;
}

}  // namespace sluice::xds
