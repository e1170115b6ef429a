#pragma once

// What the etcd client's unary calls and its watches share: one channel and stub set per
// member, the auth token, the member that answered last, and the failover loop that runs a call
// on one member after another. Internal to sluice_etcd (not installed with the public header).

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "mvccpb/kv.pb.h"
#include "sluice/core/log.h"
#include "sluice/etcd/etcd_client.h"

namespace sluice::etcd {

namespace pb = ::etcdserverpb;

struct Member {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::KV::Stub> kv;
  std::unique_ptr<pb::Watch::Stub> watch;
  std::unique_ptr<pb::Lease::Stub> lease;
  std::unique_ptr<pb::Auth::Stub> auth;
};

// The one place that decides how we talk to a member: plain TCP, or TLS with the given CA and
// optional client certificate.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(
    const EtcdTlsOptions& tls);

// "etcd Put 'services/greeter/x'": what failed, for every error message. Keys are bytes, so
// unprintable ones are escaped.
std::string Describe(absl::string_view op, absl::string_view key);
// "UNAVAILABLE: message".
std::string GrpcError(const grpc::Status& status);
absl::Status ToAbsl(const grpc::Status& status, absl::string_view what, absl::string_view member);
// Errors after which the next member may do better: it is down, or too slow to answer.
bool IsMemberFailure(const grpc::Status& status);
// etcd's answers to a token it no longer knows (simple tokens die with a restart) or one issued
// before an auth change.
bool IsInvalidTokenMessage(absl::string_view message);
bool IsInvalidToken(const grpc::Status& status);
KeyValue FromProto(const mvccpb::KeyValue& kv);
// gRPC reports TLS trouble in terms of sockets and handshakes; say what to check instead.
// `failures` is the text of every member's error.
std::string ConnectionHint(const EtcdTlsOptions& tls, absl::string_view failures);
// etcd rejects an empty key; the whole keyspace is ["\0", "\0").
std::string RangeStart(absl::string_view prefix);

class ConnectivityPoller;

class EtcdMembers {
 public:
  // Opens a channel to every member (connecting lazily) and starts polling them.
  EtcdMembers(EtcdClientOptions options,
              const std::shared_ptr<grpc::ChannelCredentials>& credentials);
  ~EtcdMembers();

  const EtcdClientOptions& options() const { return options_; }
  size_t member_count() const { return members_.size(); }
  Member& member(size_t index) { return *members_[index]; }
  size_t preferred() const { return preferred_.load(std::memory_order_relaxed); }
  void set_preferred(size_t index) { preferred_.store(index, std::memory_order_relaxed); }
  bool auth_enabled() const { return !options_.username.empty(); }

  // Adds the auth token to `context`, authenticating first if there is none yet, and returns
  // it in `used`. An error is the Authenticate call's.
  grpc::Status AddToken(Member& member, grpc::ClientContext& context, std::string& used) {
    if (!auth_enabled()) return grpc::Status::OK;
    std::string token;
    {
      std::lock_guard<std::mutex> lock(token_mu_);
      token = token_;
    }
    if (token.empty()) {
      grpc::ClientContext auth_context;
      auth_context.set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
      auth_context.set_wait_for_ready(false);
      pb::AuthenticateRequest request;
      request.set_name(options_.username);
      request.set_password(options_.password);
      pb::AuthenticateResponse response;
      grpc::Status status = member.auth->Authenticate(&auth_context, request, &response);
      if (!status.ok()) return status;
      token = response.token();
      std::lock_guard<std::mutex> lock(token_mu_);
      token_ = token;
    }
    context.AddMetadata("token", token);
    used = std::move(token);
    return grpc::Status::OK;
  }

  // Authenticate itself was refused (wrong user or password, auth not enabled in etcd): no
  // other member or retry will do better, so this ends the call.
  absl::Status AuthenticationError(const grpc::Status& status, absl::string_view what,
                                   absl::string_view member) const {
    return absl::UnauthenticatedError(absl::StrCat(
        what, " on ", member, ": etcd refused to authenticate user '", options_.username, "' (",
        GrpcError(status), "); check the etcd user name and password"));
  }

  // Drops `stale` so the next call authenticates again, unless another thread already has.
  void ForgetToken(const std::string& stale) {
    std::lock_guard<std::mutex> lock(token_mu_);
    if (token_ == stale) token_.clear();
  }

  // Runs one call on the member that worked last, moving on to the next member when one is
  // down or too slow, until every member was tried once.
  template <typename Response>
  absl::StatusOr<Response> Call(
      absl::string_view op, absl::string_view key, std::optional<absl::Duration> timeout,
      const std::function<grpc::Status(Member&, grpc::ClientContext&, Response&)>& rpc) {
    const absl::Duration per_member = timeout.value_or(options_.call_timeout);
    const size_t start = preferred();
    std::vector<std::string> failures;
    bool token_refreshed = false;
    for (size_t i = 0; i < members_.size(); ++i) {
      const size_t index = (start + i) % members_.size();
      Member& member = *members_[index];
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + per_member));
      // Fail fast while a member is down instead of waiting for it to come back.
      context.set_wait_for_ready(false);
      std::string token;
      grpc::Status status = AddToken(member, context, token);
      if (!status.ok() && !IsMemberFailure(status)) {
        return AuthenticationError(status, Describe(op, key), member.address);
      }
      Response response;
      if (status.ok()) status = rpc(member, context, response);
      if (status.ok()) {
        set_preferred(index);
        return response;
      }
      if (auth_enabled() && !token_refreshed && IsInvalidToken(status)) {
        // Once per call: a second failure means the credentials are wrong, not the token old.
        token_refreshed = true;
        LogInfo(Describe(op, key), ": etcd refused the auth token on ", member.address,
                ", authenticating again");
        ForgetToken(token);
        --i;
        continue;
      }
      if (!IsMemberFailure(status)) return ToAbsl(status, Describe(op, key), member.address);
      failures.push_back(absl::StrCat(member.address, ": ", GrpcError(status)));
    }
    const std::string joined = absl::StrJoin(failures, "; ");
    return absl::UnavailableError(absl::StrCat(Describe(op, key), " failed on every etcd member (",
                                               joined, ")", ConnectionHint(options_.tls, joined)));
  }

 private:
  const EtcdClientOptions options_;
  std::vector<std::unique_ptr<Member>> members_;
  std::atomic<size_t> preferred_{0};
  std::mutex token_mu_;
  std::string token_;
  std::unique_ptr<ConnectivityPoller> poller_;  // keeps idle members' connections moving
};

}  // namespace sluice::etcd
