#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>

#include "absl/time/time.h"
#include "sluice/balancer/endpoint_stats.h"
#include "sluice/core/endpoint.h"
#include "sluice/core/random.h"

namespace sluice {

// One endpoint as a picker is built over it. `stats` is shared with the balancer and with every
// other picker generation; a null `stats` gets a private one that never sees a call.
struct PickerEndpoint {
  Endpoint endpoint;
  std::shared_ptr<EndpointStats> stats;
};

// Everything one pick may depend on besides the picker's snapshot. Passing the caller's own
// Random (one per thread) keeps pickers lock-free, and deterministic under a seeded generator.
struct PickArgs {
  // Must not be null for policies that decide by chance (all but round robin and weighted round
  // robin); ring_hash uses it only when there is no hash_key.
  Random* random = nullptr;
  // The caller's clock; latency estimates decay with it.
  absl::Time now = absl::UnixEpoch();
  // For ring_hash: the call's hash, e.g. HashCallKey(header value). Other policies ignore it.
  std::optional<uint64_t> hash_key;
};

// The outcome of one pick: an index into the endpoint vector the picker was built from (so the
// caller finds its channel and stats there), or none when the picker has no pickable endpoint.
class PickResult {
 public:
  static PickResult None() { return PickResult(kNone); }
  static PickResult Chosen(size_t index) { return PickResult(index); }

  bool has_endpoint() const { return index_ != kNone; }
  explicit operator bool() const { return has_endpoint(); }
  // Only meaningful when has_endpoint().
  size_t index() const { return index_; }

  bool operator==(const PickResult&) const = default;

 private:
  static constexpr size_t kNone = std::numeric_limits<size_t>::max();
  explicit PickResult(size_t index) : index_(index) {}
  size_t index_;
};

// An immutable snapshot of one endpoint set under one policy: the data plane. Pick() is called
// from any thread, concurrently; it takes no lock and allocates nothing (only relaxed atomics,
// such as round robin's counter, change). Draining endpoints are never picked; weight-0
// endpoints are picked only if every non-draining endpoint has weight 0.
// Pick() does not count the call: the caller calls stats->OnCallStarted() when it sends it.
class Picker {
 public:
  virtual ~Picker();
  virtual PickResult Pick(const PickArgs& args) const = 0;
};

}  // namespace sluice
