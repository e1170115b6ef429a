#include "sluice/client/call.h"

#include "sluice/balancer/hash.h"
#include "sluice/core/grpc_util.h"

namespace sluice::client {

std::optional<uint64_t> HashKeyOf(const CallOptions& options) {
  if (!options.hash_key) return std::nullopt;
  return HashCallKey(*options.hash_key);
}

absl::StatusOr<StreamCall> StreamCall::Open(Balancer& balancer, const CallOptions& options) {
  const absl::Time deadline = balancer.DeadlineFor(options);
  // A stream is balanced once and never retried (its messages are not kept), but it counts
  // among the calls in flight the retry budget grows with.
  auto retry = std::make_unique<RetryState>(balancer.retry_budget(), balancer.options().retry,
                                            /*idempotent=*/false, deadline);
  auto picked = balancer.Pick(deadline, HashKeyOf(options), nullptr, options.fail_fast);
  if (!picked.ok()) return picked.status();
  auto context = std::make_unique<grpc::ClientContext>();
  const absl::Time stream_deadline = retry->StartAttempt(balancer.clock().Now());
  // A stream without a deadline of its own may run as long as it likes.
  if (options.deadline != absl::InfiniteFuture()) {
    context->set_deadline(ToGrpcDeadline(stream_deadline, balancer.clock()));
  }
  if (options.configure_context) options.configure_context(*context);
  balancer.OnCallStarted(**picked);
  return StreamCall(&balancer, std::move(*picked), std::move(context), std::move(retry),
                    balancer.clock().Now());
}

StreamCall::~StreamCall() {
  if (backend_ != nullptr && !finished_) Finish(grpc::Status::CANCELLED);
}

void StreamCall::Finish(const grpc::Status& status) {
  if (finished_ || backend_ == nullptr) return;
  finished_ = true;
  const absl::Time now = balancer_->clock().Now();
  balancer_->OnCallFinished(*backend_, status.error_code(), now - started_, now);
  retry_->Finish();
}

}  // namespace sluice::client
