// sluice register: keeps a backend's registration alive until SIGTERM or SIGINT, then revokes
// it. This is how a backend that cannot embed the library (the seed's Python server) joins.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "sluice/cli/commands.h"
#include "sluice/cli/etcd_flags.h"
#include "sluice/core/address.h"
#include "sluice/core/log.h"
#include "sluice/core/naming_value.h"
#include "sluice/core/signals.h"
#include "sluice/discovery/target.h"
#include "sluice/etcd/etcd_client.h"
#include "sluice/registry/registrar.h"

namespace sluice::cli {
namespace {

struct RegisterFlags {
  EtcdFlags etcd;
  std::string service;
  std::string prefix;
  std::string addr;
  std::string instance_id;
  int64_t ttl_seconds = 10;
  std::vector<std::string> meta;
};

int UsageError(const std::string& message) {
  std::fprintf(stderr, "sluice register: %s\nRun 'sluice register --help' for usage.\n",
               message.c_str());
  return kExitUsage;
}

int RunRegister(const RegisterFlags& flags) {
  registry::RegistrarOptions options;
  if (absl::Status s = ApplyEtcdFlags(flags.etcd, options.etcd); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  if (flags.service.empty() && flags.prefix.empty()) {
    return UsageError("give --service NAME (or --prefix KEY_PREFIX)");
  }
  options.prefix = flags.prefix.empty() ? discovery::ServicePrefix(flags.service) : flags.prefix;
  if (auto parsed = ParseHostPort(flags.addr); !parsed.ok()) {
    return UsageError("--addr: " + std::string(parsed.status().message()));
  }
  options.endpoint.address = flags.addr;
  options.instance_id = flags.instance_id;
  options.ttl_seconds = flags.ttl_seconds;
  for (const auto& flag : flags.meta) {
    if (auto s = ApplyMetadataFlag(flag, options.endpoint); !s.ok()) {
      return UsageError(std::string(s.message()));
    }
  }
  auto registrar = registry::Registrar::Start(options);
  if (!registrar.ok()) return UsageError(std::string(registrar.status().message()));
  // An unreachable etcd is waited out in the background, but etcd refusing our credentials
  // will not fix itself: say so and exit instead of retrying silently forever.
  for (int i = 0; i < 50 && !(*registrar)->WaitUntilRegistered(absl::Milliseconds(200)); ++i) {
    absl::Status error = (*registrar)->LastError();
    if (absl::IsUnauthenticated(error) || absl::IsPermissionDenied(error)) {
      (*registrar)->Abandon();
      LogError("sluice register: etcd refused the registration of ", (*registrar)->key(), ": ",
               error.message());
      return kExitFailure;
    }
  }
  LogInfo("sluice register: keeping ", (*registrar)->key(), " alive (ttl ", flags.ttl_seconds,
          "s); SIGTERM or Ctrl-C deregisters");
  int signo = WaitForTerminationSignal();
  LogInfo("sluice register: signal ", signo, ", deregistering ", (*registrar)->key());
  if (absl::Status s = (*registrar)->Stop(); !s.ok()) {
    LogError("sluice register: could not revoke the lease (the key expires after its TTL): ",
             s.message());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

CommandRunner AddRegisterCommand(CLI::App& app) {
  auto flags = std::make_shared<RegisterFlags>();
  CLI::App* cmd = app.add_subcommand(
      "register",
      "Register a backend in etcd and keep it registered until SIGTERM/SIGINT, then revoke it");
  AddEtcdFlags(*cmd, flags->etcd);
  cmd->add_option("--service", flags->service, "Service name; the key prefix is services/NAME");
  cmd->add_option("--prefix", flags->prefix, "Key prefix instead of services/NAME");
  cmd->add_option("--addr", flags->addr, "The backend's IP:PORT")->required();
  cmd->add_option("--id", flags->instance_id, "Instance id, the key's last part (default: addr)");
  cmd->add_option("--ttl", flags->ttl_seconds, "Lease TTL in seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--meta", flags->meta, "Metadata NAME=VALUE (weight=100, zone=a); repeatable");
  return [flags] { return RunRegister(*flags); };
}

}  // namespace sluice::cli
