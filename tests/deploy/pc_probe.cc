// Built with `pkg-config --cflags --libs sluice` against an installed Sluice: discovers a
// static target with the client library and prints the endpoints once all are ready.
#include <cstdio>
#include <string>

#include "sluice/client/balancer.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: pc_probe TARGET COUNT\n");
    return 2;
  }
  sluice::client::BalancerOptions options;
  options.target = argv[1];
  auto balancer = sluice::client::Balancer::Create(options);
  if (!balancer.ok()) {
    std::fprintf(stderr, "pc_probe: %s\n", std::string(balancer.status().message()).c_str());
    return 1;
  }
  if (!(*balancer)->WaitForReady(std::stoul(argv[2]), absl::Seconds(20))) {
    std::fprintf(stderr, "pc_probe: endpoints not ready\n");
    return 1;
  }
  for (const auto& b : (*balancer)->Backends())
    std::printf("%s %s\n", b.address.c_str(), b.state.c_str());
  return 0;
}
