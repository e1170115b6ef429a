#include "sluice/cli/etcd_flags.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace sluice::cli {

void AddEtcdFlags(CLI::App& cmd, EtcdFlags& flags) {
  cmd.add_option("--etcd", flags.endpoints,
                 "etcd members [http(s)://]HOST:PORT[,HOST:PORT]; https:// means TLS")
      ->capture_default_str();
  AddEtcdCredentialFlags(cmd, flags);
}

void AddEtcdCredentialFlags(CLI::App& cmd, EtcdFlags& flags) {
  cmd.add_option("--etcd-user", flags.user,
                 "etcd user NAME or NAME:PASSWORD (etcd auth), like etcdctl --user");
  cmd.add_option("--etcd-password", flags.password,
                 std::string("etcd password (else from --etcd-user NAME:PASSWORD, else $") +
                     kEtcdPasswordEnv + ")");
  cmd.add_option("--etcd-cacert", flags.cacert,
                 "TLS to etcd: PEM CA file that signed the members' certificates");
  cmd.add_option("--etcd-cert", flags.cert,
                 "TLS to etcd: PEM client certificate (members with --client-cert-auth)");
  cmd.add_option("--etcd-key", flags.key, "TLS to etcd: PEM key of --etcd-cert");
}

absl::Status ApplyEtcdFlags(const EtcdFlags& flags, etcd::EtcdClientOptions& options) {
  bool https = false;
  auto members = etcd::ParseEtcdEndpoints(flags.endpoints, &https);
  if (!members.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--etcd: ", members.status().message()));
  }
  options.endpoints = *std::move(members);
  if (absl::Status s = ApplyEtcdCredentialFlags(flags, options); !s.ok()) return s;
  // An https:// member asks for TLS even without a TLS file.
  options.tls.enabled = https;
  return absl::OkStatus();
}

absl::Status ApplyEtcdCredentialFlags(const EtcdFlags& flags, etcd::EtcdClientOptions& options) {
  std::string user = flags.user;
  std::string password;
  if (size_t colon = user.find(':'); colon != std::string::npos) {
    password = user.substr(colon + 1);
    user.resize(colon);
  }
  if (!flags.password.empty()) password = flags.password;
  if (password.empty() && !user.empty()) {
    if (const char* env = std::getenv(kEtcdPasswordEnv); env != nullptr) password = env;
  }
  if (!flags.user.empty() && user.empty()) {
    return absl::InvalidArgumentError("--etcd-user: the user name is empty; give NAME[:PASSWORD]");
  }
  if (user.empty() && !flags.password.empty()) {
    return absl::InvalidArgumentError("--etcd-password given without --etcd-user");
  }
  if (!user.empty() && password.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--etcd-user ", user, " has no password: give --etcd-user NAME:PASSWORD, ",
                     "--etcd-password or $", kEtcdPasswordEnv));
  }
  options.username = user;
  options.password = password;

  if (flags.cert.empty() != flags.key.empty()) {
    return absl::InvalidArgumentError(flags.cert.empty() ? "--etcd-key given without --etcd-cert"
                                                         : "--etcd-cert given without --etcd-key");
  }
  options.tls.ca_file = flags.cacert;
  options.tls.cert_file = flags.cert;
  options.tls.key_file = flags.key;
  return absl::OkStatus();
}

}  // namespace sluice::cli
