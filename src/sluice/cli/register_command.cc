// sluice register: keeps a backend's registration alive until SIGTERM or SIGINT, then revokes
// it. This is how a backend that cannot embed the library (the seed's Python server) joins.
// With --health-check it is a health-gated sidecar, like Consul's checks: the key exists only
// while the backend's grpc.health.v1 service says SERVING (or the backend has none).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sluice/cli/commands.h"
#include "sluice/cli/etcd_flags.h"
#include "sluice/core/address.h"
#include "sluice/core/log.h"
#include "sluice/core/naming_value.h"
#include "sluice/core/signals.h"
#include "sluice/discovery/target.h"
#include "sluice/etcd/etcd_client.h"
#include "sluice/health/health_watcher.h"
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
  // Set when --health-check was given; the service name checked ("" = the whole server).
  bool health_check = false;
  std::string health_service;
};

int UsageError(const std::string& message) {
  std::fprintf(stderr, "sluice register: %s\nRun 'sluice register --help' for usage.\n",
               message.c_str());
  return kExitUsage;
}

// Starts the registration and waits for etcd to take it. An unreachable etcd is waited out in
// the background, but etcd refusing our credentials will not fix itself: that is an error.
absl::StatusOr<std::unique_ptr<registry::Registrar>> Register(
    const registry::RegistrarOptions& options) {
  auto registrar = registry::Registrar::Start(options);
  if (!registrar.ok()) return registrar.status();
  for (int i = 0; i < 50 && !(*registrar)->WaitUntilRegistered(absl::Milliseconds(200)); ++i) {
    absl::Status error = (*registrar)->LastError();
    if (absl::IsUnauthenticated(error) || absl::IsPermissionDenied(error)) {
      (*registrar)->Abandon();
      return absl::PermissionDeniedError(absl::StrCat("etcd refused the registration of ",
                                                      (*registrar)->key(), ": ", error.message()));
    }
  }
  return registrar;
}

int Deregister(registry::Registrar& registrar) {
  if (absl::Status s = registrar.Stop(); !s.ok()) {
    LogError("sluice register: could not revoke the lease (the key expires after its TTL): ",
             s.message());
    return kExitFailure;
  }
  return kExitOk;
}

int RunAlways(const registry::RegistrarOptions& options, const RegisterFlags& flags) {
  auto registrar = Register(options);
  if (absl::IsPermissionDenied(registrar.status())) {
    LogError("sluice register: ", registrar.status().message());
    return kExitFailure;
  }
  if (!registrar.ok()) return UsageError(std::string(registrar.status().message()));
  LogInfo("sluice register: keeping ", (*registrar)->key(), " alive (ttl ", flags.ttl_seconds,
          "s); SIGTERM or Ctrl-C deregisters");
  int signo = WaitForTerminationSignal();
  LogInfo("sluice register: signal ", signo, ", deregistering ", (*registrar)->key());
  return Deregister(**registrar);
}

// Registered while the backend is pickable by health (SERVING, or no health service at all),
// deregistered (lease revoked: the key goes at once) while it is not.
int RunHealthGated(const registry::RegistrarOptions& options, const RegisterFlags& flags) {
  std::mutex mu;
  std::condition_variable wake;
  health::HealthState latest = health::HealthState::kPending;
  int signo = 0;

  // Signals are blocked in every thread; this one takes them (sigwait) and wakes the loop.
  std::thread signal_waiter([&] {
    const int s = WaitForTerminationSignal();
    std::lock_guard<std::mutex> lock(mu);
    signo = s;
    wake.notify_all();
  });
  health::HealthCheckOptions health_options;
  health_options.service = flags.health_service;
  auto watcher = health::HealthWatcher::Start(
      grpc::CreateChannel(options.endpoint.address, grpc::InsecureChannelCredentials()),
      health_options, [&](health::HealthState state) {
        std::lock_guard<std::mutex> lock(mu);
        latest = state;
        wake.notify_all();
      });
  if (!watcher.ok()) {
    LogError("sluice register: ", watcher.status().message());
    signal_waiter.detach();
    return kExitFailure;
  }
  LogInfo("sluice register: checking the health of ", options.endpoint.address, " (service '",
          flags.health_service, "'); registered only while it is SERVING");

  std::unique_ptr<registry::Registrar> registrar;
  health::HealthState applied = health::HealthState::kPending;
  int exit_code = kExitOk;
  for (;;) {
    health::HealthState state;
    {
      std::unique_lock<std::mutex> lock(mu);
      wake.wait(lock, [&] { return signo != 0 || latest != applied; });
      if (signo != 0) break;
      state = latest;
    }
    applied = state;
    const bool healthy = health::IsPickable(state);
    if (healthy && registrar == nullptr) {
      auto started = Register(options);
      if (!started.ok()) {
        LogError("sluice register: ", started.status().message());
        exit_code = kExitFailure;
        break;
      }
      registrar = std::move(*started);
      LogInfo("sluice register: ", options.endpoint.address, " is ", health::HealthStateName(state),
              ": registered ", registrar->key(), " (ttl ", flags.ttl_seconds, "s)");
    } else if (!healthy && registrar != nullptr) {
      LogInfo("sluice register: ", options.endpoint.address, " is ", health::HealthStateName(state),
              ": deregistering ", registrar->key());
      exit_code = Deregister(*registrar);
      registrar.reset();
    }
  }
  watcher->reset();
  if (signo != 0) {
    LogInfo("sluice register: signal ", signo, ", deregistering");
    signal_waiter.join();
  } else {
    signal_waiter.detach();  // exiting on an error; the process ends with it
  }
  if (registrar != nullptr) exit_code = std::max(exit_code, Deregister(*registrar));
  return exit_code;
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
  return flags.health_check ? RunHealthGated(options, flags) : RunAlways(options, flags);
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
  CLI::Option* health = cmd->add_option(
      "--health-check", flags->health_service,
      "Keep the registration only while the backend's grpc.health.v1 service reports SERVING "
      "for SERVICE (default: the whole server); a backend without a health service counts as "
      "healthy");
  health->expected(0, 1);
  return [flags, health] {
    flags->health_check = health->count() > 0;
    return RunRegister(*flags);
  };
}

}  // namespace sluice::cli
