#include "sluice/core/endpoint.h"

#include <algorithm>

namespace sluice {

EndpointSet::EndpointSet(std::vector<Endpoint> endpoints) {
  // Stable sort keeps the given order among equal addresses, so "last one wins" is exact.
  std::stable_sort(endpoints.begin(), endpoints.end(),
                   [](const Endpoint& a, const Endpoint& b) { return a.address < b.address; });
  for (auto& endpoint : endpoints) {
    if (!endpoints_.empty() && endpoints_.back().address == endpoint.address) {
      endpoints_.back() = std::move(endpoint);
    } else {
      endpoints_.push_back(std::move(endpoint));
    }
  }
}

const Endpoint* EndpointSet::Find(const std::string& address) const {
  auto it = std::lower_bound(
      endpoints_.begin(), endpoints_.end(), address,
      [](const Endpoint& e, const std::string& addr) { return e.address < addr; });
  if (it == endpoints_.end() || it->address != address) return nullptr;
  return &*it;
}

std::vector<std::string> EndpointSet::Addresses() const {
  std::vector<std::string> addresses;
  addresses.reserve(endpoints_.size());
  for (const auto& e : endpoints_) addresses.push_back(e.address);
  return addresses;
}

EndpointSetDiff DiffEndpointSets(const EndpointSet& before, const EndpointSet& after) {
  EndpointSetDiff diff;
  const auto& a = before.endpoints();
  const auto& b = after.endpoints();
  size_t i = 0, j = 0;
  // Both sides are sorted by address: one merge pass.
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && a[i].address < b[j].address)) {
      diff.removed.push_back(a[i++]);
    } else if (i == a.size() || b[j].address < a[i].address) {
      diff.added.push_back(b[j++]);
    } else {
      if (!(a[i] == b[j])) diff.updated.push_back(b[j]);
      ++i;
      ++j;
    }
  }
  return diff;
}

}  // namespace sluice
