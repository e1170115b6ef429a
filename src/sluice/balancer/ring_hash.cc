#include <algorithm>
#include <bit>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sluice/balancer/builtin_policies.h"
#include "sluice/balancer/config_reader.h"
#include "sluice/balancer/hash.h"
#include "sluice/balancer/pickable.h"

namespace sluice {
namespace {

constexpr absl::string_view kPolicyName = "ring_hash";
constexpr int64_t kMaxRingSize = int64_t{8} * 1024 * 1024;
// The lookup table over the ring's top hash bits has at most 2^kMaxTableBits + 1 entries.
constexpr int kMaxTableBits = 20;

class RingHashConfig final : public PolicyConfig {
 public:
  int64_t min_ring_size = 1024;
  int64_t max_ring_size = kMaxRingSize;
};

// Ring points per endpoint: weight x 2^shift, the same power of two for all. Rounding the
// scale to a power of two (rather than gRPC's exact min_ring_size / total) keeps each
// endpoint's point count, and so every surviving point, unchanged when a few endpoints come or
// go; the scale moves only when the total weight crosses a power of two. Rings above
// max_ring_size use a negative shift (weight / 2^k, at least one point each).
std::vector<uint64_t> PointCounts(const std::vector<PickableEndpoint>& endpoints,
                                  const RingHashConfig& config) {
  uint64_t total = 0;
  for (const auto& e : endpoints) total += e.weight;
  std::vector<uint64_t> counts;
  counts.reserve(endpoints.size());
  const uint64_t min_size = static_cast<uint64_t>(config.min_ring_size);
  const uint64_t max_size = static_cast<uint64_t>(config.max_ring_size);
  if (total <= max_size) {
    int shift = 0;
    while ((total << shift) < min_size && (total << (shift + 1)) <= max_size) ++shift;
    for (const auto& e : endpoints) counts.push_back(uint64_t{e.weight} << shift);
    return counts;
  }
  for (int shift = 1; shift < 64; ++shift) {
    uint64_t size = 0;
    counts.clear();
    for (const auto& e : endpoints) {
      counts.push_back(std::max<uint64_t>(1, e.weight >> shift));
      size += counts.back();
    }
    if (size <= max_size) break;
  }
  return counts;
}

// A sorted ring of (hash, endpoint) split into two arrays (the search touches only hashes),
// plus a table mapping the top bits of a hash to the ring range that can hold its successor,
// so a pick is a table load and a search over a handful of entries.
class RingHashPicker final : public Picker {
 public:
  RingHashPicker(const std::vector<PickerEndpoint>& input, const PickableSet& set,
                 const RingHashConfig& config) {
    if (set.empty()) return;
    const std::vector<uint64_t> counts = PointCounts(set.endpoints, config);
    struct Point {
      uint64_t hash;
      uint32_t endpoint;
    };
    std::vector<Point> points;
    points.reserve(std::accumulate(counts.begin(), counts.end(), uint64_t{0}));
    std::string key;
    for (size_t i = 0; i < set.size(); ++i) {
      const uint32_t index = set.endpoints[i].index;
      // "<address>_<n>", as gRPC and Envoy name ring points.
      key = absl::StrCat(input[index].endpoint.address, "_");
      const size_t prefix = key.size();
      for (uint64_t n = 0; n < counts[i]; ++n) {
        key.resize(prefix);
        absl::StrAppend(&key, n);
        points.push_back({Xxh64(key, 0), index});
      }
    }
    std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) {
      return a.hash != b.hash ? a.hash < b.hash : a.endpoint < b.endpoint;
    });
    hashes_.reserve(points.size());
    owners_.reserve(points.size());
    for (const Point& p : points) {
      hashes_.push_back(p.hash);
      owners_.push_back(p.endpoint);
    }
    // About one ring point per table bucket.
    table_bits_ = std::min(kMaxTableBits, static_cast<int>(std::bit_width(hashes_.size())) - 1);
    const size_t buckets = size_t{1} << table_bits_;
    table_.resize(buckets + 1);
    size_t pos = 0;
    for (size_t b = 0; b < buckets; ++b) {
      const uint64_t bucket_start = table_bits_ == 0 ? 0 : uint64_t{b} << (64 - table_bits_);
      while (pos < hashes_.size() && hashes_[pos] < bucket_start) ++pos;
      table_[b] = static_cast<uint32_t>(pos);
    }
    table_[buckets] = static_cast<uint32_t>(hashes_.size());
  }

  PickResult Pick(const PickArgs& args) const override {
    if (hashes_.empty()) return PickResult::None();
    const uint64_t hash = args.hash_key.has_value() ? *args.hash_key : args.random->Next();
    const size_t bucket = table_bits_ == 0 ? 0 : static_cast<size_t>(hash >> (64 - table_bits_));
    // Every point before table_[bucket] is below the bucket, every point from
    // table_[bucket + 1] on is above it: the first point >= hash is in between or is that one.
    const uint64_t* first = hashes_.data() + table_[bucket];
    const uint64_t* last = hashes_.data() + table_[bucket + 1];
    size_t pos = static_cast<size_t>(std::lower_bound(first, last, hash) - hashes_.data());
    if (pos == hashes_.size()) pos = 0;  // past the last point: wrap around the ring
    return PickResult::Chosen(owners_[pos]);
  }

 private:
  std::vector<uint64_t> hashes_;
  std::vector<uint32_t> owners_;  // index into the input vector, per ring point
  std::vector<uint32_t> table_;
  int table_bits_ = 0;
};

class RingHashFactory final : public PolicyFactory {
 public:
  absl::string_view name() const override { return kPolicyName; }

  absl::StatusOr<std::shared_ptr<const PolicyConfig>> ParseConfig(
      const nlohmann::json& config) const override {
    absl::StatusOr<JsonReader> reader =
        ReadPolicyConfig(kPolicyName, config, {"min_ring_size", "max_ring_size"});
    if (!reader.ok()) return reader.status();
    auto parsed = std::make_shared<RingHashConfig>();
    if (absl::Status s = reader->ReadInt("min_ring_size", 1, kMaxRingSize, &parsed->min_ring_size);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = reader->ReadInt("max_ring_size", 1, kMaxRingSize, &parsed->max_ring_size);
        !s.ok()) {
      return s;
    }
    if (parsed->min_ring_size > parsed->max_ring_size) {
      return reader->FieldError(
          "min_ring_size", absl::StrCat("must not be more than max_ring_size (",
                                        parsed->max_ring_size, "), got ", parsed->min_ring_size));
    }
    return std::shared_ptr<const PolicyConfig>(std::move(parsed));
  }

  std::unique_ptr<Picker> CreatePicker(std::vector<PickerEndpoint> endpoints,
                                       const PolicyConfig& config,
                                       Random& /*random*/) const override {
    const RingHashConfig defaults;
    return std::make_unique<RingHashPicker>(endpoints, SelectPickable(endpoints),
                                            ConfigAs(config, kPolicyName, defaults));
  }
};

}  // namespace

void RegisterRingHashPolicy(PolicyRegistry& registry) {
  registry.Register(std::make_unique<RingHashFactory>());
}

}  // namespace sluice
