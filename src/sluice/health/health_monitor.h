#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "sluice/health/health_state.h"
#include "sluice/health/health_watcher.h"

namespace sluice::health {

// The process's health checks, shared: however many balancers, routes or pickers ask about an
// endpoint, there is one watcher (one stream) per (address, service name). The first
// subscriber starts it, the last one to leave stops it. Thread-safe.
class HealthMonitor {
 public:
  // Makes the channel a new watcher checks over, e.g. the caller's own channel to that address
  // (so checks follow its connection) or a fresh one with the caller's credentials.
  using ChannelFactory = std::function<std::shared_ptr<grpc::Channel>(const std::string& address)>;

  explicit HealthMonitor(ChannelFactory channel_factory);
  ~HealthMonitor();  // every subscription must be gone

  struct Entry;

  // While alive, its listener hears every change of the endpoint's health. Destroying it never
  // waits on a listener call of another subscription.
  class Subscription {
   public:
    ~Subscription();
    HealthState state() const;
    const std::string& address() const { return address_; }

   private:
    friend class HealthMonitor;
    Subscription(HealthMonitor* monitor, std::shared_ptr<Entry> entry, std::string address,
                 std::string service, int id)
        : monitor_(monitor),
          entry_(std::move(entry)),
          address_(std::move(address)),
          service_(std::move(service)),
          id_(id) {}
    HealthMonitor* const monitor_;
    const std::shared_ptr<Entry> entry_;
    const std::string address_;
    const std::string service_;
    const int id_;
  };

  // Subscribes to `address`'s health under `options` (its service name selects the shared
  // watcher; the other options are the first subscriber's). The listener is called at once
  // with the current state when it is already known, then on every change, on a gRPC thread;
  // it must not subscribe or unsubscribe.
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(const std::string& address,
                                                          const HealthCheckOptions& options,
                                                          HealthListener listener);

  // How many watchers (streams) run now.
  size_t watcher_count() const;

 private:
  using Key = std::pair<std::string, std::string>;  // address, service name

  void Unsubscribe(const Subscription& subscription);

  const ChannelFactory channel_factory_;
  mutable std::mutex mu_;
  std::map<Key, std::shared_ptr<Entry>> entries_;
  int next_id_ = 0;
};

}  // namespace sluice::health
