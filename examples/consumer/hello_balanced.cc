// Calls the Greeter through Sluice's client library, built against an installed Sluice
// (find_package(Sluice)): every call is balanced on its own. Prints each reply, then how many
// calls each backend answered, and exits 1 if any call failed.
//   hello_balanced --target etcd://127.0.0.1:2379/services/greeter [--calls 30] [--min-ready N]
// --min-ready waits (at most 10 s) until N backends are connected before the first call.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "helloworld.grpc.pb.h"
#include "sluice/client/balancer.h"
#include "sluice/client/call.h"

int main(int argc, char** argv) {
  std::string target;
  int calls = 30;
  int min_ready = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--target") == 0) target = argv[i + 1];
    if (std::strcmp(argv[i], "--calls") == 0) calls = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--min-ready") == 0) min_ready = std::atoi(argv[i + 1]);
  }
  if (target.empty() || calls <= 0) {
    std::fprintf(stderr, "usage: hello_balanced --target TARGET [--calls N] [--min-ready N]\n");
    return 2;
  }
  sluice::client::BalancerOptions options;
  options.target = target;
  options.retry.idempotent_methods = {"/Greeter/SayHello"};
  auto balancer = sluice::client::Balancer::Create(options);
  if (!balancer.ok()) {
    std::fprintf(stderr, "hello_balanced: %s\n", std::string(balancer.status().message()).c_str());
    return 1;
  }
  if (!(*balancer)->WaitForReady(min_ready, absl::Seconds(10))) {
    std::fprintf(stderr, "hello_balanced: fewer than %d backends ready after 10 s\n", min_ready);
  }
  std::map<std::string, int> answered_by;
  int failed = 0;
  for (int i = 0; i < calls; ++i) {
    HelloRequest request;
    request.set_name("consumer");
    HelloReply reply;
    const grpc::Status status = sluice::client::UnaryCall(
        **balancer, &Greeter::Stub::SayHello,
        {.method = "/Greeter/SayHello", .deadline = (*balancer)->clock().Now() + absl::Seconds(5)},
        request, &reply);
    if (!status.ok()) {
      ++failed;
      std::printf("call %d failed: %s\n", i, status.error_message().c_str());
      continue;
    }
    std::printf("%s\n", reply.message().c_str());
    const size_t at = reply.message().rfind("I am ");
    ++answered_by[at == std::string::npos ? "?" : reply.message().substr(at + 5)];
  }
  for (const auto& [backend, count] : answered_by)
    std::printf("answered_by %s %d\n", backend.c_str(), count);
  return failed == 0 ? 0 : 1;
}
