// The seed's Greeter server in C++: answers SayHello with "Hello, <name>!, I am <ip>:<port>"
// and prints every name it receives. It serves grpc.health.v1 (for the whole server and for
// Greeter) and attaches its load to every answer's trailers (ORCA). With --etcd it
// registers itself in the registry. On SIGTERM or SIGINT it reports NOT_SERVING first (callers
// that check health stop picking it), then deregisters, waits a short grace, lets in-flight
// calls finish and exits 0.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "helloworld.grpc.pb.h"
#include "sluice/core/address.h"
#include "sluice/core/log.h"
#include "sluice/core/naming_value.h"
#include "sluice/core/signals.h"
#include "sluice/discovery/target.h"
#include "sluice/etcd/etcd_client.h"
#include "sluice/health/load_reporter.h"
#include "sluice/registry/registrar.h"

namespace {

// The seed's servicer. Uses the callback API so a slow call (--delay) does not hold a thread.
class GreeterService final : public Greeter::CallbackService {
 public:
  GreeterService(std::string identity, absl::Duration delay, bool quiet,
                 sluice::health::LoadReporter& load)
      : identity_(std::move(identity)), delay_(delay), quiet_(quiet), load_(load) {}

  grpc::ServerUnaryReactor* SayHello(grpc::CallbackServerContext* context,
                                     const HelloRequest* request, HelloReply* reply) override {
    load_.OnCallStarted();
    if (!quiet_) {
      std::printf("name: %s\n", request->name().c_str());
      std::fflush(stdout);
    }
    reply->set_message(absl::StrCat("Hello, ", request->name(), "!, I am ", identity_));
    // Lets tools that do not parse the reply (sluice bench, proxies) see who answered.
    context->AddInitialMetadata("sluice-backend", identity_);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    // The load as of this call's end goes into its trailers, for weighted_round_robin callers.
    auto finish = [this, context, reactor] {
      load_.AttachTo(*context);
      load_.OnCallFinished(/*failed=*/false);
      reactor->Finish(grpc::Status::OK);
    };
    if (delay_ <= absl::ZeroDuration()) {
      finish();
    } else {
      // An artificial slow backend for balancing experiments.
      std::thread([finish, delay = delay_] {
        std::this_thread::sleep_for(absl::ToChronoNanoseconds(delay));
        finish();
      }).detach();
    }
    return reactor;
  }

 private:
  const std::string identity_;
  const absl::Duration delay_;
  const bool quiet_;
  sluice::health::LoadReporter& load_;
};

std::string EnvOr(const char* name, std::string fallback) {
  const char* value = std::getenv(name);
  return (value != nullptr && *value != '\0') ? std::string(value) : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  sluice::BlockTerminationSignals();

  CLI::App app{"The seed's Greeter server: SayHello answers \"Hello, <name>!, I am <ip>:<port>\"."};
  std::string ip = EnvOr("IP", "127.0.0.1");
  int port = std::atoi(EnvOr("PORT", "50051").c_str());
  std::string etcd_endpoints;
  std::string service = "greeter";
  std::string prefix;
  int64_t ttl_seconds = 10;
  std::vector<std::string> meta;
  std::string grace_text = "500ms";
  std::string drain_text = "10s";
  std::string delay_text = "0s";
  bool quiet = false;
  int64_t capacity = 0;
  double utilization = -1;
  app.add_option("--ip", ip, "Address to listen on and to report (env IP)")->capture_default_str();
  app.add_option("--port", port, "Port to listen on (env PORT)")->capture_default_str();
  app.add_option("--etcd", etcd_endpoints,
                 "etcd members HOST:PORT[,HOST:PORT]; when set, register in the registry");
  app.add_option("--service", service, "Service name to register as")->capture_default_str();
  app.add_option("--prefix", prefix, "Registry key prefix (default services/<service>)");
  app.add_option("--ttl", ttl_seconds, "Lease TTL in seconds")->capture_default_str();
  app.add_option("--meta", meta, "Registry metadata NAME=VALUE (weight=100, zone=a); repeatable");
  app.add_option("--grace", grace_text,
                 "After deregistering on SIGTERM, keep serving this long so callers stop picking "
                 "this backend")
      ->capture_default_str();
  app.add_option("--drain", drain_text, "Then wait at most this long for in-flight calls")
      ->capture_default_str();
  app.add_option("--delay", delay_text, "Answer every call after this delay (testing)")
      ->capture_default_str();
  app.add_flag("--quiet", quiet, "Do not print the names received (benchmarks)");
  app.add_option("--capacity", capacity,
                 "Calls in flight that make this backend fully busy: its load reports' "
                 "application_utilization is calls in flight / capacity (0: not reported)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--utilization", utilization,
                 "Report this fixed application_utilization instead (testing weighted "
                 "balancing)")
      ->check(CLI::NonNegativeNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "greeter_server: %s\nRun with --help for usage.\n", e.what());
    return 2;
  }
  absl::Duration grace, drain, delay;
  if (!absl::ParseDuration(grace_text, &grace) || !absl::ParseDuration(drain_text, &drain) ||
      !absl::ParseDuration(delay_text, &delay)) {
    std::fprintf(stderr,
                 "greeter_server: --grace, --drain and --delay take durations like 500ms or 2s\n");
    return 2;
  }
  if (port <= 0 || port > 65535) {
    std::fprintf(stderr, "greeter_server: --port must be 1-65535, got %d\n", port);
    return 2;
  }
  const std::string address = sluice::HostPort{ip, static_cast<uint16_t>(port)}.ToString();
  if (auto parsed = sluice::ParseHostPort(address); !parsed.ok() || !sluice::IsIpLiteral(ip)) {
    std::fprintf(stderr, "greeter_server: --ip must be an IP address, got '%s'\n", ip.c_str());
    return 2;
  }

  sluice::registry::RegistrarOptions registrar_options;
  if (!etcd_endpoints.empty()) {
    auto members = sluice::etcd::ParseEtcdEndpoints(etcd_endpoints);
    if (!members.ok()) {
      std::fprintf(stderr, "greeter_server: --etcd: %s\n",
                   std::string(members.status().message()).c_str());
      return 2;
    }
    registrar_options.etcd.endpoints = *members;
    registrar_options.prefix = prefix.empty() ? sluice::discovery::ServicePrefix(service) : prefix;
    registrar_options.ttl_seconds = ttl_seconds;
    registrar_options.endpoint.address = address;
    for (const auto& flag : meta) {
      if (auto s = sluice::ApplyMetadataFlag(flag, registrar_options.endpoint); !s.ok()) {
        std::fprintf(stderr, "greeter_server: %s\n", std::string(s.message()).c_str());
        return 2;
      }
    }
  }

  sluice::health::LoadReporter::Options load_options;
  load_options.capacity = capacity;
  sluice::health::LoadReporter load(load_options);
  if (utilization >= 0) load.SetApplicationUtilization(utilization);
  GreeterService greeter(address, delay, quiet, load);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound_port);
  // gRPC sets SO_REUSEPORT by default, so a second server on a busy ip:port would start
  // silently and take half of the new connections: refuse the address instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(&greeter);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    sluice::LogError("greeter_server: cannot listen on ", address,
                     " (address already in use by another process, or not a local address?)");
    return 1;
  }
  // Health for the whole server ("") is SERVING by default; the service's own name too.
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(Greeter::service_full_name(), true);
  sluice::LogInfo("greeter_server: serving on ", address);

  std::unique_ptr<sluice::registry::Registrar> registrar;
  if (!etcd_endpoints.empty()) {
    auto started = sluice::registry::Registrar::Start(registrar_options);
    if (!started.ok()) {
      sluice::LogError("greeter_server: ", started.status().message());
      server->Shutdown();
      return 2;
    }
    registrar = std::move(*started);
  }

  int signo = sluice::WaitForTerminationSignal();
  sluice::LogInfo("greeter_server: signal ", signo, ", shutting down");
  // First NOT_SERVING: health-checking callers (and `sluice register --health-check`) stop
  // sending calls at once, before the registry deletion reaches them.
  health->SetServingStatus(false);
  if (registrar != nullptr) {
    if (auto s = registrar->Stop(); !s.ok()) {
      sluice::LogWarning("greeter_server: deregistering: ", s.message());
    }
    // Callers see the deletion within milliseconds; the grace covers calls already picked.
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(grace));
  }
  server->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(drain));
  server->Wait();
  sluice::LogInfo("greeter_server: stopped");
  return 0;
}
