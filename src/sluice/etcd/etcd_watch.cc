#include "sluice/etcd/etcd_watch.h"

#include <atomic>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "sluice/core/grpc_util.h"
#include "sluice/core/log.h"

namespace sluice::etcd {
namespace {

// Connects `channel` if needed. Fails at once when the member is known to be down
// (TRANSIENT_FAILURE) and after `timeout` when it hangs; a watch stream has no deadline of its
// own, so this bounds how long a watch can wait for one member.
absl::Status ConnectWithin(grpc::Channel& channel, absl::Duration timeout) {
  const auto deadline = absl::ToChronoTime(absl::Now() + timeout);
  grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect (", TransportStateName(ToTransportState(state)), ")"));
    }
    if (!channel.WaitForStateChange(state, deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat("not connected within ", absl::FormatDuration(timeout), " (",
                       TransportStateName(ToTransportState(state)), ")"));
    }
    state = channel.GetState(/*try_to_connect=*/true);
  }
  return absl::OkStatus();
}

// One watch: a thread running a Watch stream on one member at a time.
class WatchImpl final : public EtcdWatch {
 public:
  WatchImpl(std::shared_ptr<EtcdMembers> client, std::string prefix, int64_t start_revision,
            std::function<void(const WatchUpdate&)> on_update,
            std::function<void(absl::Status, int64_t)> on_end)
      : client_(std::move(client)),
        prefix_(std::move(prefix)),
        start_revision_(start_revision),
        on_update_(std::move(on_update)),
        on_end_(std::move(on_end)) {}

  ~WatchImpl() override { Cancel(); }

  void StartThread() {
    thread_ = std::thread([this] { Run(); });
  }

  void Cancel() override {
    const bool on_watch_thread = std::this_thread::get_id() == thread_.get_id();
    if (on_watch_thread) {
      // Called from a callback: callback_mu_ is already held by this thread.
      cancelled_.store(true);
    } else {
      // Taking callback_mu_ waits for a running callback, so none starts after this.
      std::lock_guard<std::mutex> lock(callback_mu_);
      cancelled_.store(true);
    }
    {
      std::lock_guard<std::mutex> lock(context_mu_);
      if (context_ != nullptr) context_->TryCancel();
    }
    if (!on_watch_thread && thread_.joinable()) thread_.join();
  }

 private:
  enum class Outcome {
    kDone,          // on_end was called, or the watch was cancelled
    kNotConnected,  // the member could not be reached: try the next one
    kRetryToken,    // the token was refused: authenticate again on the same member
  };

  void Run() {
    const size_t count = client_->member_count();
    const size_t start = client_->preferred();
    std::vector<std::string> failures;
    bool token_refreshed = false;
    for (size_t i = 0; i < count; ++i) {
      const size_t index = (start + i) % count;
      std::string failure;
      Outcome outcome = WatchOn(index, failure);
      if (outcome == Outcome::kDone) return;
      if (outcome == Outcome::kRetryToken) {
        if (token_refreshed) {
          // Refused again with a fresh token: the user may not watch this prefix.
          End(absl::PermissionDeniedError(
                  absl::StrCat(Describe("Watch", prefix_), " refused: ", failure)),
              0);
          return;
        }
        token_refreshed = true;
        LogInfo(Describe("Watch", prefix_), ": etcd refused the auth token (", failure,
                "), authenticating again");
        client_->ForgetToken(token_);
        --i;
        continue;
      }
      failures.push_back(std::move(failure));
    }
    const std::string joined = absl::StrJoin(failures, "; ");
    End(absl::UnavailableError(absl::StrCat(Describe("Watch", prefix_),
                                            " could not start on any etcd member (", joined, ")",
                                            ConnectionHint(client_->options().tls, joined))),
        0);
  }

  Outcome WatchOn(size_t index, std::string& failure) {
    Member& member = client_->member(index);
    const std::string what =
        absl::StrCat(Describe("Watch", prefix_), " from revision ", start_revision_);
    if (absl::Status connected = ConnectWithin(*member.channel, client_->options().call_timeout);
        !connected.ok()) {
      failure = absl::StrCat(member.address, ": ", connected.message());
      return Outcome::kNotConnected;
    }
    grpc::ClientContext context;
    context.set_wait_for_ready(false);
    grpc::Status auth_status = client_->AddToken(member, context, token_);
    if (!auth_status.ok()) {
      failure = absl::StrCat(member.address, ": ", GrpcError(auth_status));
      if (IsMemberFailure(auth_status)) return Outcome::kNotConnected;
      End(client_->AuthenticationError(auth_status, what, member.address), 0);
      return Outcome::kDone;
    }
    {
      std::lock_guard<std::mutex> lock(context_mu_);
      if (cancelled_.load()) return Outcome::kDone;
      context_ = &context;
    }
    Outcome outcome = Stream(member, index, context, what, failure);
    std::lock_guard<std::mutex> lock(context_mu_);
    context_ = nullptr;
    return outcome;
  }

  Outcome Stream(Member& member, size_t index, grpc::ClientContext& context,
                 const std::string& what, std::string& failure) {
    auto stream = member.watch->Watch(&context);
    pb::WatchRequest request;
    pb::WatchCreateRequest* create = request.mutable_create_request();
    create->set_key(RangeStart(prefix_));
    create->set_range_end(PrefixRangeEnd(prefix_));
    create->set_start_revision(start_revision_);
    create->set_progress_notify(true);

    bool created = false;
    bool canceled_by_etcd = false;
    int64_t compact_revision = 0;
    std::string cancel_reason;
    if (stream->Write(request)) {
      pb::WatchResponse response;
      while (stream->Read(&response)) {
        if (response.created() && !created) {
          created = true;
          client_->set_preferred(index);
        }
        if (response.canceled()) {
          canceled_by_etcd = true;
          compact_revision = response.compact_revision();
          cancel_reason = response.cancel_reason();
          break;
        }
        if (response.compact_revision() > 0) {
          // etcd reports compaction with canceled set; accept it without, too.
          canceled_by_etcd = true;
          compact_revision = response.compact_revision();
          break;
        }
        if (response.created() && response.events_size() == 0) continue;
        Deliver(response);
      }
    }
    if (canceled_by_etcd) {
      // etcd ended this watch but keeps the stream open for others: close it ourselves.
      context.TryCancel();
    }
    grpc::Status status = stream->Finish();
    if (cancelled_.load()) return Outcome::kDone;

    if (canceled_by_etcd) {
      if (compact_revision > 0) {
        End(absl::OutOfRangeError(
                absl::StrCat(what, " on ", member.address, ": revision ", start_revision_,
                             " was compacted (etcd has history from revision ", compact_revision,
                             " on); list again and watch from the list's revision + 1")),
            compact_revision);
        return Outcome::kDone;
      }
      // etcd refuses a stale token by cancelling the new watch ("invalid auth token"; some
      // versions say "permission denied"). Once events flowed the token was good, so a later
      // refusal is real.
      const bool token_refused = IsInvalidTokenMessage(cancel_reason) ||
                                 absl::StrContains(cancel_reason, "permission denied");
      if (client_->auth_enabled() && !delivered_any_ && token_refused) {
        failure = absl::StrCat(member.address, ": ", cancel_reason);
        return Outcome::kRetryToken;
      }
      absl::StatusCode code = absl::StatusCode::kAborted;
      if (IsInvalidTokenMessage(cancel_reason)) code = absl::StatusCode::kUnauthenticated;
      if (absl::StrContains(cancel_reason, "permission denied")) {
        code = absl::StatusCode::kPermissionDenied;
      }
      End(absl::Status(code,
                       absl::StrCat(what, " on ", member.address, ": canceled by etcd: ",
                                    cancel_reason.empty() ? "no reason given" : cancel_reason)),
          0);
      return Outcome::kDone;
    }
    if (!created && IsMemberFailure(status)) {
      failure = absl::StrCat(member.address, ": ", GrpcError(status));
      return Outcome::kNotConnected;
    }
    if (!created && client_->auth_enabled() && IsInvalidToken(status)) {
      failure = absl::StrCat(member.address, ": ", GrpcError(status));
      return Outcome::kRetryToken;
    }
    if (status.ok()) {
      End(absl::UnavailableError(
              absl::StrCat(what, " on ", member.address, ": etcd closed the stream")),
          0);
    } else {
      End(ToAbsl(status, what, member.address), 0);
    }
    return Outcome::kDone;
  }

  void Deliver(const pb::WatchResponse& response) {
    WatchUpdate update;
    update.revision = response.header().revision();
    update.events.reserve(response.events_size());
    for (const mvccpb::Event& event : response.events()) {
      WatchEvent out;
      out.type = event.type() == mvccpb::Event::DELETE ? WatchEvent::Type::kDelete
                                                       : WatchEvent::Type::kPut;
      out.kv = FromProto(event.kv());
      update.events.push_back(std::move(out));
    }
    std::lock_guard<std::mutex> lock(callback_mu_);
    if (cancelled_.load()) return;
    delivered_any_ = true;
    if (on_update_) on_update_(update);
  }

  void End(absl::Status status, int64_t compact_revision) {
    std::lock_guard<std::mutex> lock(callback_mu_);
    if (cancelled_.load()) return;
    if (on_end_) on_end_(std::move(status), compact_revision);
  }

  const std::shared_ptr<EtcdMembers> client_;
  const std::string prefix_;
  const int64_t start_revision_;
  const std::function<void(const WatchUpdate&)> on_update_;
  const std::function<void(absl::Status, int64_t)> on_end_;

  std::atomic<bool> cancelled_{false};
  bool delivered_any_ = false;  // watch thread only
  std::string token_;           // watch thread only: the token of the current attempt
  // Held while a callback runs, so Cancel() can wait for it.
  std::mutex callback_mu_;
  std::mutex context_mu_;
  grpc::ClientContext* context_ = nullptr;  // guarded by context_mu_
  std::thread thread_;
};

}  // namespace

std::unique_ptr<EtcdWatch> StartPrefixWatch(std::shared_ptr<EtcdMembers> members,
                                            std::string prefix, int64_t start_revision,
                                            std::function<void(const WatchUpdate&)> on_update,
                                            std::function<void(absl::Status, int64_t)> on_end) {
  auto watch = std::make_unique<WatchImpl>(std::move(members), std::move(prefix), start_revision,
                                           std::move(on_update), std::move(on_end));
  watch->StartThread();
  return watch;
}

}  // namespace sluice::etcd
