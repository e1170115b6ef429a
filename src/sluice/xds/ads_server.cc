#include "sluice/xds/ads_server.h"

#include <deque>
#include <thread>

#include "absl/strings/str_cat.h"
#include "sluice/core/log.h"

namespace sluice::xds {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

// One client's stream: its protocol state and the responses waiting for its writer thread.
struct AdsServer::Stream {
  enum class Phase { kOpen, kClosing };

  std::mutex mu;
  std::condition_variable wake;
  AdsStreamState state;
  std::deque<DiscoveryResponse> outbox;
  bool snapshot_pending = false;  // a newer snapshot may exist: the writer looks
  Phase phase = Phase::kOpen;
  std::string peer;
  grpc::ServerContext* context = nullptr;  // to end the stream on Stop()
};

AdsServer::~AdsServer() { Stop(); }

void AdsServer::Update(const std::map<std::string, ServiceResources>& services) {
  auto table = std::make_shared<ResourceTable>(BuildResourceTable(services));
  std::lock_guard<std::mutex> lock(mu_);
  snapshot_.version += 1;
  snapshot_.table = std::move(table);
  endpoints_per_service_.clear();
  for (const auto& [service, resources] : services) {
    endpoints_per_service_[service] = ServedEndpoints(resources.endpoints).size();
  }
  // Each writer compares the snapshot with what its client has and sends what changed.
  for (Stream* stream : streams_) {
    std::lock_guard<std::mutex> stream_lock(stream->mu);
    stream->snapshot_pending = true;
    stream->wake.notify_all();
  }
}

void AdsServer::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  for (Stream* stream : streams_) {
    std::lock_guard<std::mutex> stream_lock(stream->mu);
    stream->phase = Stream::Phase::kClosing;
    stream->wake.notify_all();
    // The reader is blocked in Read(); only cancelling the call wakes it.
    stream->context->TryCancel();
  }
}

Snapshot AdsServer::LockStream(std::unique_lock<std::mutex>& stream_lock) {
  std::lock_guard<std::mutex> server_lock(mu_);
  stream_lock.lock();
  return snapshot_;
}

void AdsServer::CountRequest(const std::string& type, AdsStreamState::RequestKind kind) {
  std::lock_guard<std::mutex> lock(mu_);
  TypeCounters& counters = counters_[type];
  counters.acks += kind == AdsStreamState::RequestKind::kAck;
  counters.nacks += kind == AdsStreamState::RequestKind::kNack;
}

void AdsServer::CountResponse(const std::string& type) {
  std::lock_guard<std::mutex> lock(mu_);
  counters_[type].responses += 1;
}

grpc::Status AdsServer::StreamAggregatedResources(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<DiscoveryResponse, DiscoveryRequest>* rpc) {
  Stream stream;
  stream.peer = context->peer();
  stream.context = context;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the xDS server is stopping");
    streams_.insert(&stream);
    ++streams_total_;
  }
  // The writer: sends queued responses, and what changed whenever the snapshot moves on.
  // Lock order everywhere: mu_ before a stream's mu, so neither thread takes mu_ while holding
  // stream.mu. Both threads take the snapshot with LockStream, so what one answers from is never
  // older than what the other answered from before.
  std::thread writer([&] {
    std::unique_lock<std::mutex> lock(stream.mu);
    while (true) {
      stream.wake.wait(lock, [&] {
        return stream.phase == Stream::Phase::kClosing || stream.snapshot_pending ||
               !stream.outbox.empty();
      });
      if (stream.phase == Stream::Phase::kClosing) break;
      if (stream.snapshot_pending) {
        stream.snapshot_pending = false;
        lock.unlock();
        const Snapshot snapshot = LockStream(lock);
        for (auto& response : stream.state.OnSnapshot(snapshot)) {
          stream.outbox.push_back(std::move(response));
        }
      }
      std::deque<DiscoveryResponse> batch;
      batch.swap(stream.outbox);
      lock.unlock();
      bool written = true;
      for (const DiscoveryResponse& response : batch) {
        CountResponse(response.type_url());
        if (!(written = rpc->Write(response))) break;
      }
      lock.lock();
      if (!written) break;  // the client is gone; the reader sees the stream end too
    }
  });

  DiscoveryRequest request;
  while (rpc->Read(&request)) {
    std::unique_lock<std::mutex> lock(stream.mu, std::defer_lock);
    const Snapshot snapshot = LockStream(lock);
    if (stream.phase == Stream::Phase::kClosing) break;
    const bool first = stream.state.node().id().empty() && request.has_node();
    AdsStreamState::Outcome outcome = stream.state.OnRequest(request, snapshot);
    const std::string node_id = stream.state.node().id();
    if (first) {
      LogInfo("xds: client ", stream.peer, " node \"", node_id, "\" (",
              stream.state.node().user_agent_name(), " ",
              stream.state.node().user_agent_version(), ") connected");
    }
    if (outcome.kind == AdsStreamState::RequestKind::kNack) {
      LogWarning("xds: client ", stream.peer, " node \"", node_id, "\" rejected ",
                 request.type_url(), " version ",
                 stream.state.types().at(request.type_url()).sent_version, ": ",
                 request.error_detail().message());
    }
    if (outcome.response) {
      stream.outbox.push_back(std::move(*outcome.response));
      stream.wake.notify_all();
    }
    lock.unlock();
    CountRequest(request.type_url(), outcome.kind);
  }
  {
    std::lock_guard<std::mutex> lock(stream.mu);
    stream.phase = Stream::Phase::kClosing;
    stream.wake.notify_all();
  }
  writer.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    streams_.erase(&stream);
    if (stopped_) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the xDS server is stopping");
    }
  }
  return grpc::Status::OK;
}

nlohmann::json AdsServer::ClientsJson() const {
  nlohmann::json clients = nlohmann::json::array();
  std::lock_guard<std::mutex> lock(mu_);
  for (Stream* stream : streams_) {
    std::lock_guard<std::mutex> stream_lock(stream->mu);
    nlohmann::json types = nlohmann::json::object();
    for (const auto& [type, state] : stream->state.types()) {
      types[type] = {{"resource_names", state.names},
                     {"sent_version", state.sent_version},
                     {"acked_version", state.acked_version},
                     {"last_nack", state.last_nack}};
    }
    const auto& node = stream->state.node();
    clients.push_back({{"peer", stream->peer},
                       {"node_id", node.id()},
                       {"user_agent", absl::StrCat(node.user_agent_name(), " ",
                                                   node.user_agent_version())},
                       {"types", types}});
  }
  return {{"version", snapshot_.version}, {"clients", clients}};
}

std::string AdsServer::MetricsText() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  absl::StrAppend(&out,
                  "# HELP sluice_xds_streams Connected ADS streams.\n"
                  "# TYPE sluice_xds_streams gauge\nsluice_xds_streams ",
                  streams_.size(), "\n",
                  "# HELP sluice_xds_streams_total ADS streams opened.\n"
                  "# TYPE sluice_xds_streams_total counter\nsluice_xds_streams_total ",
                  streams_total_, "\n",
                  "# HELP sluice_xds_version The resources' version (raised on each change).\n"
                  "# TYPE sluice_xds_version gauge\nsluice_xds_version ",
                  snapshot_.version, "\n");
  const std::pair<const char*, int64_t TypeCounters::*> kinds[] = {
      {"responses", &TypeCounters::responses},
      {"acks", &TypeCounters::acks},
      {"nacks", &TypeCounters::nacks}};
  for (const auto& [name, field] : kinds) {
    absl::StrAppend(&out, "# HELP sluice_xds_", name, "_total ADS ", name, " by resource type.\n",
                    "# TYPE sluice_xds_", name, "_total counter\n");
    for (const auto& [type, counters] : counters_) {
      absl::StrAppend(&out, "sluice_xds_", name, "_total{type=\"", type, "\"} ",
                      counters.*field, "\n");
    }
  }
  absl::StrAppend(&out,
                  "# HELP sluice_xds_endpoints Endpoints served per service (draining left "
                  "out).\n# TYPE sluice_xds_endpoints gauge\n");
  for (const auto& [service, count] : endpoints_per_service_) {
    absl::StrAppend(&out, "sluice_xds_endpoints{service=\"", service, "\"} ", count, "\n");
  }
  return out;
}

}  // namespace sluice::xds
