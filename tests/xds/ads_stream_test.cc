#include "sluice/xds/ads_stream.h"

#include <gtest/gtest.h>

namespace sluice::xds {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using RequestKind = AdsStreamState::RequestKind;

Snapshot MakeSnapshot(uint64_t version, const std::vector<std::string>& greeter_addresses) {
  std::map<std::string, ServiceResources> services;
  std::vector<Endpoint> endpoints;
  for (const auto& address : greeter_addresses) endpoints.push_back(Endpoint{.address = address});
  services["greeter"].endpoints = EndpointSet(endpoints);
  services["echo"];
  Snapshot snapshot;
  snapshot.version = version;
  snapshot.table = std::make_shared<ResourceTable>(BuildResourceTable(services));
  return snapshot;
}

DiscoveryRequest Request(const std::string& type, std::vector<std::string> names,
                         const std::string& version = "", const std::string& nonce = "") {
  DiscoveryRequest request;
  request.set_type_url(type);
  for (auto& name : names) request.add_resource_names(name);
  request.set_version_info(version);
  request.set_response_nonce(nonce);
  return request;
}

TEST(AdsStreamTest, SubscribeAckAndNackFollowTheNonces) {
  AdsStreamState state;
  Snapshot v1 = MakeSnapshot(1, {"127.0.0.11:50051"});
  DiscoveryRequest first = Request(kListenerType, {"greeter"});
  first.mutable_node()->set_id("client-1");
  auto subscribed = state.OnRequest(first, v1);
  EXPECT_EQ(subscribed.kind, RequestKind::kSubscribe);
  ASSERT_TRUE(subscribed.response.has_value());
  EXPECT_EQ(subscribed.response->version_info(), "1");
  EXPECT_EQ(subscribed.response->type_url(), kListenerType);
  ASSERT_EQ(subscribed.response->resources_size(), 1);  // only what was asked for
  EXPECT_EQ(state.node().id(), "client-1");
  const std::string nonce = subscribed.response->nonce();

  // ACK: remembered, nothing to send.
  auto ack = state.OnRequest(Request(kListenerType, {"greeter"}, "1", nonce), v1);
  EXPECT_EQ(ack.kind, RequestKind::kAck);
  EXPECT_FALSE(ack.response.has_value());
  EXPECT_EQ(state.types().at(kListenerType).acked_version, "1");

  // A request naming an older nonce is stale: ignored.
  auto stale = state.OnRequest(Request(kListenerType, {"greeter"}, "0", "no-such-nonce"), v1);
  EXPECT_EQ(stale.kind, RequestKind::kStale);
  EXPECT_FALSE(stale.response.has_value());

  // A new version, then a NACK of it: the error is kept, the ACKed version stays the old one,
  // and nothing is resent until something changes.
  Snapshot v2 = MakeSnapshot(2, {"127.0.0.11:50051"});
  DiscoveryRequest eds = Request(kClusterLoadAssignmentType, {"greeter"});
  auto eds_sent = state.OnRequest(eds, v1);
  ASSERT_TRUE(eds_sent.response.has_value());
  DiscoveryRequest nack =
      Request(kClusterLoadAssignmentType, {"greeter"}, "", eds_sent.response->nonce());
  nack.mutable_error_detail()->set_message("bad endpoint");
  auto nacked = state.OnRequest(nack, v2);
  EXPECT_EQ(nacked.kind, RequestKind::kNack);
  EXPECT_FALSE(nacked.response.has_value());
  EXPECT_EQ(state.types().at(kClusterLoadAssignmentType).last_nack, "bad endpoint");
  EXPECT_EQ(state.types().at(kClusterLoadAssignmentType).acked_version, "");
}

TEST(AdsStreamTest, ASnapshotPushesOnlyTheTypesWhoseResourcesChanged) {
  AdsStreamState state;
  Snapshot v1 = MakeSnapshot(1, {"127.0.0.11:50051"});
  auto lds = state.OnRequest(Request(kListenerType, {"greeter"}), v1);
  auto eds = state.OnRequest(Request(kClusterLoadAssignmentType, {"greeter"}), v1);
  ASSERT_TRUE(lds.response && eds.response);
  EXPECT_NE(lds.response->nonce(), eds.response->nonce());

  // Same resources under a new version: nothing to send.
  EXPECT_TRUE(state.OnSnapshot(MakeSnapshot(2, {"127.0.0.11:50051"})).empty());
  // A backend joins: only the endpoints change.
  auto pushed = state.OnSnapshot(MakeSnapshot(3, {"127.0.0.11:50051", "127.0.0.12:50051"}));
  ASSERT_EQ(pushed.size(), 1u);
  EXPECT_EQ(pushed[0].type_url(), kClusterLoadAssignmentType);
  EXPECT_EQ(pushed[0].version_info(), "3");
  envoy::config::endpoint::v3::ClusterLoadAssignment assignment;
  ASSERT_TRUE(pushed[0].resources(0).UnpackTo(&assignment));
  EXPECT_EQ(assignment.endpoints(0).lb_endpoints_size(), 2);
  // The client ACKs the new nonce.
  auto ack = state.OnRequest(
      Request(kClusterLoadAssignmentType, {"greeter"}, "3", pushed[0].nonce()), MakeSnapshot(3, {}));
  EXPECT_EQ(ack.kind, RequestKind::kAck);
}

TEST(AdsStreamTest, ChangedResourceNamesAreAnsweredWithTheNewSet) {
  AdsStreamState state;
  Snapshot v1 = MakeSnapshot(1, {});
  auto cds = state.OnRequest(Request(kClusterType, {"greeter"}), v1);
  ASSERT_TRUE(cds.response.has_value());
  auto more =
      state.OnRequest(Request(kClusterType, {"greeter", "echo"}, "1", cds.response->nonce()), v1);
  EXPECT_EQ(more.kind, RequestKind::kSubscribe);
  ASSERT_TRUE(more.response.has_value());
  EXPECT_EQ(more.response->resources_size(), 2);
  // Unknown names are simply absent (for LDS and CDS that tells the client they do not exist).
  AdsStreamState other;
  auto unknown = other.OnRequest(Request(kListenerType, {"nope"}), v1);
  ASSERT_TRUE(unknown.response.has_value());
  EXPECT_EQ(unknown.response->resources_size(), 0);
  // No names: every resource of the type (a wildcard subscription).
  auto all = other.OnRequest(Request(kClusterType, {}), v1);
  EXPECT_EQ(all.response->resources_size(), 2);
}

TEST(AdsStreamTest, AClientThatSubscribesLateGetsTheCurrentState) {
  Snapshot v7 = MakeSnapshot(7, {"127.0.0.11:50051", "127.0.0.12:50051"});
  AdsStreamState late;
  auto eds = late.OnRequest(Request(kClusterLoadAssignmentType, {"greeter"}), v7);
  ASSERT_TRUE(eds.response.has_value());
  EXPECT_EQ(eds.response->version_info(), "7");
  envoy::config::endpoint::v3::ClusterLoadAssignment assignment;
  ASSERT_TRUE(eds.response->resources(0).UnpackTo(&assignment));
  EXPECT_EQ(assignment.endpoints(0).lb_endpoints_size(), 2);
}

TEST(AdsStreamTest, ASubscriptionBeforeTheRegistrysFirstReportIsAnsweredByTheFirstSnapshot) {
  AdsStreamState state;
  Snapshot none;  // version 0: the registry has not reported yet
  auto early = state.OnRequest(Request(kListenerType, {"greeter"}), none);
  EXPECT_EQ(early.kind, RequestKind::kSubscribe);
  EXPECT_FALSE(early.response.has_value());  // not "does not exist"
  auto early_eds = state.OnRequest(Request(kClusterLoadAssignmentType, {"other"}), none);
  EXPECT_FALSE(early_eds.response.has_value());
  auto pushed = state.OnSnapshot(MakeSnapshot(1, {"127.0.0.11:50051"}));
  // Both answered: the listener, and (empty) the endpoints of a service nobody registered.
  ASSERT_EQ(pushed.size(), 2u);
  EXPECT_EQ(pushed[0].resources_size() + pushed[1].resources_size(), 1);
  EXPECT_TRUE(state.OnSnapshot(MakeSnapshot(2, {"127.0.0.11:50051"})).empty());
}

}  // namespace
}  // namespace sluice::xds
