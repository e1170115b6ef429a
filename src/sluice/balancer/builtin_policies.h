#pragma once

#include "sluice/balancer/policy.h"

namespace sluice {

// Registers every policy below. Explicit, called once by whoever owns the registry; there are
// no static initialisers.
void RegisterBuiltinPolicies(PolicyRegistry& registry);

// "round_robin": each endpoint in turn, from a random starting point. Ignores weights.
// Config: none.
void RegisterRoundRobinPolicy(PolicyRegistry& registry);

// "random": a random endpoint, in proportion to weight. Config: none.
void RegisterRandomPolicy(PolicyRegistry& registry);

// "least_request": power of `choice_count` random choices (Envoy's LEAST_REQUEST): draw
// candidates in proportion to weight, keep the one with the fewest calls in flight per unit of
// weight. Config: choice_count (integer 2..64, default 2), active_request_bias (number 0..10,
// default 1; 0 ignores load, higher avoids busy endpoints harder).
void RegisterLeastRequestPolicy(PolicyRegistry& registry);

// "peak_ewma": power of two choices (Linkerd) over cost = peak-EWMA latency x (in flight + 1).
// Ignores weights. Config: default_rtt (duration, default "30ms": the estimate of an endpoint
// with no completed call yet), decay (duration, default "10s": the EWMA time constant).
void RegisterPeakEwmaPolicy(PolicyRegistry& registry);

// "weighted_round_robin": a smooth earliest-deadline-first interleaving by weight (5,1,1 gives
// a a a b c a a), the same fixed cycle for every client from a random starting point.
// Config: none.
void RegisterWeightedRoundRobinPolicy(PolicyRegistry& registry);

// "ring_hash": consistent hashing on PickArgs::hash_key (see HashCallKey); calls without a key
// go to a random ring point. Each endpoint owns ring points in proportion to its weight.
// Config: min_ring_size (default 1024), max_ring_size (default 8388608), both 1..8388608.
void RegisterRingHashPolicy(PolicyRegistry& registry);

// "prequal": Prequal's hot-cold rule (NSDI 2024) on the caller's own signals: probe `probes`
// distinct random endpoints, drop those whose calls in flight are above the `hot_quantile`
// quantile of the probed ones, pick the lowest peak-EWMA latency among the rest. Ignores
// weights. Config: probes (integer 2..16, default 3), hot_quantile (0..1, default 0.25),
// default_rtt (default "30ms"), decay (the latency EWMA time constant, default "1s"),
// report_max_age (how long a server-reported load counts, default "1s"). See docs/balancing.md.
void RegisterPrequalPolicy(PolicyRegistry& registry);

}  // namespace sluice
