#include "sluice/etcd/etcd_members.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "sluice/core/grpc_util.h"

namespace sluice::etcd {
namespace {

// Reconnect quickly after an etcd restart: gRPC's defaults back off to 2 minutes.
constexpr int kInitialReconnectBackoffMs = 100;
constexpr int kMaxReconnectBackoffMs = 1000;
// HTTP/2 pings find a dead watch stream (a partitioned member). etcd's default
// --grpc-keepalive-min-time is 5 s; pinging less often than that keeps it from closing us.
constexpr int kKeepaliveTimeMs = 10000;
constexpr int kKeepaliveTimeoutMs = 5000;

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
}  // namespace

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

std::string Describe(absl::string_view op, absl::string_view key) {
  if (key.empty()) return absl::StrCat("etcd ", op);
  return absl::StrCat("etcd ", op, " '", absl::CHexEscape(key), "'");
}

std::string GrpcError(const grpc::Status& status) {
  return absl::StrCat(StatusCodeName(status.error_code()), ": ", status.error_message());
}

absl::Status ToAbsl(const grpc::Status& status, absl::string_view what, absl::string_view member) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, " on ", member, ": ", GrpcError(status)));
}

bool IsMemberFailure(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

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

std::string RangeStart(absl::string_view prefix) {
  return prefix.empty() ? std::string(1, '\0') : std::string(prefix);
}

EtcdMembers::EtcdMembers(EtcdClientOptions options,
                         const std::shared_ptr<grpc::ChannelCredentials>& credentials)
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

EtcdMembers::~EtcdMembers() = default;

}  // namespace sluice::etcd
