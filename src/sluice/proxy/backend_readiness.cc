#include "sluice/proxy/backend_readiness.h"

#include <algorithm>

namespace sluice::proxy {

BackendReadiness::BackendReadiness(Clock& clock, const BackoffOptions& backoff, uint64_t seed)
    : clock_(clock), backoff_options_(backoff), random_(seed) {}

bool BackendReadiness::Prune(Target& target) {
  auto& watchers = target.watchers;
  watchers.erase(std::remove_if(watchers.begin(), watchers.end(),
                                [](const Watcher& w) {
                                  auto endpoint = w.endpoint.lock();
                                  return endpoint == nullptr || endpoint->removed;
                                }),
                 watchers.end());
  return !watchers.empty();
}

BackendReadiness::Target* BackendReadiness::Find(const std::string& address) {
  auto it = targets_.find(address);
  if (it == targets_.end()) return nullptr;
  if (!Prune(it->second)) {
    targets_.erase(it);
    return nullptr;
  }
  return &it->second;
}

void BackendReadiness::SetState(Target& target, TransportState state) {
  if (target.state == state) return;
  target.state = state;
  // Under the lock: Unwatch then knows that no report to its reporter is under way.
  for (const Watcher& w : target.watchers) {
    if (auto endpoint = w.endpoint.lock()) w.reporter->ReportTransport(endpoint, state);
  }
}

void BackendReadiness::AskProbe(const std::string& address, Target& target, absl::Time at) {
  if (target.probe == Target::Probe::kAsked) return;
  target.probe_at = at;
  if (!prober_) {
    target.probe = Target::Probe::kWaitingForProber;
    return;
  }
  target.probe = Target::Probe::kAsked;
  prober_(address, at);
}

void BackendReadiness::Watch(const std::shared_ptr<EndpointHandle>& endpoint,
                             ReadinessReporter& reporter) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string& address = endpoint->address();
  Target* target = Find(address);
  if (target == nullptr) {
    target = &targets_.try_emplace(address, backoff_options_, &random_).first->second;
    target->watchers.push_back({endpoint, &reporter});
    reporter.ReportTransport(endpoint, target->state);
    AskProbe(address, *target, clock_.Now());
    return;
  }
  target->watchers.push_back({endpoint, &reporter});
  reporter.ReportTransport(endpoint, target->state);
}

void BackendReadiness::Unwatch(ReadinessReporter& reporter) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = targets_.begin(); it != targets_.end();) {
    auto& watchers = it->second.watchers;
    watchers.erase(std::remove_if(watchers.begin(), watchers.end(),
                                  [&](const Watcher& w) { return w.reporter == &reporter; }),
                   watchers.end());
    it = watchers.empty() ? targets_.erase(it) : std::next(it);
  }
}

void BackendReadiness::SetProber(Prober prober) {
  std::lock_guard<std::mutex> lock(mu_);
  prober_ = std::move(prober);
  if (!prober_) return;
  for (auto& [address, target] : targets_) {
    if (target.probe != Target::Probe::kWaitingForProber) continue;
    target.probe = Target::Probe::kAsked;
    prober_(address, target.probe_at);
  }
}

void BackendReadiness::OnConnected(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  Target* target = Find(address);
  if (target == nullptr) return;
  target->probe = Target::Probe::kNone;
  target->backoff.Reset();
  SetState(*target, TransportState::kReady);
}

void BackendReadiness::OnConnectFailed(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  Target* target = Find(address);
  if (target == nullptr) return;
  target->probe = Target::Probe::kNone;
  SetState(*target, TransportState::kTransientFailure);
  AskProbe(address, *target, clock_.Now() + target->backoff.Next());
}

void BackendReadiness::OnConnectionLost(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  Target* target = Find(address);
  if (target == nullptr || target->state != TransportState::kReady) return;
  SetState(*target, TransportState::kConnecting);
  AskProbe(address, *target, clock_.Now());
}

bool BackendReadiness::WantsProbe(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  Target* target = Find(address);
  if (target == nullptr) return false;
  if (target->state == TransportState::kReady) {
    target->probe = Target::Probe::kNone;
    return false;
  }
  return true;
}

TransportState BackendReadiness::StateOf(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  Target* target = Find(address);
  return target == nullptr ? TransportState::kShutdown : target->state;
}

}  // namespace sluice::proxy
