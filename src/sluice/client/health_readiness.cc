#include "sluice/client/health_readiness.h"

#include <utility>
#include <vector>

#include "sluice/core/log.h"

namespace sluice::client {
namespace {

// How often watchers of endpoints that left are looked for: bounds how long a removed
// endpoint's check stream outlives it.
constexpr absl::Duration kSweepInterval = absl::Milliseconds(250);

HealthState ToReadiness(health::HealthState state) {
  if (state == health::HealthState::kNotChecked) return HealthState::kUnwatched;
  if (state == health::HealthState::kPending) return HealthState::kPending;
  return health::IsPickable(state) ? HealthState::kServing : HealthState::kNotServing;
}

}  // namespace

struct HealthReadinessWatcher::Entry {
  std::mutex mu;
  std::weak_ptr<EndpointHandle> endpoint;  // guarded by mu: the newest handle of the address
  ReadinessReporter* reporter = nullptr;   // guarded by mu
  health::HealthState last = health::HealthState::kPending;  // guarded by mu
  // Declared last, so it is destroyed first: its listener (which uses the fields above) has
  // returned for good once it is gone.
  std::unique_ptr<health::HealthWatcher> watcher;
};

HealthReadinessWatcher::HealthReadinessWatcher(health::HealthCheckOptions options,
                                               ChannelFor channel_for)
    : options_(std::move(options)), channel_for_(std::move(channel_for)) {
  sweeper_ = std::thread([this] { SweepLoop(); });
}

HealthReadinessWatcher::~HealthReadinessWatcher() {
  std::map<std::string, std::shared_ptr<Entry>> entries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    run_ = Run::kStopping;
    entries.swap(entries_);
  }
  sweep_cv_.notify_all();
  sweeper_.join();
  entries.clear();  // each waits for gRPC to hand its stream back
}

void HealthReadinessWatcher::Watch(const std::shared_ptr<EndpointHandle>& endpoint,
                                   ReadinessReporter& reporter) {
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (run_ != Run::kRunning) return;
    auto it = entries_.find(endpoint->address());
    if (it != entries_.end()) {
      // The same address under a new handle (an update): keep the stream, tell the new
      // handle what the old one knew.
      health::HealthState known;
      {
        std::lock_guard<std::mutex> entry_lock(it->second->mu);
        it->second->endpoint = endpoint;
        it->second->reporter = &reporter;
        known = it->second->last;
      }
      reporter.ReportHealth(endpoint, ToReadiness(known));
      return;
    }
    entry = std::make_shared<Entry>();
    entry->endpoint = endpoint;
    entry->reporter = &reporter;
    entries_.emplace(endpoint->address(), entry);
  }
  // Not pickable until the first answer.
  reporter.ReportHealth(endpoint, ToReadiness(health::HealthState::kPending));
  Entry* raw = entry.get();
  auto watcher = health::HealthWatcher::Start(
      channel_for_(*endpoint), options_, [raw](health::HealthState state) { Report(*raw, state); });
  if (!watcher.ok()) {
    // The options were validated when the balancer was made; this is not expected.
    LogWarning("health check of ", endpoint->address(),
               " not started: ", watcher.status().ToString());
    Report(*raw, health::HealthState::kNotChecked);
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  entry->watcher = std::move(*watcher);
}

void HealthReadinessWatcher::Report(Entry& entry, health::HealthState state) {
  std::shared_ptr<EndpointHandle> endpoint;
  ReadinessReporter* reporter;
  {
    std::lock_guard<std::mutex> lock(entry.mu);
    entry.last = state;
    endpoint = entry.endpoint.lock();
    reporter = entry.reporter;
  }
  if (endpoint != nullptr && !endpoint->removed)
    reporter->ReportHealth(endpoint, ToReadiness(state));
}

std::optional<health::HealthState> HealthReadinessWatcher::StateOf(
    const std::string& address) const {
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(address);
    if (it == entries_.end()) return std::nullopt;
    entry = it->second;
  }
  std::lock_guard<std::mutex> lock(entry->mu);
  return entry->last;
}

size_t HealthReadinessWatcher::watcher_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t count = 0;
  for (const auto& [address, entry] : entries_) count += entry->watcher != nullptr;
  return count;
}

void HealthReadinessWatcher::SweepLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (run_ == Run::kRunning) {
    sweep_cv_.wait_for(lock, absl::ToChronoNanoseconds(kSweepInterval));
    std::vector<std::shared_ptr<Entry>> gone;
    for (auto it = entries_.begin(); it != entries_.end();) {
      bool left;
      {
        std::lock_guard<std::mutex> entry_lock(it->second->mu);
        std::shared_ptr<EndpointHandle> endpoint = it->second->endpoint.lock();
        left = endpoint == nullptr || endpoint->removed;
      }
      if (left && it->second->watcher != nullptr) {
        gone.push_back(std::move(it->second));
        it = entries_.erase(it);
      } else {
        ++it;
      }
    }
    if (gone.empty()) continue;
    lock.unlock();
    gone.clear();  // waits for gRPC; no lock held
    lock.lock();
  }
}

}  // namespace sluice::client
