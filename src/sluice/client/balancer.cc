#include "sluice/client/balancer.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include <algorithm>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "sluice/balancer/builtin_policies.h"
#include "sluice/balancer/endpoint_manager.h"
#include "sluice/client/channel_watcher.h"
#include "sluice/client/health_readiness.h"
#include "sluice/client/progress_poller.h"
#include "sluice/client/work_serializer.h"
#include "sluice/core/grpc_util.h"

namespace sluice::client {
namespace {

std::string ServiceNameOf(const discovery::Target& target) {
  if (target.scheme == discovery::Target::Scheme::kEtcd) {
    std::vector<absl::string_view> parts = absl::StrSplit(target.prefix, '/', absl::SkipEmpty());
    if (!parts.empty()) return std::string(parts.back());
  }
  return target.text;
}

// The balancer makes a gRPC channel per endpoint unless the caller carries calls itself (and
// then reports their transport through BalancerOptions::transport_watcher).
bool OwnsChannels(const BalancerOptions& options) { return options.transport_watcher == nullptr; }

// Holds gRPC's library open for the balancer's life: the C API it uses needs it initialised.
struct GrpcLibraryRef {
  GrpcLibraryRef() { grpc_init(); }
  ~GrpcLibraryRef() { grpc_shutdown(); }
};

std::shared_ptr<Backend> AsBackend(std::shared_ptr<EndpointHandle> endpoint) {
  // Every handle the balancer's manager holds was made by MakeHandle: a Backend.
  return std::static_pointer_cast<Backend>(std::move(endpoint));
}

absl::StatusOr<std::shared_ptr<Backend>> AsBackend(
    absl::StatusOr<std::shared_ptr<EndpointHandle>> picked) {
  if (!picked.ok()) return picked.status();
  return AsBackend(std::move(*picked));
}

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

// Wires the parts together: discovery feeds the endpoint manager on the work serializer's
// thread; readiness watchers (channel connectivity, and any the options add) report into it;
// the data plane picks from its snapshots.
class Balancer::Impl final : public ReadinessReporter {
 public:
  Impl(Balancer& owner, ConfiguredPolicy policy, std::unique_ptr<PolicyRegistry> own_registry,
       std::unique_ptr<discovery::Discovery> discovery, uint64_t seed)
      : retry_budget_(owner.options_.retry.budget_ratio, owner.options_.retry.budget_min),
        options_(owner.options_),
        own_registry_(std::move(own_registry)),
        outlier_(options_.outlier_detection, *options_.clock, owner.service_name_),
        endpoints_(owner.service_name_, options_.target, std::move(policy), outlier_,
                   TransportState::kIdle, *options_.clock, seed,
                   {.make_handle =
                        [this](const Endpoint& endpoint, const EndpointHandle* previous) {
                          return MakeHandle(endpoint, previous);
                        },
                    .published = [this](size_t not_ready) { OnPublished(not_ready); }}),
        discovery_(std::move(discovery)) {
    if (OwnsChannels(options_)) {
      channel_watcher_ = std::make_unique<ChannelConnectivityWatcher>();
      watchers_.push_back(channel_watcher_.get());
    } else if (options_.transport_watcher != nullptr) {
      watchers_.push_back(options_.transport_watcher.get());
    }
    if (options_.health_check.enabled) {
      health_watcher_ = std::make_unique<HealthReadinessWatcher>(
          options_.health_check, [this](const EndpointHandle& endpoint) {
            const auto& backend = static_cast<const Backend&>(endpoint);
            return backend.channel() != nullptr
                       ? backend.channel()
                       : MakeEndpointChannel(endpoint.address(), options_).first;
          });
      watchers_.push_back(health_watcher_.get());
    }
    for (const auto& watcher : options_.readiness_watchers) watchers_.push_back(watcher.get());
    serializer_ =
        std::make_unique<WorkSerializer>(absl::Milliseconds(50), [this] { endpoints_.OnTick(); });
    discovery_->Start([this](const EndpointSet& set, const EndpointSetDiff& diff) {
      serializer_->Post([this, set, diff] {
        for (const auto& joined : endpoints_.OnEndpoints(set, diff)) {
          for (ReadinessWatcher* watcher : watchers_) watcher->Watch(joined, *this);
        }
      });
    });
  }

  ~Impl() override {
    discovery_->Stop();
    // Watchers the caller gave may outlive this balancer: they must stop reporting to it first.
    if (options_.transport_watcher != nullptr) options_.transport_watcher->Unwatch(*this);
    for (const auto& watcher : options_.readiness_watchers) watcher->Unwatch(*this);
    serializer_->Post([this] { endpoints_.Clear("the balancer is shutting down"); });
    serializer_->Shutdown();
    // Their last watches may still report: the serializer must outlive them (later Posts drop).
    health_watcher_.reset();
    channel_watcher_.reset();
  }

  absl::StatusOr<std::shared_ptr<Backend>> Pick(absl::Time deadline,
                                                std::optional<uint64_t> hash_key,
                                                const Backend* avoid, bool fail_fast) {
    while (true) {
      const uint64_t generation = generation_.load(std::memory_order_acquire);
      auto picked = endpoints_.TryPick(*endpoints_.snapshot(), hash_key, avoid);
      if (picked.ok() || fail_fast) return AsBackend(std::move(picked));
      const absl::Duration remaining = deadline - options_.clock->Now();
      if (remaining <= absl::ZeroDuration()) return picked.status();
      poller_.Demand(+1);
      {
        std::unique_lock<std::mutex> lock(wait_mu_);
        wait_cv_.wait_for(
            lock, absl::ToChronoNanoseconds(std::min(remaining, absl::Seconds(1))),
            [&] { return generation_.load(std::memory_order_acquire) != generation; });
      }
      poller_.Demand(-1);
    }
  }

  void PickAsync(absl::Time deadline, std::optional<uint64_t> hash_key, const Backend* avoid,
                 bool fail_fast, std::function<void(absl::StatusOr<std::shared_ptr<Backend>>)> done,
                 bool wait_for_ready) {
    auto snapshot = endpoints_.snapshot();
    auto picked = endpoints_.TryPick(*snapshot, hash_key, avoid);
    if (picked.ok() || fail_fast || (!wait_for_ready && snapshot->NothingComing()) ||
        options_.clock->Now() >= deadline) {
      done(AsBackend(std::move(picked)));
      return;
    }
    serializer_->Post(
        [this, deadline, hash_key, avoid, wait_for_ready, done = std::move(done)]() mutable {
          poller_.Demand(+1);
          endpoints_.AddPendingPick(
              {deadline, hash_key, avoid,
               [this, done = std::move(done)](absl::StatusOr<std::shared_ptr<EndpointHandle>> got) {
                 poller_.Demand(-1);
                 done(AsBackend(std::move(got)));
               },
               wait_for_ready});
        });
  }

  void OnCallFinished(Backend& backend, absl::StatusCode code, absl::Duration latency,
                      absl::Time now) {
    backend.stats().OnCallFinished(!OutlierDetector::CountsAsFailure(code), latency, now);
    if (!outlier_.RecordResult(backend, code)) return;
    std::weak_ptr<EndpointHandle> weak = endpoints_.FindShared(backend);
    serializer_->Post([this, weak] {
      if (auto endpoint = weak.lock()) endpoints_.Eject(*endpoint);
    });
  }

  std::vector<BackendInfo> Backends() const {
    std::vector<BackendInfo> result;
    for (const EndpointView& view : endpoints_.Views()) {
      BackendInfo info;
      info.address = view.endpoint->address();
      info.state = view.state;
      info.in_flight = view.endpoint->stats().in_flight();
      info.calls = view.endpoint->stats().calls();
      info.failures = view.endpoint->stats().failures();
      info.weight = view.endpoint->endpoint().weight;
      info.ejections = view.ejections;
      if (health_watcher_ != nullptr) {
        if (auto health = health_watcher_->StateOf(info.address)) {
          info.health = std::string(health::HealthStateName(*health));
        }
      }
      result.push_back(std::move(info));
    }
    return result;
  }

  size_t ReadyCount() const { return endpoints_.snapshot()->endpoints.size(); }

  bool WaitForReady(size_t count, absl::Duration timeout) const {
    std::unique_lock<std::mutex> lock(wait_mu_);
    return wait_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                             [&] { return ReadyCount() >= count; });
  }

  // ReadinessReporter: from the watchers' threads onto the serializer.
  void ReportTransport(const std::shared_ptr<EndpointHandle>& endpoint,
                       TransportState state) override {
    if (endpoint->removed) return;
    serializer_->Post([this, weak = std::weak_ptr<EndpointHandle>(endpoint), state] {
      if (auto live = weak.lock()) endpoints_.SetTransport(live, state);
    });
  }
  void ReportHealth(const std::shared_ptr<EndpointHandle>& endpoint, HealthState state) override {
    if (endpoint->removed) return;
    serializer_->Post([this, weak = std::weak_ptr<EndpointHandle>(endpoint), state] {
      if (auto live = weak.lock()) endpoints_.SetHealth(live, state);
    });
  }

  RetryBudget retry_budget_;

 private:
  std::shared_ptr<EndpointHandle> MakeHandle(const Endpoint& endpoint,
                                             const EndpointHandle* previous) {
    if (previous != nullptr) {
      const auto& old = static_cast<const Backend&>(*previous);
      return std::make_shared<Backend>(endpoint, old.channel(), old.c_channel(),
                                       old.shared_stats());
    }
    if (!OwnsChannels(options_)) {
      return std::make_shared<Backend>(endpoint, nullptr, nullptr,
                                       std::make_shared<EndpointStats>());
    }
    auto [channel, c_channel] = MakeEndpointChannel(endpoint.address, options_);
    return std::make_shared<Backend>(endpoint, std::move(channel), c_channel,
                                     std::make_shared<EndpointStats>());
  }

  void OnPublished(size_t not_ready) {
    poller_.SetNotReady(not_ready);
    {
      std::lock_guard<std::mutex> lock(wait_mu_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wait_cv_.notify_all();
  }

  const BalancerOptions& options_;
  GrpcLibraryRef grpc_library_;
  std::unique_ptr<PolicyRegistry> own_registry_;
  OutlierDetector outlier_;
  ProgressPoller poller_;
  std::atomic<uint64_t> generation_{0};
  mutable std::mutex wait_mu_;
  mutable std::condition_variable wait_cv_;
  EndpointManager endpoints_;
  std::unique_ptr<discovery::Discovery> discovery_;
  std::unique_ptr<ChannelConnectivityWatcher> channel_watcher_;
  std::unique_ptr<HealthReadinessWatcher> health_watcher_;
  std::vector<ReadinessWatcher*> watchers_;
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
  if (absl::Status health = health::ValidateHealthCheckOptions(options.health_check);
      !health.ok()) {
    return health;
  }
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
  balancer->wants_load_reports_ = policy->uses_load_reports();
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
                         std::function<void(absl::StatusOr<std::shared_ptr<Backend>>)> done,
                         bool wait_for_ready) {
  impl_->PickAsync(deadline, hash_key, avoid, fail_fast.value_or(options_.fail_fast),
                   std::move(done), wait_for_ready);
}

std::pair<std::shared_ptr<grpc::Channel>, grpc_channel*> MakeEndpointChannel(
    const std::string& address, const BalancerOptions& options) {
  grpc::ChannelArguments args = options.channel_args;
  // One TCP connection per endpoint per balancer: gRPC would otherwise share subchannels
  // between channels to the same address.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // A restarted backend is found again within a fraction of a second. (Not
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC also uses it as the connect timeout.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  grpc_channel_args c_args;
  args.SetChannelArgs(&c_args);
  grpc_channel_credentials* credentials = options.make_credentials
                                              ? options.make_credentials()
                                              : grpc_insecure_credentials_create();
  grpc_channel* c_channel = grpc_channel_create(address.c_str(), credentials, &c_args);
  grpc_channel_credentials_release(credentials);
  return {grpc::CreateChannelInternal("", c_channel, {}), c_channel};
}

void Balancer::OnCallStarted(Backend& backend) { backend.stats().OnCallStarted(); }

void Balancer::OnCallFinished(Backend& backend, grpc::StatusCode code, absl::Duration latency,
                              absl::Time now) {
  impl_->OnCallFinished(backend, ToAbslCode(code), latency, now);
}

bool Balancer::IsIdempotent(absl::string_view method) const {
  return IsIdempotentMethod(options_.retry, method);
}

absl::Time Balancer::DeadlineFor(const CallOptions& options) const {
  if (options.deadline != absl::InfiniteFuture()) return options.deadline;
  return options_.clock->Now() + options_.default_timeout;
}

bool Balancer::TryStartRetry() { return impl_->retry_budget_.TryStartRetry(); }
void Balancer::EndRetry() { impl_->retry_budget_.EndRetry(); }
RetryBudget& Balancer::retry_budget() const { return impl_->retry_budget_; }

std::vector<BackendInfo> Balancer::Backends() const { return impl_->Backends(); }
size_t Balancer::ReadyCount() const { return impl_->ReadyCount(); }
bool Balancer::WaitForReady(size_t count, absl::Duration timeout) const {
  return impl_->WaitForReady(count, timeout);
}

}  // namespace sluice::client
