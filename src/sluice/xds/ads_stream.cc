#include "sluice/xds/ads_stream.h"

#include "absl/strings/str_cat.h"

namespace sluice::xds {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

AdsStreamState::Outcome AdsStreamState::OnRequest(const DiscoveryRequest& request,
                                                  const Snapshot& snapshot) {
  // Clients send their node on the first request only (gRPC does); keep the first one seen.
  if (request.has_node() && node_.id().empty()) node_ = request.node();
  TypeState& state = types_[request.type_url()];
  const std::set<std::string> names(request.resource_names().begin(),
                                    request.resource_names().end());
  Outcome outcome;
  if (request.response_nonce().empty()) {
    // A new subscription (or the client starting over on this type): answer in full.
    outcome.kind = RequestKind::kSubscribe;
    state.names = names;
    // Before the registry's first report there is nothing true to say ("does not exist" would
    // fail the client's calls): the answer waits for the first snapshot.
    if (snapshot.version == 0) return outcome;
    outcome.response = Respond(request.type_url(), state, snapshot, /*force=*/true);
    return outcome;
  }
  if (request.response_nonce() != state.sent_nonce) {
    // A later response is on its way; the client will answer that one.
    outcome.kind = RequestKind::kStale;
    return outcome;
  }
  if (request.has_error_detail()) {
    outcome.kind = RequestKind::kNack;
    state.last_nack = request.error_detail().message();
  } else {
    outcome.kind = RequestKind::kAck;
    state.acked_version = request.version_info();
  }
  if (names != state.names) {
    // The client changed what it wants (a new cluster, say): send the new set.
    state.names = names;
    outcome.kind = outcome.kind == RequestKind::kAck ? RequestKind::kSubscribe : outcome.kind;
    outcome.response = Respond(request.type_url(), state, snapshot, /*force=*/true);
  }
  return outcome;
}

std::vector<DiscoveryResponse> AdsStreamState::OnSnapshot(const Snapshot& snapshot) {
  std::vector<DiscoveryResponse> responses;
  for (auto& [type, state] : types_) {
    // A type never answered (subscribed before the first snapshot) is answered now, even empty.
    if (auto response = Respond(type, state, snapshot, /*force=*/state.sent_nonce.empty())) {
      responses.push_back(std::move(*response));
    }
  }
  return responses;
}

std::optional<DiscoveryResponse> AdsStreamState::Respond(const std::string& type,
                                                         TypeState& state,
                                                         const Snapshot& snapshot, bool force) {
  DiscoveryResponse response;
  response.set_type_url(type);
  std::string fingerprint;
  auto of_type = snapshot.table->find(type);
  if (of_type != snapshot.table->end()) {
    for (const auto& [name, resource] : of_type->second) {
      if (!state.names.empty() && state.names.count(name) == 0) continue;
      *response.add_resources() = resource;
      absl::StrAppend(&fingerprint, name, "\n", resource.value(), "\n");
    }
  }
  if (!force && fingerprint == state.sent_fingerprint) return std::nullopt;
  response.set_version_info(absl::StrCat(snapshot.version));
  response.set_nonce(absl::StrCat(++nonces_sent_));
  response.mutable_control_plane()->set_identifier("sluice");
  state.sent_version = response.version_info();
  state.sent_nonce = response.nonce();
  state.sent_fingerprint = std::move(fingerprint);
  return response;
}

}  // namespace sluice::xds
