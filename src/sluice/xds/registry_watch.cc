#include "sluice/xds/registry_watch.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sluice/core/log.h"
#include "sluice/discovery/target.h"

namespace sluice::xds {

absl::StatusOr<std::unique_ptr<RegistryWatch>> RegistryWatch::Start(RegistryWatchOptions options,
                                                                     ChangeCallback on_change) {
  std::unique_ptr<RegistryWatch> watch(new RegistryWatch(std::move(options)));
  watch->on_change_ = std::move(on_change);
  watch->members_ = absl::StrJoin(watch->options_.etcd.endpoints, ",");
  for (const std::string& service : watch->options_.services) {
    if (absl::Status s = watch->Watch(service); !s.ok()) return s;
  }
  if (watch->options_.services.empty()) {
    auto lister = etcd::EtcdClient::Create(watch->options_.etcd);
    if (!lister.ok()) return lister.status();
    watch->lister_ = std::move(*lister);
    watch->scanner_ = std::thread([raw = watch.get()] { raw->Rescan(); });
  }
  return watch;
}

absl::Status RegistryWatch::Watch(const std::string& service) {
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    if (!watched_.insert(service).second) return absl::OkStatus();
  }
  {
    std::lock_guard<std::mutex> lock(report_mu_);
    services_[service].settings = options_.config.For(service);
  }
  const std::string target =
      absl::StrCat("etcd://", members_, "/", discovery::ServicePrefix(service));
  auto discovery = discovery::CreateDiscovery(target, options_.discovery);
  if (!discovery.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("service ", service, ": ", discovery.status().message()));
  }
  (*discovery)->Start([this, service](const EndpointSet& current, const EndpointSetDiff&) {
    std::lock_guard<std::mutex> lock(report_mu_);
    services_[service].endpoints = current;
    on_change_(services_);
  });
  std::lock_guard<std::mutex> lock(watch_mu_);
  discoveries_.push_back(std::move(*discovery));
  return absl::OkStatus();
}

void RegistryWatch::Rescan() {
  const std::string root = discovery::ServicePrefix("");  // "services/"
  std::unique_lock<std::mutex> lock(watch_mu_);
  while (phase_ == Phase::kRunning) {
    lock.unlock();
    absl::StatusOr<etcd::RangeResult> listed = lister_->GetPrefix(root);
    std::set<std::string> found;
    if (listed.ok()) {
      for (const etcd::KeyValue& kv : listed->kvs) {
        if (!absl::StartsWith(kv.key, root)) continue;
        const std::string rest = kv.key.substr(root.size());
        const size_t slash = rest.find('/');
        if (slash != std::string::npos && slash > 0) found.insert(rest.substr(0, slash));
      }
    } else {
      LogWarning("xds: listing ", root, " in etcd failed: ", listed.status().message(),
                 "; serving the services known so far");
    }
    for (const std::string& service : found) {
      if (absl::Status s = Watch(service); !s.ok()) LogWarning("xds: ", s.message());
    }
    lock.lock();
    wake_.wait_for(lock, absl::ToChronoNanoseconds(options_.rescan_interval),
                   [&] { return phase_ != Phase::kRunning; });
  }
}

RegistryWatch::~RegistryWatch() {
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    phase_ = Phase::kStopping;
  }
  wake_.notify_all();
  if (scanner_.joinable()) scanner_.join();
  std::vector<std::unique_ptr<discovery::Discovery>> discoveries;
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    discoveries.swap(discoveries_);
  }
  for (auto& discovery : discoveries) discovery->Stop();
}

}  // namespace sluice::xds
