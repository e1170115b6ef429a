#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "envoy/service/discovery/v3/discovery.pb.h"
#include "sluice/xds/resources.h"

namespace sluice::xds {

// The resources every stream serves from, and their version: one number for the whole table,
// raised on each registry change.
struct Snapshot {
  uint64_t version = 0;
  std::shared_ptr<const ResourceTable> table = std::make_shared<ResourceTable>();
};

// The state-of-the-world ADS protocol on one stream, without gRPC: what the client subscribed
// to per type, what was sent (version, nonce), what it ACKed or NACKed. The server feeds it the
// client's requests and each new snapshot, and writes out the responses it returns.
class AdsStreamState {
 public:
  // How a request relates to what was sent before.
  enum class RequestKind {
    kSubscribe,  // first request of a type (no nonce), or new resource names
    kAck,        // the last response's nonce, no error
    kNack,       // the last response's nonce, with error_detail: the client rejected it
    kStale,      // a nonce other than the last one sent: answered by a later response already
  };
  struct Outcome {
    RequestKind kind = RequestKind::kStale;
    // A response to send now, if the request calls for one.
    std::optional<envoy::service::discovery::v3::DiscoveryResponse> response;
  };
  // What is known about one resource type on this stream (also shown on /clients).
  struct TypeState {
    std::set<std::string> names;  // empty: every resource of the type (wildcard)
    std::string sent_version;
    std::string sent_nonce;
    std::string acked_version;
    std::string last_nack;  // the client's error_detail message of its last NACK
    std::string sent_fingerprint;  // the resources' bytes as last sent
  };

  Outcome OnRequest(const envoy::service::discovery::v3::DiscoveryRequest& request,
                    const Snapshot& snapshot);
  // Responses for every subscribed type whose resources changed since they were last sent.
  std::vector<envoy::service::discovery::v3::DiscoveryResponse> OnSnapshot(
      const Snapshot& snapshot);

  const envoy::config::core::v3::Node& node() const { return node_; }
  const std::map<std::string, TypeState>& types() const { return types_; }

 private:
  // Builds the response for `type` from the snapshot if its resources differ from what was
  // last sent (always when `force`).
  std::optional<envoy::service::discovery::v3::DiscoveryResponse> Respond(
      const std::string& type, TypeState& state, const Snapshot& snapshot, bool force);

  envoy::config::core::v3::Node node_;
  std::map<std::string, TypeState> types_;
  uint64_t nonces_sent_ = 0;
};

}  // namespace sluice::xds
