#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"

namespace sluice {

// XXH64 (xxHash, 64-bit), written from its published specification. The ring hash places
// endpoints with it, as gRPC's and Envoy's ring_hash do ("<address>_<n>", seed 0), so the same
// addresses land on the same ring points everywhere.
uint64_t Xxh64(absl::string_view data, uint64_t seed = 0);

// The hash of a call's key (say, a header value) to pass as PickArgs::hash_key for ring_hash.
// XXH64 with seed 0, as gRPC hashes a header for its ring_hash policy.
inline uint64_t HashCallKey(absl::string_view key) { return Xxh64(key, 0); }

}  // namespace sluice
