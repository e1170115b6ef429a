#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sluice::etcd {

// TLS to the etcd members (etcd's --cert-file/--key-file, and --client-cert-auth for mTLS).
struct EtcdTlsOptions {
  // Use TLS. Implied by any file below; an https:// endpoint also asks for it.
  bool enabled = false;
  // PEM file of the CA that signed the members' certificates (etcdctl --cacert). Empty: the
  // system's trusted roots.
  std::string ca_file;
  // PEM client certificate and its key (etcdctl --cert/--key), for members that require client
  // certificates. Both or neither.
  std::string cert_file;
  std::string key_file;

  bool active() const {
    return enabled || !ca_file.empty() || !cert_file.empty() || !key_file.empty();
  }
};

struct EtcdClientOptions {
  // "host:port" of each member; a call that fails with UNAVAILABLE or times out on one member
  // is tried on the next, until every member was tried once.
  std::vector<std::string> endpoints;
  // Deadline of each unary call (Range, Put, LeaseGrant, ...) on one member.
  absl::Duration call_timeout = absl::Seconds(2);
  // Optional user/password (etcd auth): a token is fetched with Authenticate and sent as the
  // "token" metadata; it is fetched again when etcd says it is invalid.
  std::string username;
  std::string password;
  // Plain TCP unless tls.active(). The files are read once, by EtcdClient::Create.
  EtcdTlsOptions tls;
};

// Parses "host:port[,host:port...]" into options.endpoints. Spaces around parts and an
// "http://" or "https://" scheme (as etcdctl users write it) are accepted; empty parts, bad
// ports, duplicates and a mix of http:// and https:// are not. The error names the bad part.
// `https`, when given, is set to whether the endpoints were written with https:// (the caller
// then turns TLS on: the scheme itself is not kept).
absl::StatusOr<std::vector<std::string>> ParseEtcdEndpoints(absl::string_view text,
                                                            bool* https = nullptr);

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

struct RangeResult {
  std::vector<KeyValue> kvs;
  // The store revision the read was served at; a watch continues from revision + 1.
  int64_t revision = 0;
};

struct Lease {
  int64_t id = 0;
  int64_t ttl_seconds = 0;
};

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // for kDelete only key and mod_revision are set
};

// One batch of watch events, all at or below `revision`. A batch with no events is a progress
// notification: nothing under the prefix changed up to `revision`, so a new watch may resume
// from revision + 1.
struct WatchUpdate {
  std::vector<WatchEvent> events;
  int64_t revision = 0;
};

// The key range holding every key that starts with `prefix`, as etcd's range_end.
std::string PrefixRangeEnd(absl::string_view prefix);

class EtcdWatch;
class EtcdMembers;

// A client for etcd's v3 gRPC API. Thread-safe: any thread may call any method. Calls block
// the calling thread (at most call_timeout per member). One background thread per client keeps
// the connections to the members polled, so an etcd restart is noticed between calls.
class EtcdClient {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(EtcdClientOptions options);
  ~EtcdClient();

  absl::StatusOr<RangeResult> Get(absl::string_view key);
  absl::StatusOr<RangeResult> GetPrefix(absl::string_view prefix);
  // Returns the revision of the write.
  absl::StatusOr<int64_t> Put(absl::string_view key, absl::string_view value, int64_t lease_id = 0);
  // Returns how many keys were deleted.
  absl::StatusOr<int64_t> Delete(absl::string_view key);
  absl::StatusOr<int64_t> DeletePrefix(absl::string_view prefix);
  // Compacts history up to `revision` and returns once the compaction is physically done.
  absl::Status Compact(int64_t revision);

  absl::StatusOr<Lease> LeaseGrant(int64_t ttl_seconds);
  // Revokes the lease, deleting its keys. `timeout` (per member) overrides call_timeout, for
  // shutdown paths that must not hang. NotFound if the lease no longer exists.
  absl::Status LeaseRevoke(int64_t lease_id, std::optional<absl::Duration> timeout = std::nullopt);
  // Sends one keep-alive for the lease. Returns the renewed TTL in seconds; NotFound when etcd
  // says the lease no longer exists (TTL <= 0): the caller must grant a new one.
  absl::StatusOr<int64_t> LeaseKeepAliveOnce(int64_t lease_id);

  // Starts watching every key under `prefix` from `start_revision` (0 = from now), on a
  // background thread, until the returned EtcdWatch is destroyed or Cancel()ed.
  // `on_update` gets each batch of events in order. `on_end` is called exactly once when the
  // watch stops for any reason other than Cancel(): with OutOfRange (message says "compacted",
  // and compact_revision is set) if start_revision was compacted, otherwise with the stream's
  // error. The caller then lists again and starts a new watch; EtcdWatch does not retry.
  // Callbacks run on the watch thread, one at a time; they must not destroy the EtcdWatch (they
  // may Cancel() it). An EtcdWatch may outlive the EtcdClient that started it.
  std::unique_ptr<EtcdWatch> WatchPrefix(
      absl::string_view prefix, int64_t start_revision,
      std::function<void(const WatchUpdate&)> on_update,
      std::function<void(absl::Status status, int64_t compact_revision)> on_end);

  // The members this client was given, in order.
  const std::vector<std::string>& endpoints() const;


 private:
  explicit EtcdClient(std::shared_ptr<EtcdMembers> members);
  // Shared with running watches, so a watch may outlive the client.
  std::shared_ptr<EtcdMembers> members_;
};

// A running watch. Destroying it cancels the stream and joins its thread.
class EtcdWatch {
 public:
  virtual ~EtcdWatch() = default;
  // Stops the watch and joins its thread: once Cancel() returns no callback runs any more, and
  // on_end is never called for a Cancel(). Idempotent.
  virtual void Cancel() = 0;
};

}  // namespace sluice::etcd
