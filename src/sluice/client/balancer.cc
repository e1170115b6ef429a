#include "sluice/client/balancer.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "sluice/balancer/builtin_policies.h"
#include "sluice/balancer/hash.h"
#include "sluice/client/work_serializer.h"
#include "sluice/core/grpc_util.h"
#include "sluice/core/log.h"
#include "sluice/core/random.h"

namespace sluice::client {
namespace {

// How long one connectivity watch waits before it is armed again. Bounds how long a removed
// endpoint's channel outlives its last call, and the balancer's shutdown time.
constexpr absl::Duration kWatchSlice = absl::Milliseconds(250);

bool CountsAsFailure(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::INTERNAL ||
         code == grpc::StatusCode::UNKNOWN || code == grpc::StatusCode::DATA_LOSS;
}

std::string ServiceNameOf(const discovery::Target& target) {
  if (target.scheme == discovery::Target::Scheme::kEtcd) {
    std::vector<absl::string_view> parts = absl::StrSplit(target.prefix, '/', absl::SkipEmpty());
    if (!parts.empty()) return std::string(parts.back());
  }
  return target.text;
}

struct PickerSnapshot {
  std::unique_ptr<Picker> picker;
  // Parallel to the endpoints the picker was built over.
  std::vector<std::shared_ptr<Backend>> backends;
  size_t known_endpoints = 0;
  bool discovery_reported = false;
};

}  // namespace

size_t Backend::NextStubSlot() {
  static std::atomic<size_t> next{0};
  return next.fetch_add(1, std::memory_order_relaxed);
}

void* Backend::FindStub(size_t slot) const {
  if (slot < kStubSlots) return stub_slots_[slot].load(std::memory_order_acquire);
  std::lock_guard<std::mutex> lock(stubs_mu_);
  auto it = stubs_.find(slot);
  return it == stubs_.end() ? nullptr : it->second.get();
}

void* Backend::AddStub(size_t slot, std::shared_ptr<void> stub) const {
  std::lock_guard<std::mutex> lock(stubs_mu_);
  auto [it, inserted] = stubs_.emplace(slot, std::move(stub));
  if (slot < kStubSlots) stub_slots_[slot].store(it->second.get(), std::memory_order_release);
  return it->second.get();
}

class Balancer::Impl {
 public:
  Impl(Balancer& owner, ConfiguredPolicy policy, std::unique_ptr<PolicyRegistry> own_registry,
       std::unique_ptr<discovery::Discovery> discovery, uint64_t seed)
      : retry_budget_(owner.options_.retry.budget_ratio, owner.options_.retry.budget_min),
        owner_(owner),
        options_(owner.options_),
        own_registry_(std::move(own_registry)),
        policy_(std::move(policy)),
        control_random_(seed),
        pick_random_(seed ^ 0x5851f42d4c957f2dULL),
        discovery_(std::move(discovery)),
        snapshot_(std::make_shared<const PickerSnapshot>()) {
    // Connectivity changes arrive as callbacks on gRPC's own threads: a thread of ours waiting
    // on a polling queue would also do the channels' socket I/O, competing with gRPC's threads
    // (measured: ~9% of the CPU and a tenth fewer calls/s with 64 calls in flight).
    grpc_init();  // the C API below needs gRPC initialised; paired with grpc_shutdown
    cq_shutdown_.functor_run = &CqShutdown::Run;
    cq_shutdown_.inlineable = 0;
    cq_shutdown_.impl = this;
    watch_cq_ = grpc_completion_queue_create_for_callback(&cq_shutdown_, nullptr);
    always_poll_ = std::getenv("SLUICE_ALWAYS_POLL") != nullptr;
    progress_thread_ = std::thread([this] { ProgressLoop(); });
    serializer_ = std::make_unique<WorkSerializer>(absl::Milliseconds(50), [this] { OnTick(); });
    discovery_->Start([this](const EndpointSet& set, const EndpointSetDiff& diff) {
      serializer_->Post([this, set, diff] { OnEndpoints(set, diff); });
    });
  }

  ~Impl() {
    discovery_->Stop();
    serializer_->Post([this] {
      for (auto& [address, entry] : entries_) entry.backend->removed = true;
      entries_.clear();
      FailPendingPicks("the balancer is shutting down");
    });
    serializer_->Shutdown();
    {
      std::lock_guard<std::mutex> lock(progress_mu_);
      shutting_down_ = true;
    }
    progress_cv_.notify_all();
    progress_thread_.join();
    progress_cq_.Shutdown();
    {
      void* tag;
      bool ok;
      while (progress_cq_.Next(&tag, &ok)) {
      }
    }
    {
      // Each watch ends by its deadline (kWatchSlice) and is not armed again.
      std::unique_lock<std::mutex> lock(watch_mu_);
      watch_cv_.wait(lock, [&] { return watches_in_flight_ == 0; });
    }
    grpc_completion_queue_shutdown(watch_cq_);
    {
      std::unique_lock<std::mutex> lock(watch_mu_);
      watch_cv_.wait(lock, [&] { return cq_shut_down_; });
    }
    grpc_completion_queue_destroy(watch_cq_);
    grpc_shutdown();
  }

  absl::StatusOr<std::shared_ptr<Backend>> TryPick(const PickerSnapshot& snapshot,
                                                   std::optional<uint64_t> hash_key,
                                                   const Backend* avoid) {
    if (snapshot.picker == nullptr || snapshot.backends.empty()) return NoEndpointError(snapshot);
    PickArgs args;
    args.random = &pick_random_;
    args.now = options_.clock->Now();
    args.hash_key = hash_key;
    PickResult result = snapshot.picker->Pick(args);
    if (!result) return NoEndpointError(snapshot);
    size_t index = result.index();
    if (avoid != nullptr && snapshot.backends[index].get() == avoid &&
        snapshot.backends.size() > 1) {
      // A retry should go elsewhere: ask the policy again, then fall back to the next one.
      for (int i = 0; i < 3 && snapshot.backends[index].get() == avoid; ++i) {
        PickResult again = snapshot.picker->Pick(args);
        if (again) index = again.index();
      }
      if (snapshot.backends[index].get() == avoid) index = (index + 1) % snapshot.backends.size();
    }
    return snapshot.backends[index];
  }

  absl::Status NoEndpointError(const PickerSnapshot& snapshot) const {
    const std::string& service = owner_.service_name_;
    if (!snapshot.discovery_reported) {
      return absl::UnavailableError(absl::StrCat("service '", service,
                                                 "': discovery has not found any endpoint yet (",
                                                 options_.target, ")"));
    }
    if (snapshot.known_endpoints == 0) {
      return absl::UnavailableError(absl::StrCat(
          "service '", service, "' has no registered endpoints (", options_.target, ")"));
    }
    return absl::UnavailableError(absl::StrCat("service '", service, "': none of its ",
                                               snapshot.known_endpoints,
                                               " endpoints is ready (connecting, failing or "
                                               "ejected)"));
  }

  absl::StatusOr<std::shared_ptr<Backend>> Pick(absl::Time deadline,
                                                std::optional<uint64_t> hash_key,
                                                const Backend* avoid, bool fail_fast) {
    while (true) {
      uint64_t generation = generation_.load(std::memory_order_acquire);
      std::shared_ptr<const PickerSnapshot> snapshot = snapshot_.load(std::memory_order_acquire);
      auto picked = TryPick(*snapshot, hash_key, avoid);
      if (picked.ok() || fail_fast) return picked;
      absl::Duration remaining = deadline - options_.clock->Now();
      if (remaining <= absl::ZeroDuration()) return picked;
      DemandProgress(+1);
      {
        std::unique_lock<std::mutex> lock(wait_mu_);
        wait_cv_.wait_for(
            lock, absl::ToChronoNanoseconds(std::min(remaining, absl::Seconds(1))),
            [&] { return generation_.load(std::memory_order_acquire) != generation; });
      }
      DemandProgress(-1);
    }
  }

  void PickAsync(absl::Time deadline, std::optional<uint64_t> hash_key, const Backend* avoid,
                 bool fail_fast,
                 std::function<void(absl::StatusOr<std::shared_ptr<Backend>>)> done) {
    std::shared_ptr<const PickerSnapshot> snapshot = snapshot_.load(std::memory_order_acquire);
    auto picked = TryPick(*snapshot, hash_key, avoid);
    if (picked.ok() || fail_fast || options_.clock->Now() >= deadline) {
      done(std::move(picked));
      return;
    }
    serializer_->Post(
        [this, pending = PendingPick{deadline, hash_key, avoid, std::move(done)}]() mutable {
          pending_picks_.push_back(std::move(pending));
          DemandProgress(+1);
          ResolvePendingPicks();
        });
  }

  void OnCallFinished(Backend& backend, grpc::StatusCode code) {
    if (!options_.outlier_detection.enabled) return;
    if (!CountsAsFailure(code)) {
      backend.consecutive_failures.store(0, std::memory_order_relaxed);
      return;
    }
    int failures = backend.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
    if (failures >= options_.outlier_detection.consecutive_failures &&
        !backend.ejection_requested.exchange(true)) {
      std::weak_ptr<Backend> weak = FindShared(backend);
      serializer_->Post([this, weak] {
        if (auto b = weak.lock()) Eject(*b);
      });
    }
  }

  bool TryStartRetry() { return retry_budget_.TryStartRetry(); }
  void EndRetry() { retry_budget_.EndRetry(); }

  std::vector<BackendInfo> Backends() const {
    std::lock_guard<std::mutex> lock(info_mu_);
    std::vector<BackendInfo> result;
    for (const auto& view : info_) {
      BackendInfo info;
      info.address = view.backend->address();
      info.state = view.ejected ? "ejected" : ConnectivityStateName(view.state);
      info.in_flight = view.backend->stats().in_flight();
      info.calls = view.backend->stats().calls();
      info.failures = view.backend->stats().failures();
      info.weight = view.backend->endpoint().weight;
      info.ejections = view.ejections;
      result.push_back(std::move(info));
    }
    return result;
  }

  size_t ReadyCount() const { return snapshot_.load(std::memory_order_acquire)->backends.size(); }

  bool WaitForReady(size_t count, absl::Duration timeout) const {
    std::unique_lock<std::mutex> lock(wait_mu_);
    return wait_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                             [&] { return ReadyCount() >= count; });
  }

  RetryBudget retry_budget_;

 private:
  // gRPC (epoll1, as Debian builds it) makes socket progress only while some thread polls: one
  // inside a call, one of the callback API's threads, or its 5 s backup poller. While the
  // balancer waits for connections (endpoints connecting, picks waiting for a ready endpoint)
  // nobody may be polling, so this thread polls then, and only then: a poller that always runs
  // competes with gRPC's own threads for the same sockets (measured: about a tenth fewer
  // calls/s with 64 calls in flight).
  void ProgressLoop() {
    while (!shutting_down_) {
      {
        std::unique_lock<std::mutex> lock(progress_mu_);
        progress_cv_.wait(lock, [&] { return shutting_down_ || NeedsProgress(); });
      }
      if (shutting_down_) break;
      void* tag;
      bool ok;
      progress_cq_.AsyncNext(&tag, &ok,
                             std::chrono::system_clock::now() + std::chrono::milliseconds(50));
    }
  }

  bool NeedsProgress() const {
    return always_poll_ || progress_demand_.load(std::memory_order_relaxed) > 0 ||
           not_ready_.load(std::memory_order_relaxed) > 0;
  }

  void DemandProgress(int delta) {
    if (progress_demand_.fetch_add(delta, std::memory_order_relaxed) == 0 && delta > 0) {
      std::lock_guard<std::mutex> lock(progress_mu_);
      progress_cv_.notify_all();
    }
  }

  struct PendingPick {
    absl::Time deadline;
    std::optional<uint64_t> hash_key;
    const Backend* avoid;
    std::function<void(absl::StatusOr<std::shared_ptr<Backend>>)> done;
  };

  // Control-plane state of one endpoint (serializer thread only).
  struct Entry {
    std::shared_ptr<Backend> backend;
    grpc_connectivity_state state = GRPC_CHANNEL_IDLE;
    bool ejected = false;
    int ejections = 0;
    absl::Time ejected_until = absl::InfinitePast();
  };

  struct InfoView {
    std::shared_ptr<Backend> backend;
    grpc_connectivity_state state;
    bool ejected;
    int ejections;
  };

  std::shared_ptr<Backend> FindShared(const Backend& backend) const {
    // The data plane holds a reference to a Backend, not its shared_ptr; find it in the
    // current snapshot (where every pickable backend is).
    auto snapshot = snapshot_.load(std::memory_order_acquire);
    for (const auto& b : snapshot->backends) {
      if (b.get() == &backend) return b;
    }
    return nullptr;
  }

  // Made through gRPC's C API so the balancer can watch the channel's connectivity with a
  // callback (the C++ API only offers a completion queue someone must poll).
  std::pair<std::shared_ptr<grpc::Channel>, grpc_channel*> MakeChannel(const std::string& address) {
    grpc::ChannelArguments args = options_.channel_args;
    // One TCP connection per endpoint per balancer: gRPC would otherwise share subchannels
    // between channels to the same address.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    // A restarted backend is found again within a fraction of a second. (Not
    // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC also uses it as the connect timeout.)
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    grpc_channel_args c_args;
    args.SetChannelArgs(&c_args);
    grpc_channel_credentials* credentials = options_.make_credentials
                                                ? options_.make_credentials()
                                                : grpc_insecure_credentials_create();
    grpc_channel* c_channel = grpc_channel_create(address.c_str(), credentials, &c_args);
    grpc_channel_credentials_release(credentials);
    return {grpc::CreateChannelInternal("", c_channel, {}), c_channel};
  }

  // A connectivity watch in flight; gRPC calls Run on one of its threads when the state
  // changes or the watch's deadline passes.
  struct WatchTag : grpc_completion_queue_functor {
    Impl* impl;
    std::weak_ptr<Backend> backend;
    grpc_connectivity_state last_state;

    static void Run(grpc_completion_queue_functor* functor, int /*ok*/) {
      std::unique_ptr<WatchTag> tag(static_cast<WatchTag*>(functor));
      tag->impl->OnWatchFired(*tag);
      std::lock_guard<std::mutex> lock(tag->impl->watch_mu_);
      if (--tag->impl->watches_in_flight_ == 0) tag->impl->watch_cv_.notify_all();
    }
  };

  void Watch(const std::shared_ptr<Backend>& backend, grpc_connectivity_state last) {
    auto* tag = new WatchTag();
    tag->functor_run = &WatchTag::Run;
    tag->inlineable = 0;
    tag->impl = this;
    tag->backend = backend;
    tag->last_state = last;
    {
      std::lock_guard<std::mutex> lock(watch_mu_);
      ++watches_in_flight_;
    }
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_millis(absl::ToInt64Milliseconds(kWatchSlice), GPR_TIMESPAN));
    grpc_channel_watch_connectivity_state(backend->c_channel(), last, deadline, watch_cq_, tag);
  }

  void OnWatchFired(const WatchTag& tag) {
    std::shared_ptr<Backend> backend = tag.backend.lock();
    if (backend == nullptr || backend->removed || shutting_down_) return;
    grpc_connectivity_state state = grpc_channel_check_connectivity_state(backend->c_channel(), 0);
    if (state == GRPC_CHANNEL_IDLE) {
      // A lost connection leaves the channel idle; keep every endpoint connected.
      state = grpc_channel_check_connectivity_state(backend->c_channel(), 1);
    }
    if (state != tag.last_state) {
      serializer_->Post([this, weak = std::weak_ptr<Backend>(backend), state] {
        if (auto b = weak.lock()) OnState(b, state);
      });
    }
    Watch(backend, state);
  }

  void OnEndpoints(const EndpointSet& set, const EndpointSetDiff& diff) {
    discovery_reported_ = true;
    known_endpoints_ = set.size();
    for (const Endpoint& removed : diff.removed) {
      auto it = entries_.find(removed.address);
      if (it == entries_.end()) continue;
      it->second.backend->removed = true;
      LogInfo("balancer ", owner_.service_name_, ": endpoint ", removed.address,
              " removed; its calls in flight finish");
      entries_.erase(it);
    }
    for (const Endpoint& updated : diff.updated) {
      auto it = entries_.find(updated.address);
      if (it == entries_.end()) continue;
      // Same connection and stats, new metadata (weight, draining).
      auto old = it->second.backend;
      it->second.backend =
          std::make_shared<Backend>(updated, old->channel(), old->c_channel(), old->shared_stats());
      old->removed = true;
      if (options_.manage_channels) Watch(it->second.backend, it->second.state);
    }
    for (const Endpoint& added : diff.added) {
      if (!options_.manage_channels) {
        Entry entry;
        entry.backend =
            std::make_shared<Backend>(added, nullptr, nullptr, std::make_shared<EndpointStats>());
        entry.state = GRPC_CHANNEL_READY;
        LogInfo("balancer ", owner_.service_name_, ": endpoint ", added.address, " added");
        entries_[added.address] = std::move(entry);
        continue;
      }
      auto [channel, c_channel] = MakeChannel(added.address);
      Entry entry;
      entry.backend =
          std::make_shared<Backend>(added, channel, c_channel, std::make_shared<EndpointStats>());
      entry.state = channel->GetState(/*try_to_connect=*/true);
      Watch(entry.backend, entry.state);
      LogInfo("balancer ", owner_.service_name_, ": endpoint ", added.address, " added");
      entries_[added.address] = std::move(entry);
    }
    Rebuild();
  }

  void OnState(const std::shared_ptr<Backend>& backend, grpc_connectivity_state state) {
    auto it = entries_.find(backend->address());
    if (it == entries_.end() || it->second.backend != backend) return;
    bool was_ready = it->second.state == GRPC_CHANNEL_READY;
    it->second.state = state;
    if (was_ready != (state == GRPC_CHANNEL_READY)) Rebuild();
  }

  void Eject(Backend& backend) {
    auto it = entries_.find(backend.address());
    backend.ejection_requested = false;
    if (it == entries_.end() || it->second.backend.get() != &backend || it->second.ejected) return;
    const auto& outlier = options_.outlier_detection;
    const EjectionCounts counts = CountEjections();
    bool self_ready = it->second.state == GRPC_CHANNEL_READY;
    if (counts.ejected + 1 > MaxEjected() || (self_ready && counts.ready_not_ejected <= 1) ||
        entries_.size() <= 1) {
      LogWarning("balancer ", owner_.service_name_, ": ", backend.address(), " failed ",
                 outlier.consecutive_failures,
                 " calls in a row but is not ejected: too many endpoints are ejected already");
      backend.consecutive_failures = 0;
      return;
    }
    Entry& entry = it->second;
    entry.ejected = true;
    ++entry.ejections;
    absl::Duration duration =
        std::min(outlier.base_ejection_time * entry.ejections,
                 std::max(outlier.base_ejection_time, outlier.max_ejection_time));
    entry.ejected_until = options_.clock->Now() + duration;
    backend.consecutive_failures = 0;
    LogWarning("balancer ", owner_.service_name_, ": ejected ", backend.address(), " for ",
               absl::FormatDuration(duration), " after ", outlier.consecutive_failures,
               " failed calls in a row");
    Rebuild();
  }

  void OnTick() {
    absl::Time now = options_.clock->Now();
    bool changed = false;
    for (auto& [address, entry] : entries_) {
      if (entry.ejected && now >= entry.ejected_until) {
        entry.ejected = false;
        changed = true;
        LogInfo("balancer ", owner_.service_name_, ": ", address, " back from ejection");
      }
    }
    if (changed) Rebuild();
    ResolvePendingPicks();
  }

  struct EjectionCounts {
    size_t ejected = 0;
    size_t ready_not_ejected = 0;
  };
  EjectionCounts CountEjections() const {
    EjectionCounts counts;
    for (const auto& [address, entry] : entries_) {
      if (entry.ejected) {
        ++counts.ejected;
      } else if (entry.state == GRPC_CHANNEL_READY) {
        ++counts.ready_not_ejected;
      }
    }
    return counts;
  }

  // The ejected entry whose ejection ends first (among the READY ones if `ready_only`), or null.
  Entry* FirstEjectionToEnd(bool ready_only) {
    Entry* first = nullptr;
    for (auto& [address, entry] : entries_) {
      if (!entry.ejected || (ready_only && entry.state != GRPC_CHANNEL_READY)) continue;
      if (first == nullptr || entry.ejected_until < first->ejected_until) first = &entry;
    }
    return first;
  }

  // Ejection's limits are checked when an endpoint is ejected, but the set changes afterwards:
  // when the others leave or stop being ready, ejected endpoints may be all that is left, or
  // more than the allowed share. Those whose ejection ends first come back early.
  void ReleaseEjectionsBeyondLimits() {
    while (true) {
      const EjectionCounts counts = CountEjections();
      Entry* release = nullptr;
      const char* why = nullptr;
      if (counts.ready_not_ejected == 0 && (release = FirstEjectionToEnd(true)) != nullptr) {
        why = "no other endpoint is ready";
      } else if (counts.ejected > MaxEjected()) {
        release = FirstEjectionToEnd(false);
        why = "more than the allowed share of the endpoints left is ejected";
      }
      if (release == nullptr) return;
      release->ejected = false;
      LogInfo("balancer ", owner_.service_name_, ": ", release->backend->address(),
              " back from ejection early: ", why);
    }
  }

  size_t MaxEjected() const {
    return std::max<size_t>(
        1, static_cast<size_t>(static_cast<double>(entries_.size()) *
                               options_.outlier_detection.max_ejection_percent / 100.0));
  }

  void Rebuild() {
    ReleaseEjectionsBeyondLimits();
    std::vector<PickerEndpoint> pickable;
    auto snapshot = std::make_shared<PickerSnapshot>();
    std::vector<InfoView> info;
    int not_ready = 0;
    for (const auto& [address, entry] : entries_) {
      info.push_back({entry.backend, entry.state, entry.ejected, entry.ejections});
      if (entry.state != GRPC_CHANNEL_READY) ++not_ready;
      if (entry.state != GRPC_CHANNEL_READY || entry.ejected) continue;
      pickable.push_back({entry.backend->endpoint(), entry.backend->shared_stats()});
      snapshot->backends.push_back(entry.backend);
    }
    snapshot->picker = policy_.CreatePicker(std::move(pickable), control_random_);
    if (not_ready_.exchange(not_ready) == 0 && not_ready > 0) {
      std::lock_guard<std::mutex> lock(progress_mu_);
      progress_cv_.notify_all();
    }
    snapshot->known_endpoints = known_endpoints_;
    snapshot->discovery_reported = discovery_reported_;
    {
      std::lock_guard<std::mutex> lock(info_mu_);
      info_ = std::move(info);
    }
    snapshot_.store(std::move(snapshot), std::memory_order_release);
    {
      std::lock_guard<std::mutex> lock(wait_mu_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wait_cv_.notify_all();
    ResolvePendingPicks();
  }

  void ResolvePendingPicks() {
    if (pending_picks_.empty()) return;
    auto snapshot = snapshot_.load(std::memory_order_acquire);
    absl::Time now = options_.clock->Now();
    std::vector<PendingPick> still_waiting;
    for (auto& pending : pending_picks_) {
      auto picked = TryPick(*snapshot, pending.hash_key, pending.avoid);
      if (picked.ok() || now >= pending.deadline) {
        DemandProgress(-1);
        pending.done(std::move(picked));
      } else {
        still_waiting.push_back(std::move(pending));
      }
    }
    pending_picks_ = std::move(still_waiting);
  }

  void FailPendingPicks(const std::string& why) {
    for (auto& pending : pending_picks_) {
      DemandProgress(-1);
      pending.done(absl::UnavailableError(why));
    }
    pending_picks_.clear();
  }

  Balancer& owner_;
  const BalancerOptions& options_;
  std::unique_ptr<PolicyRegistry> own_registry_;
  ConfiguredPolicy policy_;
  LockedRandom control_random_;
  AtomicRandom pick_random_;
  std::unique_ptr<discovery::Discovery> discovery_;

  // Serializer thread only.
  std::map<std::string, Entry> entries_;
  std::vector<PendingPick> pending_picks_;
  bool discovery_reported_ = false;
  size_t known_endpoints_ = 0;

  // Published to the data plane.
  std::atomic<std::shared_ptr<const PickerSnapshot>> snapshot_;
  std::atomic<uint64_t> generation_{0};
  mutable std::mutex wait_mu_;
  mutable std::condition_variable wait_cv_;
  mutable std::mutex info_mu_;
  std::vector<InfoView> info_;

  std::atomic<bool> shutting_down_{false};
  // Called by gRPC once the watch queue has shut down; only then may it be destroyed.
  struct CqShutdown : grpc_completion_queue_functor {
    Impl* impl;
    static void Run(grpc_completion_queue_functor* functor, int /*ok*/) {
      Impl* impl = static_cast<CqShutdown*>(functor)->impl;
      std::lock_guard<std::mutex> lock(impl->watch_mu_);
      impl->cq_shut_down_ = true;
      impl->watch_cv_.notify_all();
    }
  };
  CqShutdown cq_shutdown_;
  bool cq_shut_down_ = false;
  grpc_completion_queue* watch_cq_ = nullptr;

  grpc::CompletionQueue progress_cq_;
  std::thread progress_thread_;
  std::mutex progress_mu_;
  std::condition_variable progress_cv_;
  std::atomic<int> progress_demand_{0};
  std::atomic<int> not_ready_{0};
  bool always_poll_ = false;
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  int64_t watches_in_flight_ = 0;
  std::unique_ptr<WorkSerializer> serializer_;
};

absl::StatusOr<std::unique_ptr<Balancer>> Balancer::Create(BalancerOptions options) {
  auto target = discovery::ParseTarget(options.target);
  if (!target.ok()) return target.status();
  std::unique_ptr<PolicyRegistry> own_registry;
  const PolicyRegistry* registry = options.policies;
  if (registry == nullptr) {
    own_registry = std::make_unique<PolicyRegistry>();
    RegisterBuiltinPolicies(*own_registry);
    registry = own_registry.get();
  }
  auto policy = registry->Configure(options.policy, options.policy_config);
  if (!policy.ok()) return policy.status();
  if (absl::Status retry = ValidateRetryPolicy(options.retry); !retry.ok()) return retry;
  if (options.outlier_detection.consecutive_failures < 1) {
    return absl::InvalidArgumentError(
        "outlier_detection: 'consecutive_failures' must be at least 1");
  }
  auto discovery = discovery::CreateDiscovery(*target, options.discovery);
  if (!discovery.ok()) return discovery.status();
  uint64_t seed = options.random_seed != 0
                      ? options.random_seed
                      : (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  std::unique_ptr<Balancer> balancer(new Balancer(std::move(options), ServiceNameOf(*target)));
  balancer->impl_ = std::make_unique<Impl>(*balancer, std::move(*policy), std::move(own_registry),
                                           std::move(*discovery), seed);
  return balancer;
}

Balancer::Balancer(BalancerOptions options, std::string service_name)
    : options_(std::move(options)), service_name_(std::move(service_name)) {}

Balancer::~Balancer() = default;

absl::StatusOr<std::shared_ptr<Backend>> Balancer::Pick(absl::Time deadline,
                                                        std::optional<uint64_t> hash_key,
                                                        const Backend* avoid,
                                                        std::optional<bool> fail_fast) {
  return impl_->Pick(deadline, hash_key, avoid, fail_fast.value_or(options_.fail_fast));
}

void Balancer::PickAsync(absl::Time deadline, std::optional<uint64_t> hash_key,
                         const Backend* avoid, std::optional<bool> fail_fast,
                         std::function<void(absl::StatusOr<std::shared_ptr<Backend>>)> done) {
  impl_->PickAsync(deadline, hash_key, avoid, fail_fast.value_or(options_.fail_fast),
                   std::move(done));
}

void Balancer::OnCallStarted(Backend& backend) { backend.stats().OnCallStarted(); }

void Balancer::OnCallFinished(Backend& backend, grpc::StatusCode code, absl::Duration latency) {
  backend.stats().OnCallFinished(code == grpc::StatusCode::OK || !CountsAsFailure(code), latency,
                                 options_.clock->Now());
  impl_->OnCallFinished(backend, code);
}

bool Balancer::IsIdempotent(absl::string_view method) const {
  return IsIdempotentMethod(options_.retry, method);
}

absl::Time Balancer::DeadlineFor(const CallOptions& options) const {
  if (options.deadline != absl::InfiniteFuture()) return options.deadline;
  return options_.clock->Now() + options_.default_timeout;
}

bool Balancer::TryStartRetry() { return impl_->TryStartRetry(); }
RetryBudget& Balancer::retry_budget() const { return impl_->retry_budget_; }
void Balancer::EndRetry() { impl_->EndRetry(); }

std::vector<BackendInfo> Balancer::Backends() const { return impl_->Backends(); }
size_t Balancer::ReadyCount() const { return impl_->ReadyCount(); }
bool Balancer::WaitForReady(size_t count, absl::Duration timeout) const {
  return impl_->WaitForReady(count, timeout);
}

}  // namespace sluice::client
