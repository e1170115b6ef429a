#include "sluice/balancer/pickable.h"

#include <algorithm>
#include <cmath>

namespace sluice {

PickableSet SelectPickable(const std::vector<PickerEndpoint>& endpoints) {
  PickableSet set;
  bool any_weighted = false;
  for (const PickerEndpoint& e : endpoints) {
    if (!e.endpoint.draining && e.endpoint.weight > 0) any_weighted = true;
  }
  set.endpoints.reserve(endpoints.size());
  set.owned_stats.reserve(endpoints.size());
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const PickerEndpoint& e = endpoints[i];
    if (e.endpoint.draining) continue;
    if (any_weighted && e.endpoint.weight == 0) continue;
    std::shared_ptr<EndpointStats> stats = e.stats ? e.stats : std::make_shared<EndpointStats>();
    const uint32_t weight = any_weighted ? e.endpoint.weight : 1;
    if (!set.endpoints.empty() && weight != set.endpoints.front().weight) {
      set.equal_weights = false;
    }
    set.total_weight += weight;
    set.endpoints.push_back({stats.get(), static_cast<uint32_t>(i), weight});
    set.owned_stats.push_back(std::move(stats));
  }
  return set;
}

void DrawDistinctPositions(size_t n, size_t count, Random& random, size_t* out) {
  for (size_t d = 0; d < count; ++d) {
    size_t candidate;
    bool repeat;
    do {
      candidate = static_cast<size_t>(random.Uniform(n));
      repeat = false;
      for (size_t e = 0; e < d; ++e) repeat |= out[e] == candidate;
    } while (repeat);
    out[d] = candidate;
  }
}

WeightedSampler::WeightedSampler(const std::vector<PickableEndpoint>& endpoints) {
  const size_t n = endpoints.size();
  if (n == 0) return;
  uint64_t total = 0;
  for (const auto& e : endpoints) total += e.weight;
  // Scaled so the mean column holds probability 1.
  std::vector<double> scaled(n);
  std::vector<uint32_t> small, large;
  for (size_t i = 0; i < n; ++i) {
    scaled[i] = static_cast<double>(endpoints[i].weight) * static_cast<double>(n) /
                static_cast<double>(total);
    (scaled[i] < 1.0 ? small : large).push_back(static_cast<uint32_t>(i));
  }
  columns_.resize(n);
  while (!small.empty() && !large.empty()) {
    const uint32_t s = small.back();
    small.pop_back();
    const uint32_t l = large.back();
    const double threshold = std::min(std::round(scaled[s] * 4294967296.0), 4294967295.0);
    columns_[s] = {static_cast<uint32_t>(threshold), l};
    scaled[l] -= 1.0 - scaled[s];
    if (scaled[l] < 1.0) {
      large.pop_back();
      small.push_back(l);
    }
  }
  // Whatever is left holds probability 1 up to rounding: always keep it.
  for (uint32_t i : small) columns_[i] = {0, i};
  for (uint32_t i : large) columns_[i] = {0, i};
}

}  // namespace sluice
