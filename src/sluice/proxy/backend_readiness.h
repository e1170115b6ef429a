#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "sluice/balancer/readiness.h"
#include "sluice/core/backoff.h"
#include "sluice/core/clock.h"
#include "sluice/core/random.h"

namespace sluice::proxy {

// The proxy's connection pool as the readiness input of one route's balancer (where the
// library adapts gRPC channel connectivity): an endpoint is pickable once a worker holds an
// HTTP/2 connection to it that the backend confirmed (its SETTINGS arrived). A new endpoint is
// connecting until its first probe answers; one whose connection failed, or broke without a
// GOAWAY, is probed again with backoff (as gRPC's subchannels reconnect) and is not picked
// meanwhile, so calls are not sent into refused connects or a failing TLS handshake.
//
// Thread-safe: the balancer's thread calls Watch, every worker reports its connections'
// outcomes. The probes themselves run on a worker, through the Prober the proxy sets.
class BackendReadiness final : public ReadinessWatcher {
 public:
  // Asks a worker to connect to `address` at `at` (or at once, if past): it answers through
  // OnConnected / OnConnectFailed.
  using Prober = std::function<void(const std::string& address, absl::Time at)>;

  BackendReadiness(Clock& clock, const BackoffOptions& backoff, uint64_t seed);

  // ReadinessWatcher.
  void Watch(const std::shared_ptr<EndpointHandle>& endpoint, ReadinessReporter& reporter) override;
  void Unwatch(ReadinessReporter& reporter) override;

  // Probes asked for before the prober was set are asked now. Null stops probing (the proxy is
  // stopping); outcomes are still taken.
  void SetProber(Prober prober);

  // What the workers saw of a connection to `address`.
  void OnConnected(const std::string& address);
  void OnConnectFailed(const std::string& address);
  // An established connection broke (no GOAWAY came first): probe again before more picks.
  void OnConnectionLost(const std::string& address);
  // Whether a probe of `address` is still wanted (it is still in some balancer's set and has
  // no confirmed connection).
  bool WantsProbe(const std::string& address);

  // For the admin view and tests; kShutdown when nobody watches `address`.
  TransportState StateOf(const std::string& address);

 private:
  struct Watcher {
    std::weak_ptr<EndpointHandle> endpoint;
    ReadinessReporter* reporter;
  };
  struct Target {
    explicit Target(const BackoffOptions& options, Random* random) : backoff(options, random) {}
    TransportState state = TransportState::kConnecting;
    Backoff backoff;
    std::vector<Watcher> watchers;
    // A probe is asked for and has not answered yet (or waits for the prober).
    enum class Probe : uint8_t { kNone, kAsked, kWaitingForProber } probe = Probe::kNone;
    absl::Time probe_at;
  };

  // Drops watchers whose endpoint left; false when none is left (then the target goes).
  static bool Prune(Target& target);
  void SetState(Target& target, TransportState state);
  void AskProbe(const std::string& address, Target& target, absl::Time at);
  Target* Find(const std::string& address);

  Clock& clock_;
  const BackoffOptions backoff_options_;
  LockedRandom random_;
  std::mutex mu_;
  std::map<std::string, Target> targets_;
  Prober prober_;
};

}  // namespace sluice::proxy
