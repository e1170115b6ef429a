// The seed's Greeter client in C++: calls SayHello(name) --calls times, --interval apart, and
// prints each reply. --target takes a plain address or a discovery target (etcd://, static://,
// dns://). Every call is balanced on its own by the Sluice client library (--policy), so the
// calls spread over every registered backend and follow them as they come and go.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "helloworld.grpc.pb.h"
#include "sluice/client/balancer.h"
#include "sluice/client/call.h"
#include "sluice/client/metrics_export.h"
#include "sluice/core/log.h"

int main(int argc, char** argv) {
  // One reply per line as it comes, also when the output is a pipe (the demo interleaves its
  // events with the replies).
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  CLI::App app{"The seed's Greeter client: calls SayHello and prints each reply."};
  std::string target = "127.0.0.1:50051";
  int calls = 50;
  std::string interval_text = "2s";
  std::string timeout_text = "5s";
  std::string name = "you";
  std::string policy = sluice::client::BalancerOptions{}.policy;  // the library's default
  std::string policy_config = "{}";
  bool retry_unavailable = true;
  bool plain = false;
  std::string plain_lb;
  std::string csv_path;
  int metrics_port = -1;
  app.add_option("--target", target,
                 "IP:PORT, or etcd://HOST:PORT/PREFIX, static://IP:PORT,..., dns://NAME:PORT")
      ->capture_default_str();
  app.add_option("--calls", calls, "Number of calls")->capture_default_str();
  app.add_option("--interval", interval_text, "Pause between calls")->capture_default_str();
  app.add_option("--timeout", timeout_text, "Deadline of each call")->capture_default_str();
  app.add_option("--name", name, "HelloRequest.name")->capture_default_str();
  app.add_option("--policy", policy,
                 "round_robin, random, least_request, peak_ewma, weighted_round_robin, ring_hash, "
                 "prequal")
      ->capture_default_str();
  app.add_option("--policy-config", policy_config, "The policy's JSON config")
      ->capture_default_str();
  app.add_option("--retry-unavailable", retry_unavailable,
                 "SayHello is idempotent: retry it on another backend when one is unavailable")
      ->capture_default_str();
  app.add_flag("--plain", plain,
               "The seed's client as it was: one plain gRPC channel to --target (an address), no "
               "per-call balancing and no retries; to compare with an L4 balancer or a proxy");
  app.add_option("--plain-lb", plain_lb,
                 "With --plain: gRPC's own balancing policy for the channel (round_robin, "
                 "pick_first), e.g. over --target ipv4:127.0.0.11:50051,127.0.0.12:50051; to "
                 "compare with gRPC's balancer");
  app.add_option("--csv", csv_path,
                 "Also write one line per call to this file: start time (Unix ms), latency ms, "
                 "status code, backend that answered (the experiments read it)");
  app.add_option("--metrics-port", metrics_port,
                 "Serve the client library's per-endpoint metrics (Prometheus text) at "
                 "http://127.0.0.1:PORT/metrics while the calls run (0: a free port)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "greeter_client: %s\nRun with --help for usage.\n", e.what());
    return 2;
  }
  absl::Duration interval, timeout;
  if (!absl::ParseDuration(interval_text, &interval) ||
      !absl::ParseDuration(timeout_text, &timeout)) {
    std::fprintf(stderr, "greeter_client: --interval and --timeout take durations like 2s\n");
    return 2;
  }
  std::unique_ptr<sluice::client::Balancer> balancer;
  std::unique_ptr<Greeter::Stub> plain_stub;
  if (plain) {
    grpc::ChannelArguments args;
    if (!plain_lb.empty()) args.SetLoadBalancingPolicyName(plain_lb);
    plain_stub = Greeter::NewStub(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  } else {
    sluice::client::BalancerOptions options;
    options.target = target;
    options.policy = policy;
    options.policy_config = nlohmann::json::parse(policy_config, nullptr, false);
    if (options.policy_config.is_discarded()) {
      std::fprintf(stderr, "greeter_client: --policy-config is not valid JSON: %s\n",
                   policy_config.c_str());
      return 2;
    }
    if (retry_unavailable) options.retry.idempotent_methods = {"/Greeter/SayHello"};
    auto created = sluice::client::Balancer::Create(std::move(options));
    if (!created.ok()) {
      std::fprintf(stderr, "greeter_client: %s\n", std::string(created.status().message()).c_str());
      return 2;
    }
    balancer = std::move(*created);
  }
  std::unique_ptr<sluice::client::MetricsExport> metrics;
  std::unique_ptr<sluice::HttpServer> metrics_server;
  if (metrics_port >= 0) {
    if (plain) {
      std::fprintf(stderr,
                   "greeter_client: --metrics-port needs the client library (not --plain)\n");
      return 2;
    }
    metrics = std::make_unique<sluice::client::MetricsExport>(*balancer);
    auto served = metrics->Serve(absl::StrCat("127.0.0.1:", metrics_port));
    if (!served.ok()) {
      std::fprintf(stderr, "greeter_client: --metrics-port: %s\n",
                   std::string(served.status().message()).c_str());
      return 2;
    }
    metrics_server = std::move(*served);
    std::printf("Greeter client metrics on http://127.0.0.1:%d/metrics\n", metrics_server->port());
  }
  FILE* csv = nullptr;
  if (!csv_path.empty()) {
    csv = std::fopen(csv_path.c_str(), "w");
    if (csv == nullptr) {
      std::fprintf(stderr, "greeter_client: --csv: cannot write %s\n", csv_path.c_str());
      return 2;
    }
    std::fprintf(csv, "start_unix_ms,latency_ms,code,backend\n");
  }

  int failed = 0;
  std::map<std::string, int> answered_by;
  for (int i = 0; i < calls; ++i) {
    if (i > 0) std::this_thread::sleep_for(absl::ToChronoNanoseconds(interval));
    HelloRequest request;
    request.set_name(name);
    HelloReply reply;
    const absl::Time started = absl::Now();
    grpc::Status status;
    if (plain) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(started + timeout));
      status = plain_stub->SayHello(&context, request, &reply);
    } else {
      sluice::client::CallOptions call;
      call.method = "/Greeter/SayHello";
      call.deadline = balancer->clock().Now() + timeout;
      status = metrics != nullptr
                   ? sluice::client::UnaryCall(*metrics, *balancer, &Greeter::Stub::SayHello, call,
                                               request, &reply)
                   : sluice::client::UnaryCall(*balancer, &Greeter::Stub::SayHello, call, request,
                                               &reply);
    }
    std::string backend;
    if (status.ok()) {
      std::printf("Greeter client received: %s\n", reply.message().c_str());
      // The reply names the backend: "Hello, you!, I am 127.0.0.11:50051".
      size_t at = reply.message().rfind("I am ");
      backend = at == std::string::npos ? "?" : reply.message().substr(at + 5);
      ++answered_by[backend];
    } else {
      ++failed;
      std::printf(
          "Greeter client call %d failed: %s: %s\n", i + 1,
          absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())).c_str(),
          status.error_message().c_str());
    }
    if (csv != nullptr) {
      std::fprintf(csv, "%lld,%.3f,%d,%s\n", static_cast<long long>(absl::ToUnixMillis(started)),
                   absl::ToDoubleMilliseconds(absl::Now() - started),
                   static_cast<int>(status.error_code()), backend.c_str());
      std::fflush(csv);
    }
    std::fflush(stdout);
  }
  if (csv != nullptr) std::fclose(csv);
  std::printf("calls per backend:");
  for (const auto& [backend, count] : answered_by) std::printf(" %s=%d", backend.c_str(), count);
  std::printf(" failed=%d\n", failed);
  return failed == 0 ? 0 : 1;
}
