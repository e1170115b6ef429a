#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "absl/status/status.h"
#include "sluice/etcd/etcd_client.h"

namespace sluice::cli {

// The environment variable read for the etcd password when no flag gives one, so the password
// need not appear in the process list.
inline constexpr char kEtcdPasswordEnv[] = "SLUICE_ETCD_PASSWORD";

// How a command reaches etcd: members, auth and TLS, named like etcdctl's flags.
struct EtcdFlags {
  std::string endpoints = "127.0.0.1:2379";
  std::string user;  // NAME or NAME:PASSWORD, as etcdctl --user
  std::string password;
  std::string cacert;
  std::string cert;
  std::string key;
};

// Adds --etcd, --etcd-user, --etcd-password, --etcd-cacert, --etcd-cert and --etcd-key.
void AddEtcdFlags(CLI::App& cmd, EtcdFlags& flags);
// All of them but --etcd, for commands whose members come from elsewhere (sluice proxy: from
// its etcd:// targets).
void AddEtcdCredentialFlags(CLI::App& cmd, EtcdFlags& flags);

// Turns the flags into client options. The password comes from --etcd-password, else from
// --etcd-user NAME:PASSWORD, else from $SLUICE_ETCD_PASSWORD. https:// members, or any TLS file,
// turn TLS on. InvalidArgument names the flag that is wrong.
absl::Status ApplyEtcdFlags(const EtcdFlags& flags, etcd::EtcdClientOptions& options);
// The same for user, password and TLS only; `options.endpoints` is left alone.
absl::Status ApplyEtcdCredentialFlags(const EtcdFlags& flags, etcd::EtcdClientOptions& options);

}  // namespace sluice::cli
