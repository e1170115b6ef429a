#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/client/balancer.h"
#include "sluice/core/random.h"
#include "sluice/proxy/access_log.h"
#include "sluice/proxy/backend_pool.h"
#include "sluice/proxy/call.h"
#include "sluice/proxy/client_session.h"
#include "sluice/proxy/connection.h"
#include "sluice/proxy/event_loop.h"
#include "sluice/proxy/listener.h"
#include "sluice/proxy/metrics.h"
#include "sluice/proxy/proxy.h"
#include "sluice/proxy/router.h"
#include "sluice/proxy/session_allocator.h"

namespace sluice::proxy {

// One event-loop thread: its own listener (SO_REUSEPORT), client connections, backend
// connections and calls. Nothing in it is shared with other workers except the router's
// balancers (their pickers are lock-free) and the metrics (atomics). The worker only wires its
// parts together: the loop's events go to the listener and the sessions, the sessions' streams
// to calls, and the calls' needs (timers, routes, backend connections) back to the parts.
class Worker final : public CallHost, public CallFactory, public TimerHandler {
 public:
  Worker(int index, const ProxyOptions& options, const Router* router, ProxyMetrics* metrics);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Binds this worker's listener on ip:port (port 0: a free one) and returns the bound port.
  // Called before Run, from the control thread.
  absl::StatusOr<int> Listen(const std::string& ip, int port);
  // The loop; returns after BeginShutdown once every client connection has closed.
  void Run();
  // Thread-safe: stop accepting, GOAWAY every client, close what is left at `deadline`.
  void BeginShutdown(absl::Time deadline);
  // Thread-safe: a connection attempt to `address` for `balancer`'s route at `at`, asked by
  // its BackendReadiness (which hears the outcome). Dropped once the loop has ended.
  void ProbeBackend(const std::string& address, const client::Balancer* balancer,
                    BackendReadiness* readiness, absl::Time at);

  // CallHost.
  absl::Time Now() const override { return loop_.now(); }
  TimerId Schedule(absl::Time at, TimerKind kind, Call* call) override {
    return loop_.Schedule(at, kind, call->id());
  }
  void Cancel(TimerId id) override { loop_.Cancel(id); }
  const ProxyOptions& options() const override { return options_; }
  ProxyMetrics& metrics() override { return *metrics_; }
  client::Balancer* RouteFor(absl::string_view path) override { return router_->ForPath(path); }
  BackendSide* BackendFor(const client::Backend& backend,
                          const client::Balancer& balancer) override {
    return pool_.For(backend.address(), balancer);
  }
  BackendMetrics* MetricsFor(const std::string& address) override;
  void WaitForPick(Call* call, client::Balancer& balancer, absl::Time until,
                   std::optional<uint64_t> hash_key, const client::Backend* avoid,
                   bool wait_for_ready) override;
  void RetrySoon(Call* call) override { retries_.push_back(call->id()); }
  void Release(Call* call) override;

  // CallFactory.
  Call* NewCall(ClientSide* client, int32_t stream) override;

  // TimerHandler.
  void OnTimer(TimerKind kind, uint64_t owner) override;

 private:
  void Accept(int fd, std::string peer);
  void StartShutdown(absl::Time deadline);
  void Housekeep();
  struct BackendProbe {
    std::string address;
    const client::Balancer* balancer;
    BackendReadiness* readiness;
  };
  void RunProbe(const BackendProbe& probe);
  void ProcessRetries();
  void FlushDirty();
  void CloseDead();
  Call* FindCall(uint64_t id) {
    auto it = calls_.find(id);
    return it == calls_.end() ? nullptr : it->second.get();
  }

  const int index_;
  const ProxyOptions options_;
  AccessLog::Writer* const access_log_;  // null: no access log
  SeededRandom random_;                  // this worker's chance (access-log sampling)
  const Router* const router_;
  ProxyMetrics* const metrics_;

  EventLoop loop_;
  // Before the connections: their sessions allocate from it.
  SessionAllocator session_allocator_;
  ConnectionEnv env_;
  Listener listener_;
  BackendPool pool_;
  std::unordered_map<Connection*, std::unique_ptr<ClientSession>> clients_;

  bool shutting_down_ = false;
  absl::Time shutdown_deadline_ = absl::InfiniteFuture();

  absl::flat_hash_map<uint64_t, std::unique_ptr<Call>> calls_;
  // Finished calls kept for reuse, with their buffers (see Call::Recycle).
  std::vector<std::unique_ptr<Call>> free_calls_;
  uint64_t next_call_id_ = 1;
  std::vector<uint64_t> retries_;
  // Probes waiting for their time, by timer owner id.
  absl::flat_hash_map<uint64_t, BackendProbe> probes_;
  uint64_t next_probe_id_ = 1;
  std::unordered_map<std::string, BackendMetrics*> backend_metrics_;
};

}  // namespace sluice::proxy
