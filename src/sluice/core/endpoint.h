#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sluice {

// One backend instance as discovery reports it.
struct Endpoint {
  // "ip:port" or "[ipv6]:port": what a connection dials.
  std::string address;
  // Relative share for weighted policies; endpoints without one get kDefaultWeight.
  static constexpr uint32_t kDefaultWeight = 1;
  uint32_t weight = kDefaultWeight;
  std::string zone;
  std::string version;
  // A draining endpoint finishes its calls but gets no new ones.
  bool draining = false;
  // Every metadata field as compact JSON text (strings keep their quotes), including the
  // typed ones above, so nothing a registrant wrote is lost.
  std::map<std::string, std::string> metadata;

  bool operator==(const Endpoint&) const = default;
};

// A complete snapshot of a service's endpoints, sorted by address, one entry per address.
class EndpointSet {
 public:
  EndpointSet() = default;
  // Sorts and removes duplicate addresses (the last one given wins).
  explicit EndpointSet(std::vector<Endpoint> endpoints);

  const std::vector<Endpoint>& endpoints() const { return endpoints_; }
  size_t size() const { return endpoints_.size(); }
  bool empty() const { return endpoints_.empty(); }
  const Endpoint* Find(const std::string& address) const;
  std::vector<std::string> Addresses() const;

  bool operator==(const EndpointSet&) const = default;

 private:
  std::vector<Endpoint> endpoints_;
};

// What changed between two snapshots: computed in one place for every discovery source.
struct EndpointSetDiff {
  std::vector<Endpoint> added;
  std::vector<Endpoint> removed;
  // Same address, different metadata (weight, draining, ...): the new version.
  std::vector<Endpoint> updated;
  bool empty() const { return added.empty() && removed.empty() && updated.empty(); }
};

EndpointSetDiff DiffEndpointSets(const EndpointSet& before, const EndpointSet& after);

}  // namespace sluice
