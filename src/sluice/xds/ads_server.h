#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "envoy/service/discovery/v3/discovery.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "sluice/xds/ads_stream.h"
#include "sluice/xds/resources.h"

namespace sluice::xds {

// envoy.service.discovery.v3.AggregatedDiscoveryService, state of the world: every connected
// client gets the current resources when it subscribes and every change after that. Each
// stream has its reader (the gRPC handler thread) and its own writer thread, so one slow client
// delays no other.
class AdsServer final : public envoy::service::discovery::v3::AggregatedDiscoveryService::Service {
 public:
  AdsServer() = default;
  ~AdsServer() override;

  // Replaces every service's resources; streams whose subscribed resources changed are sent
  // the new ones.
  void Update(const std::map<std::string, ServiceResources>& services);
  // Ends every stream (cancelled: clients reconnect, to another instance if there is one) and
  // refuses new ones (UNAVAILABLE); for shutdown.
  void Stop();

  grpc::Status StreamAggregatedResources(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<envoy::service::discovery::v3::DiscoveryResponse,
                               envoy::service::discovery::v3::DiscoveryRequest>* stream) override;

  // GET /clients: each connected client's node, peer, and per type its subscription, the
  // version sent and ACKed, and its last NACK.
  nlohmann::json ClientsJson() const;
  // GET /metrics: Prometheus text.
  std::string MetricsText() const;

 private:
  struct Stream;
  struct TypeCounters {
    int64_t responses = 0;
    int64_t acks = 0;
    int64_t nacks = 0;
  };

  // Locks a stream (`stream_lock`, on its mu) and returns the current snapshot, read under mu_
  // in the same motion: no newer snapshot can have reached the stream in between.
  Snapshot LockStream(std::unique_lock<std::mutex>& stream_lock);
  void CountRequest(const std::string& type, AdsStreamState::RequestKind kind);
  void CountResponse(const std::string& type);

  mutable std::mutex mu_;
  Snapshot snapshot_;
  std::map<std::string, size_t> endpoints_per_service_;  // ServedEndpoints of each
  std::set<Stream*> streams_;
  bool stopped_ = false;
  int64_t streams_total_ = 0;
  std::map<std::string, TypeCounters> counters_;
};

}  // namespace sluice::xds
