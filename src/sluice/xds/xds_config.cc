#include "sluice/xds/xds_config.h"

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sluice/core/json_file.h"
#include "sluice/core/json_reader.h"

namespace sluice::xds {
namespace {

constexpr const char* kRetryableCodes[] = {"cancelled", "deadline-exceeded", "internal",
                                           "resource-exhausted", "unavailable"};

absl::StatusOr<RetrySettings> ParseRetry(const JsonReader& reader) {
  if (absl::Status s = reader.CheckObject({"on", "max_attempts", "initial_backoff", "max_backoff"});
      !s.ok()) {
    return s;
  }
  RetrySettings retry;
  if (const nlohmann::json* on = reader.Get("on")) {
    const std::string accepted = absl::StrJoin(kRetryableCodes, ", ");
    if (!on->is_array() || on->empty()) {
      return reader.FieldError("on", absl::StrCat("must be a non-empty list of status names (",
                                                  accepted, "), got ", JsonForError(*on)));
    }
    retry.retry_on.clear();
    for (const auto& code : *on) {
      const bool known =
          code.is_string() && std::find(std::begin(kRetryableCodes), std::end(kRetryableCodes),
                                        code.get<std::string>()) != std::end(kRetryableCodes);
      if (!known) {
        return reader.FieldError("on", absl::StrCat("unknown status ", JsonForError(code),
                                                    " (accepted: ", accepted, ")"));
      }
      retry.retry_on.push_back(code.get<std::string>());
    }
  }
  // gRPC clients cap attempts at 5.
  if (absl::Status s = reader.ReadInt("max_attempts", 2, 5, &retry.max_attempts); !s.ok()) {
    return s;
  }
  if (absl::Status s = reader.ReadPositiveDuration("initial_backoff", &retry.initial_backoff);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = reader.ReadPositiveDuration("max_backoff", &retry.max_backoff); !s.ok()) {
    return s;
  }
  if (retry.max_backoff < retry.initial_backoff) {
    return reader.FieldError("max_backoff", "must not be less than initial_backoff");
  }
  return retry;
}

// One integer setting of an object of such settings: its name, its range and where it goes.
struct UintField {
  const char* name;
  int64_t min;
  int64_t max;
  uint32_t* out;
};

// `reader` must be an object of these fields only; each present one is read, in order.
absl::Status ReadUintFields(const JsonReader& reader, std::initializer_list<UintField> fields) {
  std::vector<std::string> known;
  for (const UintField& field : fields) known.emplace_back(field.name);
  if (absl::Status s = reader.CheckObject(known); !s.ok()) return s;
  for (const UintField& field : fields) {
    if (absl::Status s = reader.ReadInt(field.name, field.min, field.max, field.out); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<OutlierSettings> ParseOutlier(const JsonReader& reader) {
  if (absl::Status s =
          reader.CheckObject({"interval", "base_ejection_time", "max_ejection_time",
                              "max_ejection_percent", "success_rate", "failure_percentage"});
      !s.ok()) {
    return s;
  }
  OutlierSettings outlier;
  for (auto [field, out] : {std::pair{"interval", &outlier.interval},
                            std::pair{"base_ejection_time", &outlier.base_ejection_time},
                            std::pair{"max_ejection_time", &outlier.max_ejection_time}}) {
    if (absl::Status s = reader.ReadPositiveDuration(field, out); !s.ok()) return s;
  }
  if (absl::Status s =
          reader.ReadInt("max_ejection_percent", 0, 100, &outlier.max_ejection_percent);
      !s.ok()) {
    return s;
  }
  if (reader.Get("success_rate") != nullptr) {
    OutlierSettings::SuccessRate rate;
    if (absl::Status s = ReadUintFields(reader.Child("success_rate"),
                                        {{"stdev_factor", 1, 1000000, &rate.stdev_factor},
                                         {"enforcing", 0, 100, &rate.enforcing},
                                         {"minimum_hosts", 1, 100000, &rate.minimum_hosts},
                                         {"request_volume", 1, 1000000, &rate.request_volume}});
        !s.ok()) {
      return s;
    }
    outlier.success_rate = rate;
  }
  if (reader.Get("failure_percentage") != nullptr) {
    OutlierSettings::FailurePercentage percentage;
    if (absl::Status s =
            ReadUintFields(reader.Child("failure_percentage"),
                           {{"threshold", 0, 100, &percentage.threshold},
                            {"enforcing", 0, 100, &percentage.enforcing},
                            {"minimum_hosts", 1, 100000, &percentage.minimum_hosts},
                            {"request_volume", 1, 1000000, &percentage.request_volume}});
        !s.ok()) {
      return s;
    }
    outlier.failure_percentage = percentage;
  }
  if (outlier.max_ejection_time < outlier.base_ejection_time) {
    return reader.FieldError("max_ejection_time", "must not be less than base_ejection_time");
  }
  return outlier;
}

absl::StatusOr<ServiceSettings> ParseSettings(const JsonReader& reader) {
  if (absl::Status s = reader.CheckObject({"timeout", "retry", "outlier_detection"}); !s.ok()) {
    return s;
  }
  ServiceSettings settings;
  if (reader.Get("timeout") != nullptr) {
    absl::Duration timeout;
    if (absl::Status s = reader.ReadPositiveDuration("timeout", &timeout); !s.ok()) return s;
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
        absl::StrCat(file_name,
                     ":1: the top level must be a JSON object with \"default\" "
                     "and/or \"services\""));
  }
  const JsonReader top({file_name, text}, *root);
  XdsConfig config;
  for (const auto& [key, value] : root->items()) {
    if (key == "default") {
      absl::StatusOr<ServiceSettings> settings = ParseSettings(top.Child("default"));
      if (!settings.ok()) return settings.status();
      config.defaults = *settings;
    } else if (key == "services") {
      JsonReader services = top.Child("services");
      if (!value.is_object()) {
        return services.Error("must be an object of service name -> settings");
      }
      for (const auto& [service, settings_json] : value.items()) {
        absl::StatusOr<ServiceSettings> settings = ParseSettings(services.Child(service));
        if (!settings.ok()) return settings.status();
        config.services[service] = *settings;
      }
    } else {
      return top.FieldError(key, "unknown field (known: default, services)");
    }
  }
  return config;
}

}  // namespace sluice::xds
