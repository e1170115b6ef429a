// sluice xds: an xDS (ADS) server fed by the etcd registry, so unmodified gRPC clients balance
// per call with target xds:///SERVICE; `sluice xds bootstrap` prints their bootstrap file.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sluice/cli/commands.h"
#include "sluice/cli/etcd_flags.h"
#include "sluice/core/http_server.h"
#include "sluice/core/log.h"
#include "sluice/core/signals.h"
#include "sluice/xds/ads_server.h"
#include "sluice/xds/registry_watch.h"
#include "sluice/xds/xds_config.h"

namespace sluice::cli {
namespace {

struct XdsFlags {
  std::string listen = "127.0.0.1:18000";
  EtcdFlags etcd;
  std::vector<std::string> services;
  std::string config_file;
  std::string admin;
};

struct BootstrapFlags {
  std::string server;
  std::string node_id = "sluice-xds-client";
};

int RunXds(const XdsFlags& flags) {
  xds::XdsConfig config;
  if (!flags.config_file.empty()) {
    std::ifstream file(flags.config_file);
    if (!file) {
      std::fprintf(stderr, "sluice xds: --config %s: cannot read the file\n",
                   flags.config_file.c_str());
      return kExitUsage;
    }
    std::stringstream text;
    text << file.rdbuf();
    absl::StatusOr<xds::XdsConfig> parsed = xds::ParseXdsConfig(text.str(), flags.config_file);
    if (!parsed.ok()) {
      std::fprintf(stderr, "sluice xds: --config: %s\n",
                   std::string(parsed.status().message()).c_str());
      return kExitUsage;
    }
    config = *parsed;
  }
  for (const auto& [service, settings] : config.services) {
    if (!flags.services.empty() &&
        std::find(flags.services.begin(), flags.services.end(), service) ==
            flags.services.end()) {
      LogWarning("xds: --config has settings for ", service,
                 ", which is not served (no --service ", service, ")");
    }
  }
  etcd::EtcdClientOptions etcd_access;
  if (absl::Status s = ApplyEtcdFlags(flags.etcd, etcd_access); !s.ok()) {
    std::fprintf(stderr, "sluice xds: %s\n", std::string(s.message()).c_str());
    return kExitUsage;
  }
  xds::RegistryWatchOptions watch_options;
  watch_options.etcd = etcd_access;
  watch_options.services = flags.services;
  watch_options.config = config;
  watch_options.discovery.etcd_username = etcd_access.username;
  watch_options.discovery.etcd_password = etcd_access.password;
  watch_options.discovery.etcd_tls = etcd_access.tls;

  xds::AdsServer ads;
  grpc::ServerBuilder builder;
  // Two servers on one port would silently share its clients.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  builder.AddListeningPort(flags.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&ads);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr,
                 "sluice xds: --listen %s: cannot listen there (in use, or not an IP:PORT of "
                 "this machine)\n",
                 flags.listen.c_str());
    return kExitFailure;
  }

  const std::string members = absl::StrJoin(etcd_access.endpoints, ",");
  auto watch = xds::RegistryWatch::Start(
      std::move(watch_options), [&ads](const std::map<std::string, xds::ServiceResources>& services) {
        ads.Update(services);
      });
  if (!watch.ok()) {
    std::fprintf(stderr, "sluice xds: %s\n", std::string(watch.status().message()).c_str());
    server->Shutdown();
    return kExitUsage;
  }

  std::unique_ptr<HttpServer> admin;
  if (!flags.admin.empty()) {
    auto started = HttpServer::Start(flags.admin, "--admin", [&ads](const std::string& path) {
      HttpResponse response;
      if (path == "/metrics") {
        response.content_type = "text/plain; version=0.0.4";
        response.body = ads.MetricsText();
      } else if (path == "/clients") {
        response.content_type = "application/json";
        response.body = ads.ClientsJson().dump(2) + "\n";
      } else {
        response.status = 404;
        response.body = "not found: try /metrics or /clients\n";
      }
      return response;
    });
    if (!started.ok()) {
      std::fprintf(stderr, "sluice xds: %s\n", std::string(started.status().message()).c_str());
      server->Shutdown();
      return kExitFailure;
    }
    admin = std::move(*started);
  }
  LogInfo("xds: serving ADS on ", flags.listen, " for ",
          flags.services.empty() ? std::string("every service under services/")
                                 : absl::StrCat(flags.services.size(), " service(s)"),
          " from etcd ", members,
          admin ? absl::StrCat("; admin on port ", admin->port()) : std::string());

  const int signal = WaitForTerminationSignal();
  LogInfo("xds: signal ", signal, ", stopping");
  (*watch).reset();
  ads.Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return kExitOk;
}

int RunBootstrap(const BootstrapFlags& flags) {
  nlohmann::json server = {{"server_uri", flags.server},
                           {"channel_creds", {{{"type", "insecure"}}}},
                           {"server_features", {"xds_v3"}}};
  nlohmann::json bootstrap = {{"xds_servers", {server}},
                              {"node", {{"id", flags.node_id}, {"locality", nlohmann::json::object()}}}};
  std::printf("%s\n", bootstrap.dump(2).c_str());
  return kExitOk;
}

}  // namespace

CommandRunner AddXdsCommand(CLI::App& app) {
  auto flags = std::make_shared<XdsFlags>();
  auto bootstrap = std::make_shared<BootstrapFlags>();
  CLI::App* cmd = app.add_subcommand(
      "xds",
      "Serve the registry over xDS (ADS, v3) to unmodified gRPC clients (target xds:///SERVICE)");
  cmd->add_option("--listen", flags->listen, "IP:PORT of the ADS server")->capture_default_str();
  AddEtcdFlags(*cmd, flags->etcd);
  cmd->add_option("--service", flags->services,
                  "A service to serve (repeat for more); clients name it as xds:///SERVICE. "
                  "None: every service registered under services/ (looked for every 2 s)");
  cmd->add_option("--config", flags->config_file,
                  "JSON file of per-service settings: timeout, retry, outlier_detection");
  cmd->add_option("--admin", flags->admin, "IP:PORT serving /metrics and /clients");

  CLI::App* boot = cmd->add_subcommand(
      "bootstrap", "Print a gRPC xDS bootstrap file (for GRPC_XDS_BOOTSTRAP) naming this server");
  boot->add_option("--server", bootstrap->server, "HOST:PORT of a `sluice xds` server")
      ->required();
  boot->add_option("--node-id", bootstrap->node_id, "The client's node id")
      ->capture_default_str();

  return [flags, bootstrap, boot] {
    if (boot->parsed()) return RunBootstrap(*bootstrap);
    return RunXds(*flags);
  };
}

}  // namespace sluice::cli
