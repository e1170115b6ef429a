#pragma once

#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sluice/balancer/endpoint_handle.h"
#include "sluice/balancer/endpoint_stats.h"
#include "sluice/balancer/outlier_detector.h"
#include "sluice/balancer/policy.h"
#include "sluice/balancer/readiness.h"
#include "sluice/balancer/retry_budget.h"
#include "sluice/balancer/retry_policy.h"
#include "sluice/core/clock.h"
#include "sluice/core/endpoint.h"
#include "sluice/discovery/discovery.h"
#include "sluice/health/health_watcher.h"

namespace sluice::client {

// The retry policy is shared with the proxy and lives in the gRPC-free balancer module.
using RetryOptions = ::sluice::RetryPolicy;

using OutlierDetectionOptions = ::sluice::OutlierDetectionOptions;

struct BalancerOptions {
  // A discovery target: etcd://..., static://..., dns://..., or IP:PORT.
  std::string target;
  std::string policy = "peak_ewma";
  nlohmann::json policy_config;  // null: the policy's defaults
  RetryOptions retry;
  OutlierDetectionOptions outlier_detection;
  // When no endpoint is ready, a call waits for one until its deadline, unless fail_fast.
  bool fail_fast = false;
  // The deadline of calls that set none.
  absl::Duration default_timeout = absl::Seconds(30);
  // Makes the credentials of one endpoint's channel, in gRPC's C API (the balancer releases
  // them); unset: insecure. Extra arguments for every endpoint's channel.
  std::function<grpc_channel_credentials*()> make_credentials;
  grpc::ChannelArguments channel_args;
  // Reports each endpoint's transport in place of the library's own gRPC channels: when set,
  // the balancer opens no channel (Backend::channel() is null) and an endpoint is pickable once
  // this watcher reports its transport ready. For callers that carry calls over their own
  // connections, such as `sluice proxy` with its HTTP/2 connection pool (proxy/backend_readiness),
  // which also report each call's outcome through OnCallFinished.
  std::shared_ptr<ReadinessWatcher> transport_watcher;
  // More readiness inputs besides channel connectivity (e.g. a grpc.health.v1 watcher): each
  // Watches every endpoint and reports through the balancer; an endpoint is pickable only when
  // all of them agree (balancer/readiness.h).
  std::vector<std::shared_ptr<ReadinessWatcher>> readiness_watchers;
  // grpc.health.v1 checks of every endpoint, on by default: one Watch stream per endpoint
  // (Check polling where Watch is UNIMPLEMENTED) over the endpoint's own channel, or over a
  // channel made for the checks (make_credentials, channel_args) when the balancer opens none.
  // NOT_SERVING, SERVICE_UNKNOWN and not-yet-answered endpoints are not picked; a backend
  // without a health service counts as healthy. `service` names what is asked about ("": the
  // whole server); `enabled = false` turns checks off.
  health::HealthCheckOptions health_check;
  discovery::DiscoveryOptions discovery;
  // The policies to choose from; null: the built-in ones.
  const PolicyRegistry* policies = nullptr;
  Clock* clock = &SystemClock::Instance();
  // Seeds every random choice; 0: a random seed.
  uint64_t random_seed = 0;
};

// The channel a balancer opens to one endpoint: a TCP connection of its own, reconnecting within
// a fraction of a second, with options' channel_args and credentials. Made through gRPC's C API
// so that its connectivity can be watched with a callback (the C++ API only offers a completion
// queue someone must poll); the C++ channel returned owns the C one.
std::pair<std::shared_ptr<grpc::Channel>, grpc_channel*> MakeEndpointChannel(
    const std::string& address, const BalancerOptions& options);

// One endpoint's connection and statistics: the balancer's EndpointHandle plus the gRPC
// channel. Shared (shared_ptr) by the balancer, the pickers and the calls in flight on it, so a
// removed endpoint's channel closes only after its last call ends.
class Backend final : public EndpointHandle {
 public:
  Backend(Endpoint endpoint, std::shared_ptr<grpc::Channel> channel, grpc_channel* c_channel,
          std::shared_ptr<EndpointStats> stats)
      : EndpointHandle(std::move(endpoint), std::move(stats)),
        channel_(std::move(channel)),
        c_channel_(c_channel) {}

  // Null when the caller carries calls itself (BalancerOptions::transport_watcher).
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  // The same channel in gRPC's C API (owned by channel()).
  grpc_channel* c_channel() const { return c_channel_; }

  // The generated stub of service type Stub on this endpoint's channel, made once and shared by
  // every call (stubs are thread-safe). Making one per call would register its methods with
  // the channel each time, under a channel-wide lock.
  template <typename Stub>
  Stub& StubFor() const {
    static const size_t slot = NextStubSlot();
    void* stub = FindStub(slot);
    if (stub == nullptr) {
      auto made = std::make_shared<Stub>(channel_);
      stub = AddStub(slot, std::shared_ptr<void>(made, made.get()));
    }
    return *static_cast<Stub*>(stub);
  }

 private:
  static constexpr size_t kStubSlots = 16;
  static size_t NextStubSlot();
  void* FindStub(size_t slot) const;
  // Returns the stub now in the slot: `stub`, or one another thread added first.
  void* AddStub(size_t slot, std::shared_ptr<void> stub) const;

  const std::shared_ptr<grpc::Channel> channel_;
  grpc_channel* const c_channel_;
  // Lock-free reads of the first kStubSlots service types; the rest (rare) under the lock.
  mutable std::array<std::atomic<void*>, kStubSlots> stub_slots_{};
  mutable std::mutex stubs_mu_;
  mutable std::map<size_t, std::shared_ptr<void>> stubs_;
};

// What the admin view and tests see of one endpoint.
struct BackendInfo {
  std::string address;
  // "ready", "connecting", "idle", "transient_failure", "not_serving", "ejected"
  std::string state;
  // What its grpc.health.v1 service last said (health::HealthStateName): "serving",
  // "not_serving", "pending", "no_health_service", ...; "not_checked" with checks off.
  std::string health = "not_checked";
  int64_t in_flight = 0;
  uint64_t calls = 0;
  uint64_t failures = 0;
  uint32_t weight = 0;
  int ejections = 0;
};

// Options of one call, for the call helpers (call.h).
struct CallOptions {
  // The full method name, "/package.Service/Method": decides idempotent retries.
  std::string method;
  // The call's deadline; retries never extend it. Infinite: now + default_timeout. A time on
  // Balancer::clock() (monotonic: clock().Now() + timeout), not absl::Now(): a wall-clock time
  // lies decades past the monotonic clock, so the call would in effect have no deadline.
  absl::Time deadline = absl::InfiniteFuture();
  // For ring_hash: the value to hash (a user id, a header value).
  std::optional<std::string> hash_key;
  // Fail at once when no endpoint is ready, instead of waiting until the deadline.
  std::optional<bool> fail_fast;
  // Applied to each attempt's ClientContext (metadata, compression, ...).
  std::function<void(grpc::ClientContext&)> configure_context;
};

// The ring_hash key of a call with these options, if it has one.
std::optional<uint64_t> HashKeyOf(const CallOptions& options);

// The client library's control plane and data plane for one target: watches discovery, keeps
// one channel (one TCP connection) per endpoint, and picks an endpoint for every call.
//
// Threads: discovery and gRPC connectivity callbacks hop onto one serializer thread, which alone
// changes endpoint state and publishes a new immutable picker. Pick() and the call helpers run
// on any thread and take no lock unless they must wait for a ready endpoint.
class Balancer {
 public:
  static absl::StatusOr<std::unique_ptr<Balancer>> Create(BalancerOptions options);
  ~Balancer();

  // Picks a backend for one call. With no ready endpoint it waits until `deadline` (unless
  // fail_fast) and then fails with UNAVAILABLE saying why. `avoid`, when set and another
  // endpoint is ready, is not picked (a retry goes elsewhere).
  absl::StatusOr<std::shared_ptr<Backend>> Pick(absl::Time deadline,
                                                std::optional<uint64_t> hash_key = std::nullopt,
                                                const Backend* avoid = nullptr,
                                                std::optional<bool> fail_fast = std::nullopt);
  // Like Pick, but never blocks: `done` runs at once when an endpoint is ready, or later on the
  // balancer's thread when one becomes ready or the deadline passes. With `wait_for_ready`
  // false (gRPC's default for a call), a waiting pick fails early once no endpoint is coming:
  // every one has failed to connect, is ejected or is not serving.
  void PickAsync(absl::Time deadline, std::optional<uint64_t> hash_key, const Backend* avoid,
                 std::optional<bool> fail_fast,
                 std::function<void(absl::StatusOr<std::shared_ptr<Backend>>)> done,
                 bool wait_for_ready = true);

  // Every call sent to a picked backend is bracketed by these two: in-flight counts, latency
  // estimates, and outlier detection follow from them. `now` is the balancer clock's time the
  // caller read for `latency` (one clock read per call end, not two).
  void OnCallStarted(Backend& backend);
  void OnCallFinished(Backend& backend, grpc::StatusCode code, absl::Duration latency,
                      absl::Time now);

  // Blocking unary-style call with retries: `attempt` sends the call to the given backend (its
  // channel(), or a StubFor) with the given context (already carrying the deadline) and
  // returns its status.
  using Attempt = std::function<grpc::Status(const Backend&, grpc::ClientContext*)>;
  grpc::Status Call(const CallOptions& options, const Attempt& attempt);

  // Callback-style call with retries: `start` starts one attempt and calls its `finished` with
  // the attempt's status; `done` gets the call's final status. Nothing blocks.
  using AsyncAttempt = std::function<void(const Backend&, grpc::ClientContext*,
                                          std::function<void(grpc::Status)> finished)>;
  void CallAsync(CallOptions options, AsyncAttempt start, std::function<void(grpc::Status)> done);

  // True if `method` is configured idempotent.
  bool IsIdempotent(absl::string_view method) const;
  // Whether the policy reads the backends' ORCA load reports: a call's end feeds them to the
  // backend's stats only then (decoding one costs more than the rest of a small call's end).
  bool wants_load_reports() const { return wants_load_reports_; }
  // Deadline of a call with these options, from now.
  absl::Time DeadlineFor(const CallOptions& options) const;

  // Retry budget: TryStartRetry reserves a retry if the budget allows; EndRetry releases it.
  bool TryStartRetry();
  void EndRetry();
  // The service's retry budget, for a RetryState (balancer/retry_state.h) per call: callers
  // that carry calls their own way (the proxy) count their calls in it through that state.
  RetryBudget& retry_budget() const;

  // Introspection, for admin endpoints and tests. Thread-safe.
  std::vector<BackendInfo> Backends() const;
  size_t ReadyCount() const;
  // Waits until at least `count` endpoints are ready.
  bool WaitForReady(size_t count, absl::Duration timeout) const;
  const BalancerOptions& options() const { return options_; }
  Clock& clock() const { return *options_.clock; }
  // The service's name, for messages: the target's prefix, or the target itself.
  const std::string& service_name() const { return service_name_; }

  class Impl;

 private:
  Balancer(BalancerOptions options, std::string service_name);

  BalancerOptions options_;
  std::string service_name_;
  bool wants_load_reports_ = false;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::client
