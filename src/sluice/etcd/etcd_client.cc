#include "sluice/etcd/etcd_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "etcdserverpb/rpc.pb.h"
#include "mvccpb/kv.pb.h"
#include "sluice/core/address.h"
#include "sluice/core/grpc_util.h"
#include "sluice/core/log.h"

namespace sluice::etcd {
namespace {

namespace pb = ::etcdserverpb;

// Reconnect quickly after an etcd restart: gRPC's defaults back off to 2 minutes.
constexpr int kInitialReconnectBackoffMs = 100;
constexpr int kMaxReconnectBackoffMs = 1000;
// HTTP/2 pings find a dead watch stream (a partitioned member). etcd's default
// --grpc-keepalive-min-time is 5 s; pinging less often than that keeps it from closing us.
constexpr int kKeepaliveTimeMs = 10000;
constexpr int kKeepaliveTimeoutMs = 5000;

struct Member {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::KV::Stub> kv;
  std::unique_ptr<pb::Watch::Stub> watch;
  std::unique_ptr<pb::Lease::Stub> lease;
  std::unique_ptr<pb::Auth::Stub> auth;
};

absl::StatusOr<std::string> ReadPemFile(absl::string_view what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the etcd ", what, " '", path, "': ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("the etcd ", what, " '", path, "' holds no PEM block (-----BEGIN ...)"));
  }
  return text.str();
}

// The one place that decides how we talk to a member: plain TCP, or TLS with the given CA and
// optional client certificate.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(
    const EtcdTlsOptions& tls) {
  if (!tls.active()) return grpc::InsecureChannelCredentials();
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "etcd TLS: a client certificate needs both a certificate file and a key file (got ",
        tls.cert_file.empty() ? "only a key" : "only a certificate", ")"));
  }
  grpc::SslCredentialsOptions ssl;
  if (!tls.ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile("CA file", tls.ca_file);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  if (!tls.cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPemFile("client certificate file", tls.cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPemFile("client key file", tls.key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

grpc::ChannelArguments MakeChannelArguments() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  // A quiet watch stream carries no data for a long time; keep pinging anyway.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Our own subchannels: another client's backoff state must not delay this one.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return args;
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN_CODE";
  }
}

// "etcd Put 'services/greeter/x'": what failed, for every error message. Keys are bytes, so
// unprintable ones are escaped.
std::string Describe(absl::string_view op, absl::string_view key) {
  if (key.empty()) return absl::StrCat("etcd ", op);
  return absl::StrCat("etcd ", op, " '", absl::CHexEscape(key), "'");
}

std::string GrpcError(const grpc::Status& status) {
  return absl::StrCat(CodeName(status.error_code()), ": ", status.error_message());
}

absl::Status ToAbsl(const grpc::Status& status, absl::string_view what, absl::string_view member) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, " on ", member, ": ", GrpcError(status)));
}

// Errors after which the next member may do better: it is down, or too slow to answer.
bool IsMemberFailure(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

// etcd's answers to a token it no longer knows (simple tokens die with a restart) or one issued
// before an auth change.
bool IsInvalidTokenMessage(absl::string_view message) {
  return absl::StrContains(message, "invalid auth token") ||
         absl::StrContains(message, "revision of auth store is old");
}

bool IsInvalidToken(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
         IsInvalidTokenMessage(status.error_message());
}

KeyValue FromProto(const mvccpb::KeyValue& kv) {
  KeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.version = kv.version();
  out.lease = kv.lease();
  return out;
}

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

// gRPC reports TLS trouble in terms of sockets and handshakes; say what to check instead.
// `failures` is the text of every member's error.
std::string ConnectionHint(const EtcdTlsOptions& tls, absl::string_view failures) {
  if (tls.active()) {
    if (absl::StrContains(failures, "certificate verify failed") ||
        absl::StrContains(failures, "CERTIFICATE_VERIFY_FAILED")) {
      return absl::StrCat(
          "; TLS to etcd failed: the member's certificate is not signed by ",
          tls.ca_file.empty() ? "a CA the system trusts: give the CA file that signed it"
                              : absl::StrCat("the CA in '", tls.ca_file, "'"),
          " (etcdctl --cacert, sluice --etcd-cacert), and check that it names the address used");
    }
    if (absl::StrContains(failures, "handshake") || absl::StrContains(failures, "Handshake") ||
        absl::StrContains(failures, "Endpoint read failed")) {
      return tls.cert_file.empty()
                 ? "; TLS to etcd failed: if the members require client certificates "
                   "(--client-cert-auth), give one (sluice --etcd-cert and --etcd-key)"
                 : "; TLS to etcd failed: check that the client certificate is signed by the CA "
                   "the members trust (their --trusted-ca-file)";
    }
    if (absl::StrContains(failures, "Socket closed") ||
        absl::StrContains(failures, "Connection reset")) {
      return "; TLS to etcd failed: if the members serve plain TCP (http:// client URLs), turn "
             "TLS off";
    }
    return "";
  }
  if (absl::StrContains(failures, "Socket closed") ||
      absl::StrContains(failures, "Connection reset")) {
    return "; if the members serve TLS (https:// client URLs), connect with TLS: give the CA "
           "file (sluice --etcd-cacert, EtcdTlsOptions.ca_file)";
  }
  return "";
}

// etcd rejects an empty key; the whole keyspace is ["\0", "\0").
std::string RangeStart(absl::string_view prefix) {
  return prefix.empty() ? std::string(1, '\0') : std::string(prefix);
}

// Keeps the members' connections moving while no call is running. With the synchronous API only
// a thread inside a call polls a channel's sockets, so without this an idle client notices an
// etcd restart (and finishes reconnecting after its backoff) only when gRPC's 5 s backup poller
// runs: calls meanwhile fail on the dead connection or in TRANSIENT_FAILURE. Watching each
// channel's state from a completion queue makes this thread a poller for them.
class ConnectivityPoller {
 public:
  explicit ConnectivityPoller(std::vector<std::shared_ptr<grpc::Channel>> channels)
      : channels_(std::move(channels)), states_(channels_.size()) {
    thread_ = std::thread([this] { Run(); });
  }

  // Waits at most one watch slice for the pending watches to finish.
  ~ConnectivityPoller() {
    stopping_.store(true);
    thread_.join();
  }

 private:
  // How long one state watch lasts: bounds how long destruction waits.
  static constexpr absl::Duration kSlice = absl::Milliseconds(200);

  void Watch(size_t index) {
    channels_[index]->NotifyOnStateChange(states_[index], absl::ToChronoTime(absl::Now() + kSlice),
                                          &cq_, reinterpret_cast<void*>(index));
  }

  void Run() {
    for (size_t i = 0; i < channels_.size(); ++i) {
      states_[i] = channels_[i]->GetState(/*try_to_connect=*/false);
      Watch(i);
    }
    size_t pending = channels_.size();
    void* tag = nullptr;
    bool ok = false;
    while (pending > 0 && cq_.Next(&tag, &ok)) {
      const size_t index = reinterpret_cast<size_t>(tag);
      if (stopping_.load()) {
        --pending;
        continue;
      }
      states_[index] = channels_[index]->GetState(/*try_to_connect=*/false);
      Watch(index);
    }
    cq_.Shutdown();
    while (cq_.Next(&tag, &ok)) {
    }
  }

  const std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<grpc_connectivity_state> states_;  // poller thread only
  grpc::CompletionQueue cq_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseEtcdEndpoints(absl::string_view text, bool* https) {
  const absl::string_view kExample = "; expected host:port[,host:port...], e.g. 127.0.0.1:2379";
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no etcd endpoints given", kExample));
  }
  std::vector<std::string> endpoints;
  int position = 0;
  bool saw_https = false;
  bool saw_http = false;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    ++position;
    absl::string_view original = part;
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint #", position, " in '", text, "' is empty", kExample));
    }
    const bool part_https = absl::StartsWithIgnoreCase(part, "https://");
    const bool part_http = absl::StartsWithIgnoreCase(part, "http://");
    if (part_https || part_http) part.remove_prefix(part_https ? 8 : 7);
    if (part_https) saw_https = true;
    if (part_http) saw_http = true;
    if (saw_https && saw_http) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoints '", text,
                       "' mix http:// and https://: every member is reached the same way"));
    }
    absl::ConsumeSuffix(&part, "/");
    if (part.find('/') != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint '", absl::StripAsciiWhitespace(original),
                       "' has a path; give only host:port", kExample));
    }
    absl::StatusOr<HostPort> parsed = ParseHostPort(part);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint #", position, ": ", parsed.status().message()));
    }
    std::string normalized = parsed->ToString();
    if (std::find(endpoints.begin(), endpoints.end(), normalized) != endpoints.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint '", normalized, "' is listed twice in '", text, "'"));
    }
    endpoints.push_back(std::move(normalized));
  }
  if (https != nullptr) *https = saw_https;
  return endpoints;
}

std::string PrefixRangeEnd(absl::string_view prefix) {
  std::string end(prefix);
  // Increment the last byte that can be incremented and drop what follows it: the smallest
  // key greater than every key starting with `prefix`.
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  // No such key (empty prefix or all 0xff): "\0" means "to the end of the keyspace".
  return std::string(1, '\0');
}

class EtcdClient::Impl {
 public:
  Impl(EtcdClientOptions options, const std::shared_ptr<grpc::ChannelCredentials>& credentials)
      : options_(std::move(options)) {
    for (const std::string& address : options_.endpoints) {
      auto member = std::make_unique<Member>();
      member->address = address;
      member->channel = grpc::CreateCustomChannel(address, credentials, MakeChannelArguments());
      member->kv = pb::KV::NewStub(member->channel);
      member->watch = pb::Watch::NewStub(member->channel);
      member->lease = pb::Lease::NewStub(member->channel);
      member->auth = pb::Auth::NewStub(member->channel);
      members_.push_back(std::move(member));
    }
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    for (const auto& member : members_) channels.push_back(member->channel);
    poller_ = std::make_unique<ConnectivityPoller>(std::move(channels));
  }

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
  std::unique_ptr<ConnectivityPoller> poller_;
};

namespace {

// One watch: a thread running a Watch stream on one member at a time.
class WatchImpl final : public EtcdWatch {
 public:
  WatchImpl(std::shared_ptr<EtcdClient::Impl> client, std::string prefix, int64_t start_revision,
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

  const std::shared_ptr<EtcdClient::Impl> client_;
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

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(EtcdClientOptions options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError(
        "no etcd endpoints: give at least one etcd member as host:port, e.g. 127.0.0.1:2379");
  }
  for (std::string& endpoint : options.endpoints) {
    absl::StatusOr<HostPort> parsed = ParseHostPort(endpoint);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("etcd endpoint: ", parsed.status().message()));
    }
    endpoint = parsed->ToString();
  }
  if (options.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("etcd call_timeout is ",
                                                   absl::FormatDuration(options.call_timeout),
                                                   ": it must be positive, e.g. 2s"));
  }
  if (options.username.empty() && !options.password.empty()) {
    return absl::InvalidArgumentError("etcd password given without a username: set both");
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeCredentials(options.tls);
  if (!credentials.ok()) return credentials.status();
  return std::unique_ptr<EtcdClient>(
      new EtcdClient(std::make_shared<Impl>(std::move(options), *credentials)));
}

EtcdClient::EtcdClient(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

EtcdClient::~EtcdClient() = default;

const std::vector<std::string>& EtcdClient::endpoints() const { return impl_->options().endpoints; }

absl::StatusOr<RangeResult> EtcdClient::Get(absl::string_view key) {
  pb::RangeRequest request;
  request.set_key(std::string(key));
  auto response = impl_->Call<pb::RangeResponse>(
      "Get", key, std::nullopt, [&](Member& m, grpc::ClientContext& c, pb::RangeResponse& r) {
        return m.kv->Range(&c, request, &r);
      });
  if (!response.ok()) return response.status();
  RangeResult result;
  result.revision = response->header().revision();
  for (const auto& kv : response->kvs()) result.kvs.push_back(FromProto(kv));
  return result;
}

absl::StatusOr<RangeResult> EtcdClient::GetPrefix(absl::string_view prefix) {
  pb::RangeRequest request;
  request.set_key(RangeStart(prefix));
  request.set_range_end(PrefixRangeEnd(prefix));
  auto response =
      impl_->Call<pb::RangeResponse>("GetPrefix", prefix, std::nullopt,
                                     [&](Member& m, grpc::ClientContext& c, pb::RangeResponse& r) {
                                       return m.kv->Range(&c, request, &r);
                                     });
  if (!response.ok()) return response.status();
  RangeResult result;
  result.revision = response->header().revision();
  result.kvs.reserve(response->kvs_size());
  for (const auto& kv : response->kvs()) result.kvs.push_back(FromProto(kv));
  return result;
}

absl::StatusOr<int64_t> EtcdClient::Put(absl::string_view key, absl::string_view value,
                                        int64_t lease_id) {
  pb::PutRequest request;
  request.set_key(std::string(key));
  request.set_value(std::string(value));
  request.set_lease(lease_id);
  auto response = impl_->Call<pb::PutResponse>(
      "Put", key, std::nullopt, [&](Member& m, grpc::ClientContext& c, pb::PutResponse& r) {
        return m.kv->Put(&c, request, &r);
      });
  if (!response.ok()) return response.status();
  return response->header().revision();
}

absl::StatusOr<int64_t> EtcdClient::Delete(absl::string_view key) {
  pb::DeleteRangeRequest request;
  request.set_key(std::string(key));
  auto response = impl_->Call<pb::DeleteRangeResponse>(
      "Delete", key, std::nullopt,
      [&](Member& m, grpc::ClientContext& c, pb::DeleteRangeResponse& r) {
        return m.kv->DeleteRange(&c, request, &r);
      });
  if (!response.ok()) return response.status();
  return response->deleted();
}

absl::StatusOr<int64_t> EtcdClient::DeletePrefix(absl::string_view prefix) {
  pb::DeleteRangeRequest request;
  request.set_key(RangeStart(prefix));
  request.set_range_end(PrefixRangeEnd(prefix));
  auto response = impl_->Call<pb::DeleteRangeResponse>(
      "DeletePrefix", prefix, std::nullopt,
      [&](Member& m, grpc::ClientContext& c, pb::DeleteRangeResponse& r) {
        return m.kv->DeleteRange(&c, request, &r);
      });
  if (!response.ok()) return response.status();
  return response->deleted();
}

absl::Status EtcdClient::Compact(int64_t revision) {
  pb::CompactionRequest request;
  request.set_revision(revision);
  request.set_physical(true);
  auto response = impl_->Call<pb::CompactionResponse>(
      absl::StrCat("Compact to revision ", revision), "", std::nullopt,
      [&](Member& m, grpc::ClientContext& c, pb::CompactionResponse& r) {
        return m.kv->Compact(&c, request, &r);
      });
  return response.status();
}

absl::StatusOr<Lease> EtcdClient::LeaseGrant(int64_t ttl_seconds) {
  pb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  auto response = impl_->Call<pb::LeaseGrantResponse>(
      absl::StrCat("LeaseGrant ttl=", ttl_seconds, "s"), "", std::nullopt,
      [&](Member& m, grpc::ClientContext& c, pb::LeaseGrantResponse& r) {
        return m.lease->LeaseGrant(&c, request, &r);
      });
  if (!response.ok()) return response.status();
  if (!response->error().empty()) {
    return absl::InternalError(
        absl::StrCat("etcd LeaseGrant ttl=", ttl_seconds, "s: ", response->error()));
  }
  return Lease{response->id(), response->ttl()};
}

absl::Status EtcdClient::LeaseRevoke(int64_t lease_id, std::optional<absl::Duration> timeout) {
  pb::LeaseRevokeRequest request;
  request.set_id(lease_id);
  auto response = impl_->Call<pb::LeaseRevokeResponse>(
      absl::StrCat("LeaseRevoke lease=", absl::Hex(lease_id)), "", timeout,
      [&](Member& m, grpc::ClientContext& c, pb::LeaseRevokeResponse& r) {
        return m.lease->LeaseRevoke(&c, request, &r);
      });
  return response.status();
}

absl::StatusOr<int64_t> EtcdClient::LeaseKeepAliveOnce(int64_t lease_id) {
  const std::string op = absl::StrCat("LeaseKeepAlive lease=", absl::Hex(lease_id));
  auto response = impl_->Call<pb::LeaseKeepAliveResponse>(
      op, "", std::nullopt, [&](Member& m, grpc::ClientContext& c, pb::LeaseKeepAliveResponse& r) {
        // A short-lived stream: one request, one answer, then close. The context's deadline
        // bounds the whole exchange.
        auto stream = m.lease->LeaseKeepAlive(&c);
        pb::LeaseKeepAliveRequest request;
        request.set_id(lease_id);
        bool answered = stream->Write(request) && stream->Read(&r);
        // After WritesDone etcd ends the stream; if Write or Read failed it has ended already.
        if (answered) stream->WritesDone();
        grpc::Status status = stream->Finish();
        if (answered) return grpc::Status::OK;
        if (status.ok()) {
          return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "keep-alive stream closed without an answer");
        }
        return status;
      });
  if (!response.ok()) return response.status();
  if (response->ttl() <= 0) {
    return absl::NotFoundError(
        absl::StrCat("etcd ", op, ": the lease no longer exists (expired or revoked)"));
  }
  return response->ttl();
}

std::unique_ptr<EtcdWatch> EtcdClient::WatchPrefix(
    absl::string_view prefix, int64_t start_revision,
    std::function<void(const WatchUpdate&)> on_update,
    std::function<void(absl::Status status, int64_t compact_revision)> on_end) {
  auto watch = std::make_unique<WatchImpl>(impl_, std::string(prefix), start_revision,
                                           std::move(on_update), std::move(on_end));
  watch->StartThread();
  return watch;
}

}  // namespace sluice::etcd
