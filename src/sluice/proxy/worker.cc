#include "sluice/proxy/worker.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <utility>

#include "sluice/core/log.h"

namespace sluice::proxy {
namespace {

constexpr absl::Duration kUpstreamIdleTimeout = absl::Seconds(60);
// Connection housekeeping (age, GOAWAY, idle backends, the shutdown deadline) scans every
// connection, so it runs on a timer, not on every loop pass.
constexpr absl::Duration kHousekeepingInterval = absl::Milliseconds(50);
// Finished calls and nghttp2's blocks are recycled, except under AddressSanitizer, which should
// see all memory freed so that a stale pointer is reported, not silently reused.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRecycleMemory = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kRecycleMemory = false;
#else
constexpr bool kRecycleMemory = true;
#endif
#else
constexpr bool kRecycleMemory = true;
#endif
constexpr size_t kMaxFreeCalls = 1024;

}  // namespace

Worker::Worker(int index, const ProxyOptions& options, const Router* router, ProxyMetrics* metrics)
    : index_(index),
      options_(options),
      access_log_(options.access_log_sink != nullptr ? &options.access_log_sink->ForWorker(index)
                                                     : nullptr),
      random_(options.random_seed != 0
                  ? options.random_seed + static_cast<uint64_t>(index)
                  : (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()),
      router_(router),
      metrics_(metrics),
      loop_(*options_.clock),
      listener_(&loop_, [this](int fd, std::string peer) { Accept(fd, std::move(peer)); }),
      pool_(&env_) {
  env_.loop = &loop_;
  env_.options = &options_;
  env_.metrics = metrics_;
  env_.worker_index = index_;
  env_.session_mem = kRecycleMemory ? session_allocator_.mem() : nullptr;
}

Worker::~Worker() {
  clients_.clear();
  pool_.Clear();
}

absl::StatusOr<int> Worker::Listen(const std::string& ip, int port) {
  if (absl::Status s = loop_.Init(); !s.ok()) return s;
  return listener_.Listen(ip, port);
}

void Worker::BeginShutdown(absl::Time deadline) {
  loop_.inbox()->Post([this, deadline] { StartShutdown(deadline); });
}

void Worker::Run() {
  loop_.Schedule(loop_.clock().Now() + kHousekeepingInterval, TimerKind::kHousekeeping, 0);
  for (;;) {
    loop_.RunOnce(/*busy=*/!env_.dirty.empty() || !retries_.empty(), this);
    ProcessRetries();
    FlushDirty();
    CloseDead();
    if (shutting_down_ && clients_.empty()) break;
  }
  // Every client connection is gone, so every call is; the backend connections go too.
  pool_.Clear();
}

void Worker::StartShutdown(absl::Time deadline) {
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_deadline_ = deadline;
  listener_.Close();
  for (auto& [ptr, client] : clients_) client->SendGoawayNotice();
}

void Worker::Accept(int fd, std::string peer) {
  // --max-connections, for all workers together (the gauge is shared). Accepted and closed at
  // once rather than left in the kernel's backlog: the client learns at once and retries (a
  // gRPC client reconnects with backoff, maybe to another replica), and the refusal is counted.
  const int64_t cap = env_.options->max_connections;
  if (cap > 0 && env_.metrics->downstream_connections.load(std::memory_order_relaxed) >= cap) {
    const uint64_t refused =
        env_.metrics->connections_refused_total.fetch_add(1, std::memory_order_relaxed);
    if ((refused & (refused - 1)) == 0) {  // the 1st, 2nd, 4th, 8th, ...: a flood logs little
      LogWarning("sluice proxy: refused the connection from ", peer, ": ", cap,
                 " client connections are open (--max-connections); ", refused + 1,
                 " refused so far");
    }
    close(fd);
    return;
  }
  auto session = std::make_unique<ClientSession>(&env_, fd, std::move(peer), this);
  ClientSession* raw = session.get();
  clients_.emplace(raw, std::move(session));
  if (shutting_down_) raw->SendGoawayNotice();
}

void Worker::OnTimer(TimerKind kind, uint64_t owner) {
  switch (kind) {
    case TimerKind::kHousekeeping:
      Housekeep();
      loop_.Schedule(loop_.now() + kHousekeepingInterval, TimerKind::kHousekeeping, 0);
      return;
    case TimerKind::kResumeAccept:
      listener_.Resume();
      return;
    case TimerKind::kBackendProbe: {
      auto it = probes_.find(owner);
      if (it == probes_.end()) return;
      const BackendProbe probe = std::move(it->second);
      probes_.erase(it);
      RunProbe(probe);
      return;
    }
    default:
      if (Call* call = FindCall(owner)) call->OnTimer(kind);
      return;
  }
}

void Worker::ProbeBackend(const std::string& address, const client::Balancer* balancer,
                          BackendReadiness* readiness, absl::Time at) {
  loop_.inbox()->Post([this, probe = BackendProbe{address, balancer, readiness}, at]() mutable {
    if (at <= loop_.now()) {
      RunProbe(probe);
      return;
    }
    const uint64_t id = next_probe_id_++;
    probes_.emplace(id, std::move(probe));
    loop_.Schedule(at, TimerKind::kBackendProbe, id);
  });
}

void Worker::RunProbe(const BackendProbe& probe) {
  if (shutting_down_ || !probe.readiness->WantsProbe(probe.address)) return;
  pool_.Probe(probe.address, *probe.balancer, probe.readiness);
}

void Worker::Housekeep() {
  // Backends that left discovery, or that no call needs any more, lose their connections.
  pool_.CloseIdle(kUpstreamIdleTimeout);
  for (auto& [ptr, client] : clients_) {
    if (!client->dead()) client->Housekeep(shutting_down_, shutdown_deadline_);
  }
}

void Worker::ProcessRetries() {
  if (retries_.empty()) return;
  std::vector<uint64_t> retries;
  retries.swap(retries_);
  for (uint64_t id : retries) {
    Call* call = FindCall(id);
    if (call != nullptr && call->WaitingForPick()) call->StartAttempt();
  }
}

void Worker::FlushDirty() {
  // Flushing one session can return credit on another (consume), which then has a
  // WINDOW_UPDATE to send: a few rounds settle it; the rest waits for the next pass.
  for (int round = 0; round < 4 && !env_.dirty.empty(); ++round) {
    std::vector<Connection*> batch;
    batch.swap(env_.dirty);
    for (Connection* conn : batch) {
      conn->ClearDirty();
      conn->Flush();
    }
  }
}

void Worker::CloseDead() {
  if (env_.dead.empty()) return;
  std::vector<Connection*> dead;
  dead.swap(env_.dead);
  env_.dirty.erase(
      std::remove_if(env_.dirty.begin(), env_.dirty.end(), [](Connection* c) { return c->dead(); }),
      env_.dirty.end());
  // Every dead connection tells its calls first; a call may then retry on another backend
  // connection, or finish, before any connection is deleted.
  for (Connection* conn : dead) conn->OnClosed();
  for (Connection* conn : dead) {
    if (!pool_.Destroy(conn)) clients_.erase(conn);
  }
  // Calls that moved on meanwhile may have marked connections dirty that are dead by now.
  env_.dirty.erase(
      std::remove_if(env_.dirty.begin(), env_.dirty.end(), [](Connection* c) { return c->dead(); }),
      env_.dirty.end());
}

Call* Worker::NewCall(ClientSide* client, int32_t stream) {
  std::unique_ptr<Call> call;
  if (free_calls_.empty()) {
    call = std::make_unique<Call>();
  } else {
    call = std::move(free_calls_.back());
    free_calls_.pop_back();
  }
  const uint64_t id = next_call_id_++;
  call->Begin(this, id, client, stream);
  Call* raw = call.get();
  calls_.emplace(id, std::move(call));
  metrics_->streams.fetch_add(1, std::memory_order_relaxed);
  metrics_->streams_total.fetch_add(1, std::memory_order_relaxed);
  return raw;
}

void Worker::Release(Call* call) {
  if (access_log_ != nullptr && access_log_->Sampled(random_)) {
    access_log_->Add(call->ToAccessRecord(loop_.clock().Now()));
  }
  metrics_->buffered_bytes.fetch_sub(call->buffered_bytes(), std::memory_order_relaxed);
  metrics_->streams.fetch_sub(1, std::memory_order_relaxed);
  auto it = calls_.find(call->id());
  if (it == calls_.end()) return;
  if (kRecycleMemory && free_calls_.size() < kMaxFreeCalls) {
    call->Recycle();
    free_calls_.push_back(std::move(it->second));
  }
  calls_.erase(it);
}

BackendMetrics* Worker::MetricsFor(const std::string& address) {
  auto it = backend_metrics_.find(address);
  if (it != backend_metrics_.end()) return it->second;
  BackendMetrics* m = metrics_->ForBackend(address);
  backend_metrics_.emplace(address, m);
  return m;
}

void Worker::WaitForPick(Call* call, client::Balancer& balancer, absl::Time until,
                         std::optional<uint64_t> hash_key, const client::Backend* avoid,
                         bool wait_for_ready) {
  // The result arrives on the balancer's thread; the inbox brings it to this one, where the
  // call is looked up again by id (it may be gone by then).
  std::shared_ptr<Inbox> inbox = loop_.inbox();
  const uint64_t id = call->id();
  balancer.PickAsync(
      until, hash_key, avoid, /*fail_fast=*/false,
      [this, inbox, id](absl::StatusOr<std::shared_ptr<client::Backend>> picked) {
        inbox->Post([this, id, picked = std::move(picked)]() mutable {
          if (Call* call = FindCall(id)) call->OnPicked(std::move(picked));
        });
      },
      wait_for_ready);
}

}  // namespace sluice::proxy
