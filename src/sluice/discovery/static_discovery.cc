#include <string>
#include <utility>
#include <vector>

#include "sluice/discovery/sources.h"

namespace sluice::discovery {
namespace {

class StaticDiscovery final : public Discovery {
 public:
  explicit StaticDiscovery(std::vector<std::string> addresses) : addresses_(std::move(addresses)) {}
  ~StaticDiscovery() override { Stop(); }

  void Start(EndpointSetCallback callback) override {
    SetCallback(std::move(callback));
    std::vector<Endpoint> endpoints;
    endpoints.reserve(addresses_.size());
    for (const std::string& address : addresses_) {
      Endpoint endpoint;
      endpoint.address = address;
      endpoints.push_back(std::move(endpoint));
    }
    Publish(EndpointSet(std::move(endpoints)));
  }

  void Stop() override { ClearCallback(); }

 private:
  const std::vector<std::string> addresses_;
};

}  // namespace

std::unique_ptr<Discovery> NewStaticDiscovery(std::vector<std::string> addresses) {
  return std::make_unique<StaticDiscovery>(std::move(addresses));
}

}  // namespace sluice::discovery
