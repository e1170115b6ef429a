#include "sluice/client/call.h"

#include "sluice/balancer/hash.h"

namespace sluice::client {

absl::StatusOr<StreamCall> StreamCall::Open(Balancer& balancer, const CallOptions& options) {
  const absl::Time deadline = balancer.DeadlineFor(options);
  std::optional<uint64_t> hash_key;
  if (options.hash_key) hash_key = HashCallKey(*options.hash_key);
  auto picked = balancer.Pick(deadline, hash_key, nullptr, options.fail_fast);
  if (!picked.ok()) return picked.status();
  auto context = std::make_unique<grpc::ClientContext>();
  if (options.deadline != absl::InfiniteFuture()) {
    absl::Duration remaining = deadline - balancer.clock().Now();
    context->set_deadline(std::chrono::system_clock::now() +
                          absl::ToChronoNanoseconds(std::max(remaining, absl::ZeroDuration())));
  }
  if (options.configure_context) options.configure_context(*context);
  balancer.OnCallStarted(**picked);
  return StreamCall(&balancer, std::move(*picked), std::move(context), balancer.clock().Now());
}

StreamCall::~StreamCall() {
  if (backend_ != nullptr && !finished_) Finish(grpc::Status::CANCELLED);
}

void StreamCall::Finish(const grpc::Status& status) {
  if (finished_ || backend_ == nullptr) return;
  finished_ = true;
  balancer_->OnCallFinished(*backend_, status.error_code(), balancer_->clock().Now() - started_);
}

}  // namespace sluice::client
