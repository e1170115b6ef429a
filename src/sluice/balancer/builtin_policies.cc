#include "sluice/balancer/builtin_policies.h"

namespace sluice {

void RegisterBuiltinPolicies(PolicyRegistry& registry) {
  RegisterRoundRobinPolicy(registry);
  RegisterRandomPolicy(registry);
  RegisterLeastRequestPolicy(registry);
  RegisterPeakEwmaPolicy(registry);
  RegisterWeightedRoundRobinPolicy(registry);
  RegisterRingHashPolicy(registry);
  RegisterPrequalPolicy(registry);
}

}  // namespace sluice
