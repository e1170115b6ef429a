#include "sluice/balancer/config_reader.h"

namespace sluice {

absl::StatusOr<JsonReader> ReadPolicyConfig(absl::string_view policy, const nlohmann::json& config,
                                            const std::vector<std::string>& known_fields) {
  JsonReader reader({std::string(policy)}, config);
  if (absl::Status status = reader.CheckObject(known_fields, /*null_is_empty=*/true);
      !status.ok()) {
    return status;
  }
  return reader;
}

}  // namespace sluice
