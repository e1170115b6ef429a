#include "sluice/health/health_watcher.h"

#include <grpcpp/alarm.h>

#include <condition_variable>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "sluice/core/backoff.h"
#include "sluice/core/log.h"

namespace sluice::health {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

absl::Status ValidateHealthCheckOptions(const HealthCheckOptions& options) {
  auto positive = [](absl::string_view name, absl::Duration value) -> absl::Status {
    if (value > absl::ZeroDuration()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        "health check option ", name, " must be positive, got ", absl::FormatDuration(value)));
  };
  for (auto [name, value] :
       {std::pair<absl::string_view, absl::Duration>{"initial_backoff", options.initial_backoff},
        {"max_backoff", options.max_backoff},
        {"poll_interval", options.poll_interval},
        {"check_timeout", options.check_timeout},
        {"no_service_recheck", options.no_service_recheck}}) {
    if (absl::Status s = positive(name, value); !s.ok()) return s;
  }
  if (options.max_backoff < options.initial_backoff) {
    return absl::InvalidArgumentError(
        absl::StrCat("health check option max_backoff (", absl::FormatDuration(options.max_backoff),
                     ") must not be below initial_backoff (",
                     absl::FormatDuration(options.initial_backoff), ")"));
  }
  if (options.clock == nullptr) return absl::InvalidArgumentError("health check needs a clock");
  return absl::OkStatus();
}

namespace {

HealthState FromWire(HealthCheckResponse::ServingStatus status) {
  switch (status) {
    case HealthCheckResponse::SERVING:
      return HealthState::kServing;
    case HealthCheckResponse::NOT_SERVING:
      return HealthState::kNotServing;
    case HealthCheckResponse::SERVICE_UNKNOWN:
      return HealthState::kServiceUnknown;
    default:
      return HealthState::kUnknown;
  }
}

}  // namespace

// Exactly one asynchronous operation is outstanding at any time: the Watch stream, one Check,
// or the alarm that starts the next of them. Each operation's completion starts the next, so
// the state machine needs no lock of its own; `mu_` only guards what the destructor touches.
class HealthWatcher::Impl {
 public:
  Impl(std::shared_ptr<grpc::Channel> channel, HealthCheckOptions options, HealthListener listener)
      : channel_(std::move(channel)),
        stub_(Health::NewStub(channel_)),
        options_(std::move(options)),
        listener_(std::move(listener)),
        backoff_({.initial = options_.initial_backoff, .max = options_.max_backoff}, options_.random) {
    request_.set_service(options_.service);
  }

  void Start() { StartWatch(); }

  // Checks turned off: one report of kNotChecked, and no operation ever runs.
  void Disable() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      state_ = HealthState::kNotChecked;
      operation_running_ = false;
    }
    if (listener_) listener_(HealthState::kNotChecked);
  }

  void Stop() {
    grpc::ClientContext* context;
    grpc::Alarm* alarm;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      context = context_.get();
      alarm = alarm_.get();
    }
    // Outside the lock: cancelling may complete the operation on this thread. Both objects stay
    // alive: they are only replaced when a new operation starts, which `stopping_` prevents.
    if (context != nullptr) context->TryCancel();
    if (alarm != nullptr) alarm->Cancel();
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [this] { return !operation_running_; });
  }

  HealthState state() const {
    std::lock_guard<std::mutex> lock(mu_);
    return state_;
  }
  absl::Time last_answer_time() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_answer_;
  }

 private:
  class WatchReactor;

  // Returns a fresh context for the next call, or null when stopping (the operation chain
  // ends there). The previous context is kept one more round: its call may still be unwinding.
  grpc::ClientContext* BeginCall(absl::Duration timeout) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return EndLocked();
    retired_context_ = std::move(context_);
    context_ = std::make_unique<grpc::ClientContext>();
    // The stream waits for the channel to (re)connect instead of failing at once.
    context_->set_wait_for_ready(true);
    if (timeout != absl::InfiniteDuration()) {
      context_->set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
    }
    return context_.get();
  }

  // Marks the chain of operations ended and wakes Stop(). Returns null for BeginCall.
  grpc::ClientContext* EndLocked() {
    operation_running_ = false;
    idle_cv_.notify_all();
    return nullptr;
  }

  // False when stopping: the caller's completion was the last operation.
  bool Continue() {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) EndLocked();
    return !stopping_;
  }

  void Answer(HealthState state) {
    bool changed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_answer_ = options_.clock->Now();
      changed = state != state_;
      state_ = state;
    }
    // Only the one running operation calls this, so listener calls never overlap.
    if (changed && listener_) listener_(state);
  }

  void StartWatch();
  void WatchEnded(const grpc::Status& status, absl::Time first_answer);
  void StartCheck();
  void CheckEnded(const grpc::Status& status, HealthCheckResponse::ServingStatus serving);

  // Runs `next` after `delay` (real time: gRPC's timers), unless stopped meanwhile.
  template <typename Next>
  void After(absl::Duration delay, Next next) {
    grpc::Alarm* alarm;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) {
        EndLocked();
        return;
      }
      // The alarm that called us (if any) is still running its callback: retire, not destroy.
      retired_alarm_ = std::move(alarm_);
      alarm_ = std::make_unique<grpc::Alarm>();
      alarm = alarm_.get();
    }
    alarm->Set(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(delay),
               [this, next](bool /*fired*/) {
                 if (Continue()) (this->*next)();
               });
    // Stop() may have cancelled the alarm before it was set: cancel again so it does not wait.
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping = stopping_;
    }
    if (stopping) alarm->Cancel();
  }

  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<Health::Stub> stub_;
  const HealthCheckOptions options_;
  const HealthListener listener_;
  HealthCheckRequest request_;
  Backoff backoff_;  // only the running operation touches it

  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  bool stopping_ = false;
  bool operation_running_ = true;
  HealthState state_ = HealthState::kPending;
  absl::Time last_answer_ = absl::InfinitePast();
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientContext> retired_context_;
  std::unique_ptr<grpc::Alarm> alarm_;
  std::unique_ptr<grpc::Alarm> retired_alarm_;
};

// One Watch stream. Deletes itself when gRPC is done with it.
class HealthWatcher::Impl::WatchReactor final
    : public grpc::ClientReadReactor<HealthCheckResponse> {
 public:
  explicit WatchReactor(Impl* impl) : impl_(impl) {}

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended: OnDone follows
    if (first_answer_ == absl::InfinitePast()) first_answer_ = impl_->options_.clock->Now();
    impl_->Answer(FromWire(response_.status()));
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    Impl* impl = impl_;
    const absl::Time first_answer = first_answer_;
    const grpc::Status copy = status;
    delete this;
    impl->WatchEnded(copy, first_answer);
  }

  HealthCheckResponse response_;

 private:
  Impl* const impl_;
  absl::Time first_answer_ = absl::InfinitePast();
};

void HealthWatcher::Impl::StartWatch() {
  grpc::ClientContext* context = BeginCall(absl::InfiniteDuration());
  if (context == nullptr) return;
  auto* reactor = new WatchReactor(this);
  stub_->async()->Watch(context, &request_, reactor);
  reactor->StartRead(&reactor->response_);
  reactor->StartCall();
}

void HealthWatcher::Impl::WatchEnded(const grpc::Status& status, absl::Time first_answer) {
  if (!Continue()) return;
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    // An older server, or one whose health service only answers Check: poll instead.
    StartCheck();
    return;
  }
  // A stream that answered and then lived a while was healthy: start the backoff over.
  if (first_answer != absl::InfinitePast() &&
      options_.clock->Now() - first_answer >= options_.initial_backoff) {
    backoff_.Reset();
  }
  LogDebug("health watch of '", options_.service, "' ended (", status.error_message(),
           "); reopening after a backoff");
  After(backoff_.Next(), &Impl::StartWatch);
}

void HealthWatcher::Impl::StartCheck() {
  grpc::ClientContext* context = BeginCall(options_.check_timeout);
  if (context == nullptr) return;
  auto response = std::make_shared<HealthCheckResponse>();
  stub_->async()->Check(context, &request_, response.get(), [this, response](grpc::Status status) {
    CheckEnded(status, response->status());
  });
}

void HealthWatcher::Impl::CheckEnded(const grpc::Status& status,
                                     HealthCheckResponse::ServingStatus serving) {
  if (!Continue()) return;
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      backoff_.Reset();
      Answer(FromWire(serving));
      After(options_.poll_interval, &Impl::StartCheck);
      return;
    case grpc::StatusCode::NOT_FOUND:  // Check's answer for a service name it does not know
      backoff_.Reset();
      Answer(HealthState::kServiceUnknown);
      After(options_.poll_interval, &Impl::StartCheck);
      return;
    case grpc::StatusCode::UNIMPLEMENTED:
      backoff_.Reset();
      Answer(HealthState::kNoHealthService);
      After(options_.no_service_recheck, &Impl::StartWatch);
      return;
    default:
      After(backoff_.Next(), &Impl::StartCheck);
      return;
  }
}

absl::StatusOr<std::unique_ptr<HealthWatcher>> HealthWatcher::Start(
    std::shared_ptr<grpc::Channel> channel, HealthCheckOptions options, HealthListener listener) {
  if (channel == nullptr) return absl::InvalidArgumentError("health watcher needs a channel");
  if (absl::Status s = ValidateHealthCheckOptions(options); !s.ok()) return s;
  const bool enabled = options.enabled;
  auto impl = std::make_shared<Impl>(std::move(channel), std::move(options), std::move(listener));
  std::unique_ptr<HealthWatcher> watcher(new HealthWatcher(impl));
  if (enabled) {
    impl->Start();
  } else {
    impl->Disable();
  }
  return watcher;
}

HealthWatcher::HealthWatcher(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
HealthWatcher::~HealthWatcher() { impl_->Stop(); }
HealthState HealthWatcher::state() const { return impl_->state(); }
absl::Time HealthWatcher::last_answer_time() const { return impl_->last_answer_time(); }

}  // namespace sluice::health
