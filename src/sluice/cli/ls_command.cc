// sluice ls: lists registered services and their endpoints.
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "sluice/cli/commands.h"
#include "sluice/cli/etcd_flags.h"
#include "sluice/core/naming_value.h"
#include "sluice/discovery/target.h"
#include "sluice/etcd/etcd_client.h"
#include "sluice/health/health_probe.h"

namespace sluice::cli {
namespace {

struct LsFlags {
  EtcdFlags etcd;
  std::string service;
  std::string prefix;
  bool json = false;
  // --health [SERVICE]: ask every endpoint's grpc.health.v1 service (a live Check).
  bool health = false;
  std::string health_service;
};

struct Row {
  std::string service;
  std::string key;
  Endpoint endpoint;
  int64_t lease = 0;
  std::string health;  // empty unless --health
};

// "serving", "not_serving", ... or "unreachable (UNAVAILABLE)".
std::string HealthText(const absl::StatusOr<health::HealthState>& state) {
  if (state.ok()) return std::string(health::HealthStateName(*state));
  return absl::StrCat("unreachable (", absl::StatusCodeToString(state.status().code()), ")");
}

std::string MetadataText(const Endpoint& endpoint) {
  if (endpoint.metadata.empty()) return "-";
  std::string text;
  for (const auto& [name, value] : endpoint.metadata) {
    absl::StrAppend(&text, text.empty() ? "" : ",", name, "=", value);
  }
  return text;
}

int RunLs(const LsFlags& flags) {
  etcd::EtcdClientOptions options;
  if (absl::Status s = ApplyEtcdFlags(flags.etcd, options); !s.ok()) {
    std::fprintf(stderr, "sluice ls: %s\n", std::string(s.message()).c_str());
    return kExitUsage;
  }
  auto client = etcd::EtcdClient::Create(options);
  if (!client.ok()) {
    std::fprintf(stderr, "sluice ls: %s\n", std::string(client.status().message()).c_str());
    return kExitUsage;  // bad options only: e.g. an unreadable --etcd-cacert
  }
  // One service: its prefix. Every service: everything under "services/", grouped by the next
  // path segment. --prefix lists exactly that prefix.
  std::string root = "services/";
  if (!flags.prefix.empty()) {
    root = flags.prefix;
    if (!absl::EndsWith(root, "/")) root += "/";
  } else if (!flags.service.empty()) {
    root = discovery::ServicePrefix(flags.service) + "/";
  }
  auto listed = (*client)->GetPrefix(root);
  if (!listed.ok()) {
    std::fprintf(stderr, "sluice ls: reading %s from etcd: %s\n", root.c_str(),
                 std::string(listed.status().message()).c_str());
    return kExitFailure;
  }
  std::vector<Row> rows;
  for (const auto& kv : listed->kvs) {
    auto endpoint = ParseNamingValue(kv.key, kv.value);
    if (!endpoint.ok()) {
      if (endpoint.status().code() != absl::StatusCode::kNotFound) {
        std::fprintf(stderr, "sluice ls: skipped %s\n",
                     std::string(endpoint.status().message()).c_str());
      }
      continue;
    }
    Row row;
    row.key = kv.key;
    row.endpoint = std::move(*endpoint);
    row.lease = kv.lease;
    std::string rest = kv.key.substr(root.size());
    if (!flags.prefix.empty()) {
      row.service = flags.prefix;
    } else if (!flags.service.empty()) {
      row.service = flags.service;
    } else {
      size_t slash = rest.find('/');
      row.service = slash == std::string::npos ? "(none)" : rest.substr(0, slash);
    }
    rows.push_back(std::move(row));
  }

  if (flags.health) {
    std::vector<std::string> addresses;
    for (const auto& row : rows) addresses.push_back(row.endpoint.address);
    const auto states = health::ProbeHealth(addresses, flags.health_service, absl::Seconds(2));
    for (size_t i = 0; i < rows.size(); ++i) rows[i].health = HealthText(states[i]);
  }

  if (flags.json) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& row : rows) {
      nlohmann::json metadata = nlohmann::json::object();
      for (const auto& [name, value] : row.endpoint.metadata) {
        metadata[name] = nlohmann::json::parse(value, nullptr, false);
      }
      out[row.service].push_back({{"address", row.endpoint.address},
                                  {"key", row.key},
                                  {"lease", row.lease},
                                  {"weight", row.endpoint.weight},
                                  {"metadata", metadata}});
      if (flags.health) out[row.service].back()["health"] = row.health;
    }
    std::printf("%s\n", out.dump(2).c_str());
    return kExitOk;
  }
  if (rows.empty()) {
    std::printf("no endpoints registered under %s\n", root.c_str());
    return kExitOk;
  }
  size_t service_width = 7, address_width = 7, metadata_width = 8, health_width = 6;
  for (const auto& row : rows) {
    health_width = std::max(health_width, row.health.size());
    service_width = std::max(service_width, row.service.size());
    address_width = std::max(address_width, row.endpoint.address.size());
    metadata_width = std::max(metadata_width, MetadataText(row.endpoint).size());
  }
  auto print = [&](const std::string& a, const std::string& b, const std::string& health,
                   const std::string& c, const std::string& d) {
    std::printf("%-*s  %-*s  ", static_cast<int>(service_width), a.c_str(),
                static_cast<int>(address_width), b.c_str());
    if (flags.health) std::printf("%-*s  ", static_cast<int>(health_width), health.c_str());
    std::printf("%-*s  %s\n", static_cast<int>(metadata_width), c.c_str(), d.c_str());
  };
  print("SERVICE", "ADDRESS", "HEALTH", "METADATA", "KEY");
  for (const auto& row : rows) {
    print(row.service, row.endpoint.address, row.health, MetadataText(row.endpoint), row.key);
  }
  return kExitOk;
}

}  // namespace

CommandRunner AddLsCommand(CLI::App& app) {
  auto flags = std::make_shared<LsFlags>();
  CLI::App* cmd = app.add_subcommand("ls", "List registered services and their endpoints");
  AddEtcdFlags(*cmd, flags->etcd);
  cmd->add_option("service", flags->service, "Only this service");
  cmd->add_option("--prefix", flags->prefix, "List this key prefix instead of services/");
  cmd->add_flag("--json", flags->json, "Print JSON");
  CLI::Option* health =
      cmd->add_option("--health", flags->health_service,
                      "Also ask each endpoint's grpc.health.v1 service now (a Check, 2 s at "
                      "most) about SERVICE (default: the whole server) and show the answer");
  health->expected(0, 1);
  return [flags, health] {
    flags->health = health->count() > 0;
    return RunLs(*flags);
  };
}

}  // namespace sluice::cli
