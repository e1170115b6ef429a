#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/balancer/endpoint_handle.h"
#include "sluice/balancer/outlier_detector.h"
#include "sluice/balancer/picker.h"
#include "sluice/balancer/policy.h"
#include "sluice/balancer/readiness.h"
#include "sluice/core/clock.h"
#include "sluice/core/endpoint.h"
#include "sluice/core/random.h"

namespace sluice {

// What the data plane picks from: an immutable picker over the pickable endpoints.
struct PickerSnapshot {
  std::unique_ptr<Picker> picker;
  // Parallel to the endpoints the picker was built over.
  std::vector<std::shared_ptr<EndpointHandle>> endpoints;
  size_t known_endpoints = 0;
  // Endpoints that may still become pickable without anyone's help: transport idle or
  // connecting, not ejected, not reported NOT_SERVING.
  size_t coming = 0;
  bool discovery_reported = false;

  // Whether a pick that does not wait for ready (gRPC's wait_for_ready false) should give up
  // now: discovery has spoken and no endpoint is coming.
  bool NothingComing() const { return discovery_reported && coming == 0; }
};

using PickDone = std::function<void(absl::StatusOr<std::shared_ptr<EndpointHandle>>)>;

// A pick that waits for an endpoint to become pickable, or for its deadline.
struct PendingPick {
  absl::Time deadline;
  std::optional<uint64_t> hash_key;
  const EndpointHandle* avoid;
  PickDone done;
  // As gRPC's wait_for_ready: true waits through failures until the deadline; false fails as
  // soon as discovery has reported and no endpoint is coming (every one failing or ejected).
  bool wait_for_ready = true;
};

// What introspection sees of one endpoint.
struct EndpointView {
  std::shared_ptr<EndpointHandle> endpoint;
  std::string state;  // a TransportStateName, "not_serving", or "ejected"
  int ejections = 0;
};

// The balancer's endpoint set, without any transport (gRPC's LB policy and subchannel list,
// Envoy's host set): applies discovery's diffs, follows each endpoint's readiness and ejection,
// publishes an immutable PickerSnapshot of the pickable ones, and holds the picks that wait.
//
// Threads: everything but the "any thread" part runs on one control-plane thread (the library's
// work serializer). Snapshots are published atomically and read lock-free.
class EndpointManager {
 public:
  struct Hooks {
    // Makes the handle of an endpoint that joined the set, or the new handle of an updated one
    // (`previous` set: keep its connection and stats).
    std::function<std::shared_ptr<EndpointHandle>(const Endpoint& endpoint,
                                                  const EndpointHandle* previous)>
        make_handle;
    // Runs after every new snapshot, with how many endpoints are not ready (wakes waiters).
    std::function<void(size_t not_ready)> published;
  };

  // `initial_transport`: kIdle when a watcher will report each endpoint's transport, kReady
  // when nothing watches it (every endpoint is pickable at once).
  EndpointManager(std::string service_name, std::string target, ConfiguredPolicy policy,
                  OutlierDetector& outlier, TransportState initial_transport, Clock& clock,
                  uint64_t seed, Hooks hooks);

  // --- Control plane ---
  // Returns the handles that joined (to be watched).
  std::vector<std::shared_ptr<EndpointHandle>> OnEndpoints(const EndpointSet& set,
                                                           const EndpointSetDiff& diff);
  void SetTransport(const std::shared_ptr<EndpointHandle>& endpoint, TransportState state);
  void SetHealth(const std::shared_ptr<EndpointHandle>& endpoint, HealthState state);
  void Eject(EndpointHandle& endpoint);
  // Ends ejections whose time has come and fails pending picks past their deadline.
  void OnTick();
  void AddPendingPick(PendingPick pick);
  // Drops every endpoint and fails every pending pick with UNAVAILABLE `why`.
  void Clear(const std::string& why);
  size_t pending_picks() const { return pending_picks_.size(); }

  // --- Any thread ---
  std::shared_ptr<const PickerSnapshot> snapshot() const {
    return snapshot_.load(std::memory_order_acquire);
  }
  // `avoid`, when set and another endpoint is pickable, is not picked (a retry goes elsewhere).
  absl::StatusOr<std::shared_ptr<EndpointHandle>> TryPick(const PickerSnapshot& snapshot,
                                                          std::optional<uint64_t> hash_key,
                                                          const EndpointHandle* avoid);
  // The snapshot's endpoint that is `endpoint`, or null.
  std::shared_ptr<EndpointHandle> FindShared(const EndpointHandle& endpoint) const;
  std::vector<EndpointView> Views() const;

 private:
  struct Entry {
    std::shared_ptr<EndpointHandle> endpoint;
    TransportState transport;
    HealthState health = HealthState::kUnwatched;
    EjectionState ejection;
  };

  // What a snapshot makes of an entry; a change of it is what needs a new snapshot.
  enum class Outlook : uint8_t { kPickable, kComing, kOut };
  static Outlook OutlookOf(const Entry& entry);

  Entry* FindEntry(const EndpointHandle& endpoint);
  // Applies `change` to the endpoint's entry, if it still has one, and rebuilds the snapshot
  // when that moved the entry's pickability or outlook.
  void Update(const EndpointHandle& endpoint, absl::FunctionRef<void(Entry&)> change);
  std::vector<OutlierDetector::Member> Members();
  absl::Status NoEndpointError(const PickerSnapshot& snapshot) const;
  void Rebuild();
  void ResolvePendingPicks();

  const std::string service_name_;
  const std::string target_;
  const ConfiguredPolicy policy_;
  OutlierDetector& outlier_;
  const TransportState initial_transport_;
  Clock& clock_;
  const Hooks hooks_;
  LockedRandom control_random_;
  AtomicRandom pick_random_;

  // Control plane only.
  std::map<std::string, Entry> entries_;
  std::vector<PendingPick> pending_picks_;
  bool discovery_reported_ = false;
  size_t known_endpoints_ = 0;

  std::atomic<std::shared_ptr<const PickerSnapshot>> snapshot_;
  mutable std::mutex views_mu_;
  std::vector<EndpointView> views_;
};

}  // namespace sluice
