#include "sluice/balancer/endpoint_manager.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "sluice/core/log.h"

namespace sluice {

EndpointManager::EndpointManager(std::string service_name, std::string target,
                                 ConfiguredPolicy policy, OutlierDetector& outlier,
                                 TransportState initial_transport, Clock& clock, uint64_t seed,
                                 Hooks hooks)
    : service_name_(std::move(service_name)),
      target_(std::move(target)),
      policy_(std::move(policy)),
      outlier_(outlier),
      initial_transport_(initial_transport),
      clock_(clock),
      hooks_(std::move(hooks)),
      control_random_(seed),
      pick_random_(seed ^ 0x5851f42d4c957f2dULL),
      snapshot_(std::make_shared<const PickerSnapshot>()) {}

std::vector<std::shared_ptr<EndpointHandle>> EndpointManager::OnEndpoints(
    const EndpointSet& set, const EndpointSetDiff& diff) {
  discovery_reported_ = true;
  known_endpoints_ = set.size();
  std::vector<std::shared_ptr<EndpointHandle>> joined;
  for (const Endpoint& removed : diff.removed) {
    auto it = entries_.find(removed.address);
    if (it == entries_.end()) continue;
    it->second.endpoint->removed = true;
    LogInfo("balancer ", service_name_, ": endpoint ", removed.address,
            " removed; its calls in flight finish");
    entries_.erase(it);
  }
  for (const Endpoint& updated : diff.updated) {
    auto it = entries_.find(updated.address);
    if (it == entries_.end()) continue;
    // Same connection and stats, new metadata (weight, draining).
    std::shared_ptr<EndpointHandle> old = std::move(it->second.endpoint);
    it->second.endpoint = hooks_.make_handle(updated, old.get());
    old->removed = true;
    joined.push_back(it->second.endpoint);
  }
  for (const Endpoint& added : diff.added) {
    Entry entry{.endpoint = hooks_.make_handle(added, nullptr), .transport = initial_transport_};
    LogInfo("balancer ", service_name_, ": endpoint ", added.address, " added");
    joined.push_back(entry.endpoint);
    entries_[added.address] = std::move(entry);
  }
  Rebuild();
  return joined;
}

EndpointManager::Entry* EndpointManager::FindEntry(const EndpointHandle& endpoint) {
  auto it = entries_.find(endpoint.address());
  if (it == entries_.end() || it->second.endpoint.get() != &endpoint) return nullptr;
  return &it->second;
}

EndpointManager::Outlook EndpointManager::OutlookOf(const Entry& entry) {
  if (entry.ejection.ejected || entry.health == HealthState::kNotServing) return Outlook::kOut;
  if (IsPickable(entry.transport, entry.health)) return Outlook::kPickable;
  // Not pickable yet, but nothing has said no: a connection or a first health answer is due.
  const bool transport_coming = entry.transport == TransportState::kIdle ||
                                entry.transport == TransportState::kConnecting ||
                                entry.transport == TransportState::kReady;
  return transport_coming ? Outlook::kComing : Outlook::kOut;
}

void EndpointManager::Update(const EndpointHandle& endpoint,
                             absl::FunctionRef<void(Entry&)> change) {
  Entry* entry = FindEntry(endpoint);
  if (entry == nullptr) return;
  const bool was_pickable = IsPickable(entry->transport, entry->health);
  const Outlook before = OutlookOf(*entry);
  change(*entry);
  // Pickability feeds outlier detection even while ejected; the outlook feeds the snapshot.
  if (was_pickable != IsPickable(entry->transport, entry->health) || OutlookOf(*entry) != before) {
    Rebuild();
  }
}

void EndpointManager::SetTransport(const std::shared_ptr<EndpointHandle>& endpoint,
                                   TransportState state) {
  Update(*endpoint, [state](Entry& entry) { entry.transport = state; });
}

void EndpointManager::SetHealth(const std::shared_ptr<EndpointHandle>& endpoint,
                                HealthState state) {
  Update(*endpoint, [state](Entry& entry) { entry.health = state; });
}

std::vector<OutlierDetector::Member> EndpointManager::Members() {
  std::vector<OutlierDetector::Member> members;
  members.reserve(entries_.size());
  for (auto& [address, entry] : entries_) {
    members.push_back({&address, IsPickable(entry.transport, entry.health), &entry.ejection});
  }
  return members;
}

void EndpointManager::Eject(EndpointHandle& endpoint) {
  Entry* entry = FindEntry(endpoint);
  if (entry == nullptr) {
    endpoint.ejection_requested = false;
    return;
  }
  std::vector<OutlierDetector::Member> members = Members();
  size_t index = 0;
  while (members[index].ejection != &entry->ejection) ++index;
  if (outlier_.Eject(members, index, endpoint) == OutlierDetector::EjectOutcome::kEjected) {
    Rebuild();
  }
}

void EndpointManager::OnTick() {
  // Runs 20 times a second per balancer: cheap unless some endpoint is ejected.
  const bool any_ejected = std::any_of(entries_.begin(), entries_.end(), [](const auto& entry) {
    return entry.second.ejection.ejected;
  });
  if (any_ejected) {
    std::vector<OutlierDetector::Member> members = Members();
    if (outlier_.ReleaseExpired(members)) Rebuild();
  }
  ResolvePendingPicks();
}

void EndpointManager::AddPendingPick(PendingPick pick) {
  pending_picks_.push_back(std::move(pick));
  ResolvePendingPicks();
}

void EndpointManager::Clear(const std::string& why) {
  for (auto& [address, entry] : entries_) entry.endpoint->removed = true;
  entries_.clear();
  std::vector<PendingPick> failing = std::move(pending_picks_);
  pending_picks_.clear();
  for (auto& pending : failing) pending.done(absl::UnavailableError(why));
}

absl::StatusOr<std::shared_ptr<EndpointHandle>> EndpointManager::TryPick(
    const PickerSnapshot& snapshot, std::optional<uint64_t> hash_key, const EndpointHandle* avoid) {
  if (snapshot.picker == nullptr || snapshot.endpoints.empty()) return NoEndpointError(snapshot);
  PickArgs args;
  args.random = &pick_random_;
  args.now = clock_.Now();
  args.hash_key = hash_key;
  PickResult result = snapshot.picker->Pick(args);
  if (!result) return NoEndpointError(snapshot);
  size_t index = result.index();
  const auto& endpoints = snapshot.endpoints;
  if (avoid != nullptr && endpoints[index].get() == avoid && endpoints.size() > 1) {
    // A retry should go elsewhere: ask the policy again, then fall back to the next one.
    for (int i = 0; i < 3 && endpoints[index].get() == avoid; ++i) {
      PickResult again = snapshot.picker->Pick(args);
      if (again) index = again.index();
    }
    if (endpoints[index].get() == avoid) index = (index + 1) % endpoints.size();
  }
  return endpoints[index];
}

std::shared_ptr<EndpointHandle> EndpointManager::FindShared(const EndpointHandle& endpoint) const {
  // The data plane holds a reference, not the shared_ptr; every pickable endpoint is in the
  // current snapshot.
  auto current = snapshot();
  for (const auto& candidate : current->endpoints) {
    if (candidate.get() == &endpoint) return candidate;
  }
  return nullptr;
}

std::vector<EndpointView> EndpointManager::Views() const {
  std::lock_guard<std::mutex> lock(views_mu_);
  return views_;
}

absl::Status EndpointManager::NoEndpointError(const PickerSnapshot& snapshot) const {
  if (!snapshot.discovery_reported) {
    return absl::UnavailableError(absl::StrCat(
        "service '", service_name_, "': discovery has not found any endpoint yet (", target_, ")"));
  }
  if (snapshot.known_endpoints == 0) {
    return absl::UnavailableError(
        absl::StrCat("service '", service_name_, "' has no registered endpoints (", target_, ")"));
  }
  return absl::UnavailableError(absl::StrCat("service '", service_name_, "': none of its ",
                                             snapshot.known_endpoints,
                                             " endpoints is ready (connecting, failing or "
                                             "ejected)"));
}

void EndpointManager::Rebuild() {
  std::vector<OutlierDetector::Member> members = Members();
  outlier_.ReleaseBeyondLimits(members);
  std::vector<PickerEndpoint> pickable;
  auto next = std::make_shared<PickerSnapshot>();
  std::vector<EndpointView> views;
  size_t not_ready = 0;
  for (const auto& [address, entry] : entries_) {
    const bool ready = IsPickable(entry.transport, entry.health);
    const char* state = entry.ejection.ejected ? "ejected"
                        : entry.health == HealthState::kNotServing
                            ? "not_serving"
                            : TransportStateName(entry.transport);
    views.push_back({entry.endpoint, state, entry.ejection.ejections});
    if (entry.transport != TransportState::kReady) ++not_ready;
    if (OutlookOf(entry) == Outlook::kComing) ++next->coming;
    if (!ready || entry.ejection.ejected) continue;
    pickable.push_back({entry.endpoint->endpoint(), entry.endpoint->shared_stats()});
    next->endpoints.push_back(entry.endpoint);
  }
  next->picker = policy_.CreatePicker(std::move(pickable), control_random_);
  next->known_endpoints = known_endpoints_;
  next->discovery_reported = discovery_reported_;
  {
    std::lock_guard<std::mutex> lock(views_mu_);
    views_ = std::move(views);
  }
  snapshot_.store(std::move(next), std::memory_order_release);
  if (hooks_.published) hooks_.published(not_ready);
  ResolvePendingPicks();
}

void EndpointManager::ResolvePendingPicks() {
  if (pending_picks_.empty()) return;
  auto current = snapshot();
  const absl::Time now = clock_.Now();
  std::vector<PendingPick> waiting = std::move(pending_picks_);
  pending_picks_.clear();
  for (auto& pending : waiting) {
    auto picked = TryPick(*current, pending.hash_key, pending.avoid);
    if (picked.ok() || now >= pending.deadline ||
        (!pending.wait_for_ready && current->NothingComing())) {
      pending.done(std::move(picked));
    } else {
      pending_picks_.push_back(std::move(pending));
    }
  }
}

}  // namespace sluice
