#include "sluice/registry/registrar.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "sluice/core/address.h"
#include "sluice/core/backoff.h"
#include "sluice/core/log.h"
#include "sluice/core/naming_value.h"

namespace sluice::registry {
namespace {

// Jitter (when a Random is given) spreads out many backends re-registering with one etcd that
// just came back.
BackoffOptions BackoffOf(const RegistrarOptions& options) {
  return {
      .initial = options.retry_initial_backoff, .max = options.retry_max_backoff, .jitter = 0.2};
}

// Stop() must not hang on an unreachable etcd: the key expires after the TTL anyway.
constexpr absl::Duration kMaxRevokeTimeout = absl::Seconds(1);

absl::Status CheckOptions(const RegistrarOptions& options) {
  auto bad = [](auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (options.etcd.endpoints.empty()) {
    return bad("RegistrarOptions.etcd.endpoints is empty: give at least one etcd member as ",
               "host:port, e.g. 127.0.0.1:2379");
  }
  if (options.prefix.empty()) {
    return bad("RegistrarOptions.prefix is empty: set the service's key prefix, e.g. ",
               "services/greeter");
  }
  if (options.prefix.back() == '/') {
    return bad("RegistrarOptions.prefix '", options.prefix,
               "' ends with '/': give it without the trailing slash (the key is ",
               "<prefix>/<instance_id>), e.g. services/greeter");
  }
  if (absl::StatusOr<HostPort> address = ParseHostPort(options.endpoint.address); !address.ok()) {
    return bad("RegistrarOptions.endpoint.address: ", address.status().message());
  }
  if (options.ttl_seconds < 1) {
    return bad("RegistrarOptions.ttl_seconds is ", options.ttl_seconds,
               ": it must be at least 1 (e.g. 10; etcd raises very short TTLs to its minimum)");
  }
  if (absl::Status backoff = ValidateBackoff(BackoffOf(options), "RegistrarOptions retry backoff");
      !backoff.ok()) {
    return backoff;
  }
  if (options.clock == nullptr) return bad("RegistrarOptions.clock is null");
  return absl::OkStatus();
}

}  // namespace

class Registrar::Impl {
 public:
  Impl(RegistrarOptions options, std::unique_ptr<etcd::EtcdClient> client)
      : options_(std::move(options)),
        client_(std::move(client)),
        key_(absl::StrCat(
            options_.prefix, "/",
            options_.instance_id.empty() ? options_.endpoint.address : options_.instance_id)),
        value_(EncodeNamingValue(options_.endpoint)),
        keepalive_interval_(absl::Seconds(options_.ttl_seconds) / 3) {}

  ~Impl() { Stop().IgnoreError(); }

  void StartThread() {
    thread_ = std::thread([this] { Run(); });
  }

  const std::string& key() const { return key_; }

  bool registered() const {
    std::lock_guard<std::mutex> lock(mu_);
    return registered_;
  }

  int64_t lease_id() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lease_id_;
  }

  absl::Status last_error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_error_;
  }

  bool WaitUntilRegistered(absl::Duration timeout) const {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                 [&] { return registered_ || stopping_; });
    return registered_;
  }

  absl::Status Stop() { return Finish(/*revoke=*/true); }
  void Abandon() { Finish(/*revoke=*/false).IgnoreError(); }

 private:
  absl::Status Finish(bool revoke) {
    std::lock_guard<std::mutex> finish_lock(finish_mu_);
    if (finished_) return finish_status_;
    finished_ = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    // The thread is normally asleep, so this is quick; at worst it waits for one etcd call.
    if (thread_.joinable()) thread_.join();

    int64_t lease = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      lease = lease_id_;
      registered_ = false;
    }
    if (!revoke) {
      LogInfo("registrar: abandoned ", key_, " without revoking; it expires within ",
              options_.ttl_seconds, "s");
      return finish_status_;
    }
    if (lease == 0) {
      LogInfo("registrar: stopped ", key_, " (it was not registered)");
      return finish_status_;
    }
    absl::Status status =
        client_->LeaseRevoke(lease, std::min(options_.etcd.call_timeout, kMaxRevokeTimeout));
    if (status.ok() || absl::IsNotFound(status)) {
      LogInfo("registrar: deregistered ", key_, " (revoked lease ", absl::Hex(lease), ")");
    } else {
      LogWarning("registrar: could not revoke the lease of ", key_, ", it expires within ",
                 options_.ttl_seconds, "s: ", status.message());
      finish_status_ = status;
    }
    return finish_status_;
  }

  // Sleeps for `duration` of real time unless Stop/Abandon comes first; false when stopping.
  bool Sleep(absl::Duration duration) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoNanoseconds(duration), [&] { return stopping_; });
    return !stopping_;
  }

  bool stopping() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  }

  // Logs the 1st, 2nd, 4th, 8th... failure of a streak: an outage is reported at once without
  // a line per retry.
  static bool ShouldLog(int64_t failures) { return (failures & (failures - 1)) == 0; }

  void SetError(absl::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    last_error_ = std::move(status);
  }

  void SetState(bool registered, int64_t lease) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      registered_ = registered;
      lease_id_ = lease;
    }
    cv_.notify_all();
  }

  // The registration loop: grant, put, keep alive; on trouble, back off and repair.
  void Run() {
    Backoff backoff(BackoffOf(options_), options_.random);
    int64_t lease = 0;         // 0: no lease, grant one
    bool key_written = false;  // the key was put under `lease`
    bool check_key = false;    // keep-alives failed: check the key once they work again
    absl::Time renewed_at;     // (options_.clock) when the lease last had its full TTL
    absl::Duration wait;       // until the next keep-alive
    int64_t failures = 0;      // etcd calls failed in a row

    while (!stopping()) {
      if (lease == 0) {
        absl::StatusOr<etcd::Lease> granted = client_->LeaseGrant(options_.ttl_seconds);
        if (!granted.ok()) {
          SetError(granted.status());
          ++failures;
          if (ShouldLog(failures)) {
            LogWarning("registrar: cannot register ", key_, " (", failures,
                       " failures in a row), retrying: ", granted.status().message());
          }
          if (!Sleep(backoff.Next())) break;
          continue;
        }
        lease = granted->id;
        renewed_at = options_.clock->Now();
        key_written = false;
        check_key = false;
        // Published at once so that Stop() revokes it even if the put below never succeeds.
        SetState(false, lease);
      }
      if (!key_written) {
        absl::StatusOr<int64_t> put = client_->Put(key_, value_, lease);
        if (!put.ok()) {
          SetError(put.status());
          ++failures;
          if (ShouldLog(failures)) {
            LogWarning("registrar: cannot put ", key_, " (", failures,
                       " failures in a row), retrying: ", put.status().message());
          }
          // A put that names an expired lease fails with NotFound: start over with a new one.
          if (absl::IsNotFound(put.status())) lease = 0;
          if (!Sleep(backoff.Next())) break;
          continue;
        }
        key_written = true;
        SetError(absl::OkStatus());
        failures = 0;
        backoff.Reset();
        wait = keepalive_interval_;
        SetState(true, lease);
        LogInfo("registrar: registered ", key_, " = ", value_, " (lease ", absl::Hex(lease),
                ", ttl ", options_.ttl_seconds, "s)");
      }

      if (!Sleep(wait)) break;
      absl::StatusOr<int64_t> renewed = client_->LeaseKeepAliveOnce(lease);
      if (renewed.ok()) {
        SetError(absl::OkStatus());
        renewed_at = options_.clock->Now();
        failures = 0;
        backoff.Reset();
        wait = keepalive_interval_;
        if (check_key) {
          // The lease survived an outage (etcd keeps leases across restarts), but someone may
          // have deleted or overwritten the key meanwhile: put it again if so.
          absl::StatusOr<etcd::RangeResult> current = client_->Get(key_);
          if (current.ok()) {
            check_key = false;
            bool intact = current->kvs.size() == 1 && current->kvs[0].value == value_ &&
                          current->kvs[0].lease == lease;
            if (!intact) {
              LogWarning("registrar: ", key_, " was changed or removed while etcd was ",
                         "unreachable; putting it again");
              key_written = false;
              SetState(false, lease);
              continue;
            }
          }
        }
        if (!registered()) {
          SetState(true, lease);
          LogInfo("registrar: ", key_, " is registered again (lease ", absl::Hex(lease), ")");
        }
        continue;
      }
      if (absl::IsNotFound(renewed.status())) {
        LogWarning("registrar: lease ", absl::Hex(lease), " of ", key_,
                   " is gone (expired or revoked); registering again with a new lease");
        lease = 0;
        SetState(false, 0);
        // Re-grant at once: the key is already missing.
        continue;
      }
      SetError(renewed.status());
      ++failures;
      if (ShouldLog(failures)) {
        LogWarning("registrar: keep-alive for ", key_, " failed (", failures,
                   " in a row), retrying: ", renewed.status().message());
      }
      check_key = true;
      if (registered() &&
          options_.clock->Now() - renewed_at >= absl::Seconds(options_.ttl_seconds)) {
        // Without a keep-alive for a whole TTL etcd has most likely expired the key.
        SetState(false, lease);
        LogWarning("registrar: ", key_, " has probably expired: no keep-alive for ",
                   options_.ttl_seconds, "s");
      }
      wait = std::min(backoff.Next(), keepalive_interval_);
    }
  }

  const RegistrarOptions options_;
  const std::unique_ptr<etcd::EtcdClient> client_;
  const std::string key_;
  const std::string value_;
  const absl::Duration keepalive_interval_;

  mutable std::mutex mu_;
  // Wakes the thread on Stop/Abandon, and WaitUntilRegistered callers on state changes.
  mutable std::condition_variable cv_;
  bool stopping_ = false;    // guarded by mu_
  bool registered_ = false;  // guarded by mu_
  int64_t lease_id_ = 0;     // guarded by mu_
  absl::Status last_error_;  // guarded by mu_

  std::mutex finish_mu_;  // serializes Stop/Abandon
  bool finished_ = false;
  absl::Status finish_status_;
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<Registrar>> Registrar::Start(RegistrarOptions options) {
  if (absl::Status status = CheckOptions(options); !status.ok()) return status;
  absl::StatusOr<std::unique_ptr<etcd::EtcdClient>> client = etcd::EtcdClient::Create(options.etcd);
  if (!client.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("RegistrarOptions.etcd: ", client.status().message()));
  }
  auto impl = std::make_unique<Impl>(std::move(options), std::move(*client));
  impl->StartThread();
  return std::unique_ptr<Registrar>(new Registrar(std::move(impl)));
}

Registrar::Registrar(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Registrar::~Registrar() { impl_->Stop().IgnoreError(); }

bool Registrar::registered() const { return impl_->registered(); }

bool Registrar::WaitUntilRegistered(absl::Duration timeout) const {
  return impl_->WaitUntilRegistered(timeout);
}

const std::string& Registrar::key() const { return impl_->key(); }

int64_t Registrar::lease_id() const { return impl_->lease_id(); }

absl::Status Registrar::LastError() const { return impl_->last_error(); }

absl::Status Registrar::Stop() { return impl_->Stop(); }

void Registrar::Abandon() { impl_->Abandon(); }

}  // namespace sluice::registry
