#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "sluice/balancer/readiness.h"
#include "sluice/health/health_watcher.h"

namespace sluice::client {

// Adapts grpc.health.v1 checks to the balancer's readiness interface: one HealthWatcher (one
// Watch stream, or Check polling) per endpoint address for as long as the address is in the
// set, reporting kServing when the health state is pickable (SERVING, no health service, checks
// off) and kNotServing otherwise (NOT_SERVING, SERVICE_UNKNOWN, UNKNOWN, and no answer yet, as
// gRPC keeps a health-checked subchannel out of READY until its first answer). An endpoint
// updated in place (new metadata, new handle) keeps its stream. Watchers of endpoints that left
// are stopped by a sweeper thread, off the balancer's thread, since stopping one waits for gRPC.
class HealthReadinessWatcher final : public ReadinessWatcher {
 public:
  // The channel a check of this endpoint runs over: its own (the check then follows its
  // connection), or one made for the check when the caller carries calls on its own
  // connections.
  using ChannelFor = std::function<std::shared_ptr<grpc::Channel>(const EndpointHandle&)>;

  HealthReadinessWatcher(health::HealthCheckOptions options, ChannelFor channel_for);
  // Stops every watcher: no report after this.
  ~HealthReadinessWatcher() override;

  void Watch(const std::shared_ptr<EndpointHandle>& endpoint, ReadinessReporter& reporter) override;

  // The health state of an address, for introspection; nullopt when it is not watched.
  std::optional<health::HealthState> StateOf(const std::string& address) const;
  // Watchers (streams) running now.
  size_t watcher_count() const;

 private:
  struct Entry;

  void SweepLoop();
  static void Report(Entry& entry, health::HealthState state);

  const health::HealthCheckOptions options_;
  const ChannelFor channel_for_;
  mutable std::mutex mu_;
  std::condition_variable sweep_cv_;
  enum class Run { kRunning, kStopping } run_ = Run::kRunning;  // guarded by mu_
  std::map<std::string, std::shared_ptr<Entry>> entries_;        // by address; guarded by mu_
  std::thread sweeper_;
};

}  // namespace sluice::client
