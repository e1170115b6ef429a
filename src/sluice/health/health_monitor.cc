#include "sluice/health/health_monitor.h"

#include <vector>

#include "sluice/core/log.h"

namespace sluice::health {

// One shared watcher and its listeners. `listeners_mu` is held while listeners run, so a
// subscription that leaves is never called after its destructor returns.
struct HealthMonitor::Entry {
  std::mutex listeners_mu;
  std::map<int, HealthListener> listeners;
  std::unique_ptr<HealthWatcher> watcher;

  void Broadcast(HealthState state) {
    std::lock_guard<std::mutex> lock(listeners_mu);
    for (auto& [id, listener] : listeners) listener(state);
  }
};

HealthMonitor::HealthMonitor(ChannelFactory channel_factory)
    : channel_factory_(std::move(channel_factory)) {}

HealthMonitor::~HealthMonitor() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!entries_.empty()) {
    LogError("HealthMonitor destroyed with ", entries_.size(), " watcher(s) still subscribed");
  }
}

absl::StatusOr<std::unique_ptr<HealthMonitor::Subscription>> HealthMonitor::Subscribe(
    const std::string& address, const HealthCheckOptions& options, HealthListener listener) {
  std::lock_guard<std::mutex> lock(mu_);
  const Key key{address, options.service};
  std::shared_ptr<Entry>& entry = entries_[key];
  const int id = next_id_++;
  if (entry == nullptr) {
    auto fresh = std::make_shared<Entry>();
    fresh->listeners.emplace(id, std::move(listener));
    // The watcher holds the entry weakly: the entry owns the watcher.
    std::weak_ptr<Entry> weak = fresh;
    auto watcher =
        HealthWatcher::Start(channel_factory_(address), options, [weak](HealthState state) {
          if (auto e = weak.lock()) e->Broadcast(state);
        });
    if (!watcher.ok()) {
      entries_.erase(key);
      return watcher.status();
    }
    fresh->watcher = std::move(*watcher);
    entry = std::move(fresh);
  } else {
    std::lock_guard<std::mutex> listeners_lock(entry->listeners_mu);
    const HealthState now = entry->watcher->state();
    if (now != HealthState::kPending && listener) listener(now);
    entry->listeners.emplace(id, std::move(listener));
  }
  return std::unique_ptr<Subscription>(new Subscription(this, entry, address, options.service, id));
}

void HealthMonitor::Unsubscribe(const Subscription& subscription) {
  std::shared_ptr<Entry> last;  // destroyed (watcher stopped) outside mu_
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(Key{subscription.address_, subscription.service_});
    if (it == entries_.end()) return;
    {
      std::lock_guard<std::mutex> listeners_lock(it->second->listeners_mu);
      it->second->listeners.erase(subscription.id_);
      if (!it->second->listeners.empty()) return;
    }
    last = std::move(it->second);
    entries_.erase(it);
  }
  // The subscription still holds the entry, so the watcher must be stopped explicitly.
  last->watcher.reset();
}

size_t HealthMonitor::watcher_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

HealthMonitor::Subscription::~Subscription() { monitor_->Unsubscribe(*this); }
// Without the monitor's lock, so a listener may ask.
HealthState HealthMonitor::Subscription::state() const { return entry_->watcher->state(); }

}  // namespace sluice::health
