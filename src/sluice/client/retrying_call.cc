// Balancer::Call and Balancer::CallAsync: one call across its attempts. The decisions (retry or
// not, when, within which budget) are RetryState's; this file only carries them out on gRPC.
#include <grpcpp/alarm.h>

#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "sluice/balancer/hash.h"
#include "sluice/balancer/retry_state.h"
#include "sluice/client/balancer.h"
#include "sluice/core/grpc_util.h"
#include "sluice/health/load_report.h"

namespace sluice::client {
namespace {

// UNAVAILABLE from a call gRPC could not even send: the connection was refused or failed
// before the stream existed. Such a call is safe to send elsewhere, whatever its method.
bool NeverReachedBackend(const grpc::Status& status) {
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return false;
  const std::string& message = status.error_message();
  return absl::StrContains(message, "failed to connect") ||
         absl::StrContains(message, "Failed to connect") ||
         absl::StrContains(message, "Connection refused");
}

AttemptEnd EndOf(const grpc::Status& status, const RetryState& retry) {
  if (NeverReachedBackend(status)) return AttemptEnd::kNeverReached;
  if (retry.IsAttemptTimeout(ToAbslCode(status.error_code()))) return AttemptEnd::kTimedOut;
  return AttemptEnd::kAnswered;
}

// The status a call ends with when its last attempt ran out of retry.attempt_timeout: the call's
// own deadline has not passed, so DEADLINE_EXCEEDED would tell the caller its deadline was too
// short; the backend gave no answer in time, which is UNAVAILABLE.
grpc::Status AttemptTimeoutStatus(const Backend& backend, const RetryPolicy& retry, int attempts) {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      absl::StrCat(backend.address(), " gave no answer within attempt_timeout (",
                                   absl::FormatDuration(retry.attempt_timeout), "); ", attempts,
                                   " attempt(s) made, before the call's deadline"));
}

// Prepares one attempt's context and counts the attempt on its backend; returns its start.
absl::Time BeginAttempt(Balancer& balancer, const CallOptions& options, RetryState& retry,
                        Backend& backend, grpc::ClientContext& context) {
  const absl::Time started = balancer.clock().Now();
  context.set_deadline(ToGrpcDeadline(retry.StartAttempt(started), started));
  if (options.configure_context) options.configure_context(context);
  balancer.OnCallStarted(backend);
  return started;
}

// Reports one attempt's outcome to its backend (and the load report in its trailers, when the
// backend sent one) and decides what follows. `status` becomes the status the call ends with
// when it gives up.
RetryDecision EndAttempt(Balancer& balancer, RetryState& retry, Backend& backend,
                         const grpc::ClientContext& context, absl::Time started,
                         grpc::Status& status) {
  const AttemptEnd end = EndOf(status, retry);
  const absl::Time now = balancer.clock().Now();
  if (balancer.wants_load_reports()) {
    if (auto report = health::FindLoadReportTrailer(context.GetServerTrailingMetadata())) {
      health::RecordLoadReport(*report, backend.stats(), now);
    }
  }
  // A stalled backend failed the attempt: outlier detection should see that.
  balancer.OnCallFinished(
      backend, end == AttemptEnd::kTimedOut ? grpc::StatusCode::UNAVAILABLE : status.error_code(),
      now - started, now);
  RetryDecision decision = retry.OnAttemptEnded(end, ToAbslCode(status.error_code()), now);
  if (!decision.retry() && end == AttemptEnd::kTimedOut) {
    status = AttemptTimeoutStatus(backend, balancer.options().retry, retry.attempts());
  }
  return decision;
}

}  // namespace

grpc::Status Balancer::Call(const CallOptions& options, const Attempt& attempt) {
  const absl::Time deadline = DeadlineFor(options);
  const std::optional<uint64_t> hash_key = HashKeyOf(options);
  RetryState retry(retry_budget(), options_.retry, IsIdempotent(options.method), deadline);
  std::shared_ptr<Backend> previous;
  grpc::Status status;
  while (true) {
    auto picked = Pick(deadline, hash_key, previous.get(), options.fail_fast);
    if (!picked.ok()) {
      // A retry that found no endpoint ends with the last attempt's own status.
      if (previous == nullptr) status = ToGrpcStatus(picked.status());
      break;
    }
    Backend& backend = **picked;
    grpc::ClientContext context;
    const absl::Time started = BeginAttempt(*this, options, retry, backend, context);
    status = attempt(backend, &context);
    const RetryDecision decision = EndAttempt(*this, retry, backend, context, started, status);
    if (!decision.retry()) break;
    if (decision.verdict == RetryDecision::Verdict::kRetryLater) {
      absl::SleepFor(decision.retry_at - clock().Now());
    }
    previous = std::move(*picked);
  }
  return status;
}

namespace {

// One callback-style call across its attempts. It keeps itself alive (self) from CallAsync
// until Finish, so its callbacks capture a plain pointer: a lambda holding only a pointer fits
// in std::function's own storage, while one holding shared_ptrs costs a heap allocation per
// callback per call.
struct AsyncCall {
  AsyncCall(Balancer& balancer, CallOptions call_options, Balancer::AsyncAttempt start_attempt,
            std::function<void(grpc::Status)> done_callback)
      : balancer(balancer),
        options(std::move(call_options)),
        start(std::move(start_attempt)),
        done(std::move(done_callback)),
        deadline(balancer.DeadlineFor(options)),
        hash_key(HashKeyOf(options)),
        retry(balancer.retry_budget(), balancer.options().retry,
              balancer.IsIdempotent(options.method), deadline) {}

  std::shared_ptr<AsyncCall> self;
  Balancer& balancer;
  const CallOptions options;
  const Balancer::AsyncAttempt start;
  std::function<void(grpc::Status)> done;
  const absl::Time deadline;
  const std::optional<uint64_t> hash_key;
  RetryState retry;
  std::shared_ptr<Backend> previous;
  // The attempt in flight.
  std::shared_ptr<Backend> backend;
  absl::Time attempt_started;
  // In the call itself rather than allocated per attempt; emplaced anew for each attempt.
  std::optional<grpc::ClientContext> context;
  std::optional<grpc::Status> last_status;
  // Wakes a paused transparent retry.
  std::optional<grpc::Alarm> pause;

  void Begin() {
    balancer.PickAsync(
        deadline, hash_key, previous.get(), options.fail_fast,
        [this](absl::StatusOr<std::shared_ptr<Backend>> picked) { OnPicked(std::move(picked)); });
  }

  void OnPicked(absl::StatusOr<std::shared_ptr<Backend>> picked) {
    if (!picked.ok()) {
      Finish(last_status ? *last_status : ToGrpcStatus(picked.status()));
      return;
    }
    backend = std::move(*picked);
    context.reset();
    context.emplace();
    attempt_started = BeginAttempt(balancer, options, retry, *backend, *context);
    start(*backend, &*context, [this](grpc::Status status) { OnAttemptDone(std::move(status)); });
  }

  void OnAttemptDone(grpc::Status status) {
    const RetryDecision decision =
        EndAttempt(balancer, retry, *backend, *context, attempt_started, status);
    if (!decision.retry()) {
      Finish(std::move(status));
      return;
    }
    previous = std::move(backend);
    last_status = std::move(status);
    if (decision.verdict == RetryDecision::Verdict::kRetryLater) {
      pause.emplace();
      pause->Set(ToGrpcDeadline(decision.retry_at, balancer.clock()), [this](bool) { Begin(); });
      return;
    }
    Begin();
  }

  void Finish(grpc::Status status) {
    retry.Finish();
    // The last reference may be this one: keep the call alive until this function returns.
    std::shared_ptr<AsyncCall> keep = std::move(self);
    auto callback = std::move(done);
    callback(std::move(status));
  }
};

}  // namespace

void Balancer::CallAsync(CallOptions options, AsyncAttempt start,
                         std::function<void(grpc::Status)> done) {
  auto call =
      std::make_shared<AsyncCall>(*this, std::move(options), std::move(start), std::move(done));
  call->self = call;
  call->Begin();
}

}  // namespace sluice::client
