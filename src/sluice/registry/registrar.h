#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/core/clock.h"
#include "sluice/core/endpoint.h"
#include "sluice/core/random.h"
#include "sluice/etcd/etcd_client.h"

namespace sluice::registry {

struct RegistrarOptions {
  etcd::EtcdClientOptions etcd;
  // Key prefix without the trailing slash, e.g. "services/greeter".
  std::string prefix;
  // The instance id, the last part of the key; defaults to endpoint.address.
  std::string instance_id;
  Endpoint endpoint;
  int64_t ttl_seconds = 10;
  // Backoff while etcd is unreachable or the lease was lost.
  absl::Duration retry_initial_backoff = absl::Milliseconds(100);
  absl::Duration retry_max_backoff = absl::Seconds(2);
  // Optional jitter for the backoff (each wait scaled by a factor in [0.8, 1.2)); must be
  // thread-safe (e.g. LockedRandom) if shared. Null: no jitter.
  Random* random = nullptr;
  Clock* clock = &SystemClock::Instance();
};

// Keeps one backend's leased key in etcd: <prefix>/<instance_id> = EncodeNamingValue(endpoint).
// A background thread grants the lease, puts the key, and sends keep-alives every TTL/3; when
// the lease is lost (etcd restarted, a partition longer than the TTL) it grants a new one and
// puts the key again. Stop() revokes the lease so the key disappears at once.
class Registrar {
 public:
  // Checks the options (the error names the bad one) and starts the background thread. Does
  // not wait for etcd: use WaitUntilRegistered for that.
  static absl::StatusOr<std::unique_ptr<Registrar>> Start(RegistrarOptions options);
  ~Registrar();  // Stop()

  // True while the key is believed to be in etcd under a live lease.
  bool registered() const;
  bool WaitUntilRegistered(absl::Duration timeout) const;
  const std::string& key() const;
  int64_t lease_id() const;
  // Why the latest etcd call of the registration loop failed (etcd unreachable, wrong etcd
  // password, permission denied, TLS handshake refused ...), or OK once one succeeded again.
  // The loop keeps retrying whatever the error: this is for callers that want to report it.
  absl::Status LastError() const;

  // Stops keep-alives and revokes the lease (deletes the key). Idempotent; returns the revoke's
  // error if etcd could not be reached (the key then expires after the TTL).
  absl::Status Stop();
  // Stops keep-alives WITHOUT revoking: the key expires after the TTL, as after a crash.
  void Abandon();

  class Impl;

 private:
  explicit Registrar(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::registry
