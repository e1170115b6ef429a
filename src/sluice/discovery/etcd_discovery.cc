#include <algorithm>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "sluice/core/backoff.h"
#include "sluice/core/log.h"
#include "sluice/core/naming_value.h"
#include "sluice/discovery/sources.h"
#include "sluice/etcd/etcd_client.h"

namespace sluice::discovery {
namespace {

class EtcdDiscovery final : public Discovery {
 public:
  EtcdDiscovery(std::unique_ptr<etcd::EtcdClient> client, std::string prefix,
                DiscoveryOptions options)
      : client_(std::move(client)),
        prefix_(std::move(prefix)),
        options_(std::move(options)),
        name_(absl::StrCat("etcd discovery of '", prefix_, "' at ",
                           absl::StrJoin(client_->endpoints(), ","))) {}
  ~EtcdDiscovery() override { Stop(); }

  void Start(EndpointSetCallback callback) override {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (started_) {
      LogWarning(name_, ": Start() called twice; ignored");
      return;
    }
    started_ = true;
    SetCallback(std::move(callback));
    thread_ = std::thread([this] { Run(); });
  }

  void Stop() override {
    std::thread thread;
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      stopping_ = true;
      thread = std::move(thread_);
    }
    wake_.notify_all();
    // The thread cancels its watch when it sees stopping_; joining it joins the watch too.
    if (thread.joinable()) thread.join();
    ClearCallback();
  }

 private:
  // Why a watch stopped: OutOfRange means its start revision was compacted.
  struct WatchEnd {
    absl::Status status;
    int64_t compact_revision = 0;
  };

  void Run() {
    Backoff backoff(options_.retry_initial_backoff, options_.retry_max_backoff, options_.random);
    bool listed = false;
    while (!Stopping()) {
      if (!listed) {
        absl::StatusOr<etcd::RangeResult> range = client_->GetPrefix(prefix_);
        if (Stopping()) return;
        if (!range.ok()) {
          Failed("listing the prefix", range.status());
          if (!Sleep(backoff.Next())) return;
          continue;
        }
        EndpointSet set;
        {
          std::lock_guard<std::mutex> lock(state_mu_);
          endpoints_.clear();
          for (const etcd::KeyValue& kv : range->kvs) ApplyPut(kv.key, kv.value);
          next_revision_ = range->revision + 1;
          set = BuildSet();
        }
        Publish(std::move(set));
        Recovered();
        backoff.Reset();
        listed = true;
      }

      std::optional<WatchEnd> end = Watch(backoff);
      if (!end.has_value()) return;  // stopping
      if (absl::IsOutOfRange(end->status)) {
        // Events were lost to compaction: only a fresh list gives the true set again.
        LogInfo(name_, ": watch revision was compacted (compact revision ", end->compact_revision,
                "); listing again");
        listed = false;
        continue;
      }
      // Any other end (etcd restarted, network): resume from the last seen revision after a
      // pause; the last good set stays in force meanwhile.
      Failed("watching the prefix", end->status);
      if (!Sleep(backoff.Next())) return;
    }
  }

  // Runs one watch from next_revision_ until it ends (returns why) or Stop() (returns nullopt).
  // Once the watch delivers, etcd is known to answer again: `backoff` restarts from the start.
  std::optional<WatchEnd> Watch(Backoff& backoff) {
    int64_t start_revision;
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      start_revision = next_revision_;
      watch_ended_ = false;
      watch_delivered_ = false;
    }
    std::unique_ptr<etcd::EtcdWatch> watch = client_->WatchPrefix(
        prefix_, start_revision, [this](const etcd::WatchUpdate& update) { OnUpdate(update); },
        [this](absl::Status status, int64_t compact_revision) {
          {
            std::lock_guard<std::mutex> lock(state_mu_);
            watch_ended_ = true;
            watch_end_ = WatchEnd{std::move(status), compact_revision};
          }
          wake_.notify_all();
        });
    std::optional<WatchEnd> end;
    {
      std::unique_lock<std::mutex> lock(state_mu_);
      bool noted_delivery = false;
      while (true) {
        wake_.wait(lock, [&] {
          return stopping_ || watch_ended_ || (watch_delivered_ && !noted_delivery);
        });
        if (stopping_ || watch_ended_) break;
        noted_delivery = true;
        lock.unlock();
        backoff.Reset();
        Recovered();
        lock.lock();
      }
      if (!stopping_) end = watch_end_;
    }
    // Not under state_mu_: the watch thread may be waiting for it inside OnUpdate.
    watch.reset();
    return end;
  }

  // On the watch thread.
  void OnUpdate(const etcd::WatchUpdate& update) {
    EndpointSet set;
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      if (!watch_delivered_) {
        watch_delivered_ = true;
        wake_.notify_all();
      }
      for (const etcd::WatchEvent& event : update.events) {
        if (event.type == etcd::WatchEvent::Type::kPut) {
          ApplyPut(event.kv.key, event.kv.value);
        } else {
          endpoints_.erase(event.kv.key);
        }
        next_revision_ = std::max(next_revision_, event.kv.mod_revision + 1);
      }
      if (update.events.empty()) {
        // A progress notification: everything up to its revision was sent. A batch of events
        // does not promise that (etcd splits long catch-ups), so only events move us then.
        next_revision_ = std::max(next_revision_, update.revision + 1);
        return;
      }
      set = BuildSet();
    }
    Publish(std::move(set));
  }

  // With state_mu_ held.
  void ApplyPut(const std::string& key, const std::string& value) {
    // The range should only hold keys under the prefix; never trust a neighbour's key.
    if (!absl::StartsWith(key, prefix_)) return;
    absl::StatusOr<Endpoint> endpoint = ParseNamingValue(key, value);
    if (endpoint.ok()) {
      endpoints_[key] = *std::move(endpoint);
      return;
    }
    // The key no longer describes a usable endpoint: drop it, keep every other one.
    endpoints_.erase(key);
    if (!absl::IsNotFound(endpoint.status())) {  // NotFound: an Op 1 (delete) value
      LogWarning(name_, ": skipping ", endpoint.status().message());
    }
  }

  // With state_mu_ held.
  EndpointSet BuildSet() const {
    std::vector<Endpoint> endpoints;
    endpoints.reserve(endpoints_.size());
    for (const auto& [key, endpoint] : endpoints_) endpoints.push_back(endpoint);
    return EndpointSet(std::move(endpoints));
  }

  void Failed(absl::string_view what, const absl::Status& status) {
    ReportError(status);
    // One warning per outage; the retries of a lasting one only at debug level.
    if (!failing_) {
      LogWarning(name_, ": ", what, " failed: ", status.ToString(), "; keeping the last ",
                 Current().size(), " endpoint(s) and retrying with backoff");
    } else {
      LogDebug(name_, ": ", what, " failed again: ", status.ToString());
    }
    failing_ = true;
  }

  void Recovered() {
    if (failing_) LogInfo(name_, ": etcd answers again");
    failing_ = false;
  }

  bool Stopping() {
    std::lock_guard<std::mutex> lock(state_mu_);
    return stopping_;
  }

  // Waits `duration` unless Stop() comes first; returns false on Stop().
  bool Sleep(absl::Duration duration) {
    std::unique_lock<std::mutex> lock(state_mu_);
    return !wake_.wait_for(lock, absl::ToChronoNanoseconds(duration), [this] { return stopping_; });
  }

  const std::unique_ptr<etcd::EtcdClient> client_;
  const std::string prefix_;  // ends in '/'
  const DiscoveryOptions options_;
  const std::string name_;  // for log lines
  bool failing_ = false;    // only the Run thread touches it

  std::mutex state_mu_;
  std::condition_variable wake_;
  bool started_ = false;
  bool stopping_ = false;
  std::thread thread_;
  // key -> endpoint, the source of every published set.
  std::map<std::string, Endpoint> endpoints_;
  int64_t next_revision_ = 0;
  bool watch_ended_ = false;
  bool watch_delivered_ = false;
  WatchEnd watch_end_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Discovery>> NewEtcdDiscovery(const Target& target,
                                                            DiscoveryOptions options) {
  if (target.scheme != Target::Scheme::kEtcd) {
    return absl::InvalidArgumentError(
        absl::StrCat("target '", target.text, "' is not an etcd:// target"));
  }
  if (target.etcd_endpoints.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("target '", target.text, "' names no etcd members; ", kTargetForms));
  }
  std::string prefix = target.prefix;
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (prefix.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("target '", target.text, "' has no key prefix; ", kTargetForms));
  }
  // Listed and watched WITH the slash, so "services/greeter/" never matches "greeter2/".
  prefix.push_back('/');

  etcd::EtcdClientOptions client_options;
  client_options.endpoints = target.etcd_endpoints;
  client_options.call_timeout = options.etcd_call_timeout;
  client_options.username = options.etcd_username;
  client_options.password = options.etcd_password;
  client_options.tls = options.etcd_tls;
  absl::StatusOr<std::unique_ptr<etcd::EtcdClient>> client =
      etcd::EtcdClient::Create(std::move(client_options));
  if (!client.ok()) return client.status();
  return std::make_unique<EtcdDiscovery>(*std::move(client), std::move(prefix), std::move(options));
}

}  // namespace sluice::discovery
