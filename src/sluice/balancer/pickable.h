#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "sluice/balancer/endpoint_stats.h"
#include "sluice/balancer/picker.h"
#include "sluice/core/random.h"

namespace sluice {

// Helpers shared by the policies; not part of the balancer's public API.

// What a picker keeps per pickable endpoint: only the hot data, packed, so a pick touches few
// cache lines even at 10,000 endpoints.
struct PickableEndpoint {
  const EndpointStats* stats;
  uint32_t index;   // into the vector the picker was built from
  uint32_t weight;  // >= 1
};

// The endpoints a picker may choose from, in input order: not draining, and of weight > 0
// unless every non-draining endpoint has weight 0 (then all count as weight 1). Also owns the
// stats (creating private ones for endpoints that came without).
struct PickableSet {
  std::vector<PickableEndpoint> endpoints;
  std::vector<std::shared_ptr<EndpointStats>> owned_stats;
  bool equal_weights = true;
  uint64_t total_weight = 0;

  size_t size() const { return endpoints.size(); }
  bool empty() const { return endpoints.empty(); }
};

PickableSet SelectPickable(const std::vector<PickerEndpoint>& endpoints);

// Fills out[0..count) with `count` distinct positions in [0, n), uniformly and in uniformly
// random order (callers that keep the first of equal candidates need the order random too), by
// redrawing repeats. count must be < n: a redraw then succeeds with probability >= 1/n.
void DrawDistinctPositions(size_t n, size_t count, Random& random, size_t* out);

// Draws a position in [0, n) with probability weight/total in O(1): Vose's alias method, one
// random word per draw. Immutable after construction, so any thread may draw.
class WeightedSampler {
 public:
  WeightedSampler() = default;
  explicit WeightedSampler(const std::vector<PickableEndpoint>& endpoints);

  size_t Draw(Random& random) const {
    const uint64_t r = random.Next();
    // High half picks the column, low half tosses its biased coin: independent bits.
    const size_t column = static_cast<size_t>(((r >> 32) * columns_.size()) >> 32);
    const Column& c = columns_[column];
    return static_cast<uint32_t>(r) < c.keep_threshold ? column : c.alias;
  }

 private:
  // Keep the column when the coin is below keep_threshold / 2^32, else take its alias (a full
  // column is its own alias). 8 bytes, so 10,000 endpoints fit in 80 KB.
  struct Column {
    uint32_t keep_threshold;
    uint32_t alias;
  };
  std::vector<Column> columns_;
};

}  // namespace sluice
