// The ADS server over a real gRPC stream: a raw client (the test) speaks the protocol, so NACKs,
// pushes and late subscribers can be driven exactly.
#include "sluice/xds/ads_server.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sluice::xds {
namespace {

using envoy::service::discovery::v3::AggregatedDiscoveryService;
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

std::map<std::string, ServiceResources> Services(const std::vector<std::string>& addresses) {
  std::map<std::string, ServiceResources> services;
  std::vector<Endpoint> endpoints;
  for (const auto& address : addresses) endpoints.push_back(Endpoint{.address = address});
  services["greeter"].endpoints = EndpointSet(endpoints);
  return services;
}

class AdsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&ads_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                                   grpc::InsecureChannelCredentials());
  }
  void TearDown() override {
    ads_.Stop();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }

  struct Client {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReaderWriter<DiscoveryRequest, DiscoveryResponse>> stream;
  };
  std::unique_ptr<Client> Connect(const std::string& node_id) {
    auto client = std::make_unique<Client>();
    client->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    client->stream =
        AggregatedDiscoveryService::NewStub(channel_)->StreamAggregatedResources(&client->context);
    node_id_ = node_id;
    return client;
  }
  DiscoveryRequest Request(const std::string& type, const std::string& version = "",
                           const std::string& nonce = "") {
    DiscoveryRequest request;
    request.mutable_node()->set_id(node_id_);
    request.set_type_url(type);
    request.add_resource_names("greeter");
    request.set_version_info(version);
    request.set_response_nonce(nonce);
    return request;
  }

  AdsServer ads_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::string node_id_;
};

TEST_F(AdsServerTest, AnswersPushesCountsNacksAndServesLateSubscribers) {
  ads_.Update(Services({"127.0.0.11:50051"}));
  auto client = Connect("node-a");
  ASSERT_TRUE(client->stream->Write(Request(kClusterLoadAssignmentType)));
  DiscoveryResponse first;
  ASSERT_TRUE(client->stream->Read(&first));
  EXPECT_EQ(first.version_info(), "1");
  // ACK, then a registry change is pushed without being asked for.
  ASSERT_TRUE(client->stream->Write(Request(kClusterLoadAssignmentType, "1", first.nonce())));
  // (Were the push sent before the ACK is read, the ACK would name an old nonce: stale.)
  auto acked = [&] {
    nlohmann::json clients = ads_.ClientsJson()["clients"];
    return clients.size() == 1 &&
           clients[0]["types"][kClusterLoadAssignmentType]["acked_version"] == "1";
  };
  for (int i = 0; i < 500 && !acked(); ++i) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_TRUE(acked());
  ads_.Update(Services({"127.0.0.11:50051", "127.0.0.12:50051"}));
  DiscoveryResponse pushed;
  ASSERT_TRUE(client->stream->Read(&pushed));
  EXPECT_EQ(pushed.version_info(), "2");
  envoy::config::endpoint::v3::ClusterLoadAssignment assignment;
  ASSERT_TRUE(pushed.resources(0).UnpackTo(&assignment));
  EXPECT_EQ(assignment.endpoints(0).lb_endpoints_size(), 2);
  // NACK it: counted, logged, shown on /clients.
  DiscoveryRequest nack = Request(kClusterLoadAssignmentType, "1", pushed.nonce());
  nack.mutable_error_detail()->set_code(3);
  nack.mutable_error_detail()->set_message("endpoint 127.0.0.12 rejected");
  ASSERT_TRUE(client->stream->Write(nack));
  const absl::Time until = absl::Now() + absl::Seconds(5);
  while (absl::Now() < until &&
         !absl::StrContains(ads_.MetricsText(), "sluice_xds_nacks_total{type=\"" +
                                                     std::string(kClusterLoadAssignmentType) +
                                                     "\"} 1")) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(absl::StrContains(
      ads_.MetricsText(),
      absl::StrCat("sluice_xds_nacks_total{type=\"", kClusterLoadAssignmentType, "\"} 1")))
      << ads_.MetricsText();
  EXPECT_TRUE(absl::StrContains(
      ads_.MetricsText(),
      absl::StrCat("sluice_xds_acks_total{type=\"", kClusterLoadAssignmentType, "\"} 1")));
  nlohmann::json clients = ads_.ClientsJson();
  ASSERT_EQ(clients["clients"].size(), 1u);
  EXPECT_EQ(clients["clients"][0]["node_id"], "node-a");
  const auto& eds = clients["clients"][0]["types"][kClusterLoadAssignmentType];
  EXPECT_EQ(eds["acked_version"], "1");
  EXPECT_EQ(eds["last_nack"], "endpoint 127.0.0.12 rejected");

  // A second client, subscribing late, gets the current state at once.
  auto late = Connect("node-b");
  ASSERT_TRUE(late->stream->Write(Request(kClusterLoadAssignmentType)));
  DiscoveryResponse current;
  ASSERT_TRUE(late->stream->Read(&current));
  EXPECT_EQ(current.version_info(), "2");
  ASSERT_TRUE(current.resources(0).UnpackTo(&assignment));
  EXPECT_EQ(assignment.endpoints(0).lb_endpoints_size(), 2);
  EXPECT_TRUE(absl::StrContains(ads_.MetricsText(), "sluice_xds_streams 2"));

  // Stop ends every stream.
  ads_.Stop();
  DiscoveryResponse none;
  EXPECT_FALSE(client->stream->Read(&none));
  EXPECT_FALSE(client->stream->Finish().ok());
}

}  // namespace
}  // namespace sluice::xds
