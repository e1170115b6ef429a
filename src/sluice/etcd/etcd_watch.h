#pragma once

// One etcd watch: a thread running a Watch stream on one member at a time, moving to the next
// member when one cannot be reached. Internal to sluice_etcd; EtcdClient::WatchPrefix starts it.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "sluice/etcd/etcd_client.h"
#include "sluice/etcd/etcd_members.h"

namespace sluice::etcd {

// See EtcdClient::WatchPrefix for the callbacks' contract.
std::unique_ptr<EtcdWatch> StartPrefixWatch(std::shared_ptr<EtcdMembers> members,
                                            std::string prefix, int64_t start_revision,
                                            std::function<void(const WatchUpdate&)> on_update,
                                            std::function<void(absl::Status, int64_t)> on_end);

}  // namespace sluice::etcd
