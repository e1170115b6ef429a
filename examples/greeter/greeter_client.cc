// The seed's Greeter client in C++: calls SayHello(name) --calls times, --interval apart, and
// prints each reply. --target takes a plain address or a discovery target (etcd://, static://,
// dns://). This version connects to one backend found by discovery, as a plain gRPC client
// does: every call goes to the same backend (the seed's observation).
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "helloworld.grpc.pb.h"
#include "sluice/core/log.h"
#include "sluice/discovery/discovery.h"

int main(int argc, char** argv) {
  CLI::App app{"The seed's Greeter client: calls SayHello and prints each reply."};
  std::string target = "127.0.0.1:50051";
  int calls = 50;
  std::string interval_text = "2s";
  std::string timeout_text = "5s";
  std::string name = "you";
  app.add_option("--target", target,
                 "IP:PORT, or etcd://HOST:PORT/PREFIX, static://IP:PORT,..., dns://NAME:PORT")
      ->capture_default_str();
  app.add_option("--calls", calls, "Number of calls")->capture_default_str();
  app.add_option("--interval", interval_text, "Pause between calls")->capture_default_str();
  app.add_option("--timeout", timeout_text, "Deadline of each call")->capture_default_str();
  app.add_option("--name", name, "HelloRequest.name")->capture_default_str();
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
  auto discovery = sluice::discovery::CreateDiscovery(target);
  if (!discovery.ok()) {
    std::fprintf(stderr, "greeter_client: --target: %s\n",
                 std::string(discovery.status().message()).c_str());
    return 2;
  }
  (*discovery)->Start([](const sluice::EndpointSet&, const sluice::EndpointSetDiff&) {});
  if (!(*discovery)->WaitForFirstReport(timeout) || (*discovery)->Current().empty()) {
    std::fprintf(stderr, "greeter_client: no endpoints found for %s\n", target.c_str());
    return 1;
  }
  std::string backend = (*discovery)->Current().endpoints().front().address;
  auto stub = Greeter::NewStub(grpc::CreateChannel(backend, grpc::InsecureChannelCredentials()));

  int failed = 0;
  for (int i = 0; i < calls; ++i) {
    if (i > 0) std::this_thread::sleep_for(absl::ToChronoNanoseconds(interval));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
    HelloRequest request;
    request.set_name(name);
    HelloReply reply;
    grpc::Status status = stub->SayHello(&context, request, &reply);
    if (status.ok()) {
      std::printf("Greeter client received: %s\n", reply.message().c_str());
    } else {
      ++failed;
      std::printf("Greeter client call %d failed: %s: %s\n", i + 1,
                  absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())).c_str(),
                  status.error_message().c_str());
    }
    std::fflush(stdout);
  }
  (*discovery)->Stop();
  return failed == 0 ? 0 : 1;
}
