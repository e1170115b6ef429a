#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/discovery/discovery.h"
#include "sluice/etcd/etcd_client.h"
#include "sluice/xds/resources.h"
#include "sluice/xds/xds_config.h"

namespace sluice::xds {

struct RegistryWatchOptions {
  // Every etcd member, with auth and TLS (for listing services when none is named).
  etcd::EtcdClientOptions etcd;
  // The services to serve; empty: every service found under services/, looked for again every
  // `rescan_interval`.
  std::vector<std::string> services;
  absl::Duration rescan_interval = absl::Seconds(2);
  XdsConfig config;
  discovery::DiscoveryOptions discovery;
};

// Watches each service's endpoints in the etcd registry and reports every service's resources
// on each change. While etcd is unreachable, the last known endpoints stay in force.
class RegistryWatch {
 public:
  // Called serially with every service's settings and current endpoints.
  using ChangeCallback = std::function<void(const std::map<std::string, ServiceResources>&)>;

  static absl::StatusOr<std::unique_ptr<RegistryWatch>> Start(RegistryWatchOptions options,
                                                               ChangeCallback on_change);
  ~RegistryWatch();

 private:
  enum class Phase { kRunning, kStopping };

  explicit RegistryWatch(RegistryWatchOptions options) : options_(std::move(options)) {}
  // Starts watching `service`; no-op if it is watched already.
  absl::Status Watch(const std::string& service);
  // The scanner thread: lists services/ and watches every service it has not seen.
  void Rescan();

  const RegistryWatchOptions options_;
  std::string members_;  // "host:port,..." for etcd:// targets
  std::unique_ptr<etcd::EtcdClient> lister_;  // only when no service is named

  std::mutex report_mu_;  // serializes reports; held while on_change_ runs
  std::map<std::string, ServiceResources> services_;
  ChangeCallback on_change_;

  std::mutex watch_mu_;  // guards the fields below
  std::condition_variable wake_;
  Phase phase_ = Phase::kRunning;
  std::set<std::string> watched_;
  std::vector<std::unique_ptr<discovery::Discovery>> discoveries_;
  std::thread scanner_;
};

}  // namespace sluice::xds
