#include "sluice/xds/resources.h"

#include <gtest/gtest.h>

#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"

namespace sluice::xds {
namespace {

namespace hcm_v3 = envoy::extensions::filters::network::http_connection_manager::v3;

Endpoint MakeEndpoint(const std::string& address, uint32_t weight = 1, bool draining = false) {
  Endpoint e;
  e.address = address;
  e.weight = weight;
  e.draining = draining;
  return e;
}

TEST(XdsResourcesTest, ListenerCarriesTheRouteInlineAndEndsWithTheRouter) {
  ServiceSettings settings;
  settings.timeout = absl::Seconds(3);
  settings.retry = RetrySettings{};
  settings.retry->max_attempts = 3;
  settings.retry->retry_on = {"unavailable", "cancelled"};
  auto listener = BuildListener("greeter", settings);
  EXPECT_EQ(listener.name(), "greeter");
  hcm_v3::HttpConnectionManager manager;
  ASSERT_TRUE(listener.api_listener().api_listener().UnpackTo(&manager));
  EXPECT_EQ(listener.api_listener().api_listener().type_url(),
            "type.googleapis.com/"
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
  ASSERT_EQ(manager.http_filters_size(), 1);
  EXPECT_EQ(manager.http_filters(0).typed_config().type_url(),
            "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router");
  ASSERT_TRUE(manager.has_route_config());
  const auto& host = manager.route_config().virtual_hosts(0);
  EXPECT_EQ(host.domains(0), "*");
  const auto& route = host.routes(0);
  EXPECT_TRUE(route.match().has_prefix());
  EXPECT_EQ(route.route().cluster(), "greeter");
  EXPECT_EQ(route.route().max_stream_duration().max_stream_duration().seconds(), 3);
  EXPECT_EQ(route.route().retry_policy().retry_on(), "unavailable,cancelled");
  EXPECT_EQ(route.route().retry_policy().num_retries().value(), 2u);
  EXPECT_EQ(route.route().retry_policy().retry_back_off().base_interval().nanos(), 25000000);
}

TEST(XdsResourcesTest, ClusterIsEdsOverAdsRoundRobinWithOutlierDetection) {
  ServiceSettings settings;
  auto plain = BuildCluster("greeter", settings);
  EXPECT_EQ(plain.type(), envoy::config::cluster::v3::Cluster::EDS);
  EXPECT_TRUE(plain.eds_cluster_config().eds_config().has_ads());
  EXPECT_EQ(plain.eds_cluster_config().service_name(), "greeter");
  EXPECT_EQ(plain.lb_policy(), envoy::config::cluster::v3::Cluster::ROUND_ROBIN);
  EXPECT_FALSE(plain.has_outlier_detection());

  settings.outlier_detection = OutlierSettings{};
  settings.outlier_detection->failure_percentage = OutlierSettings::FailurePercentage{};
  auto detecting = BuildCluster("greeter", settings);
  ASSERT_TRUE(detecting.has_outlier_detection());
  const auto& od = detecting.outlier_detection();
  EXPECT_EQ(od.interval().seconds(), 10);
  // No success-rate settings: that detector is turned off explicitly (gRPC's default is on).
  ASSERT_TRUE(od.has_enforcing_success_rate());
  EXPECT_EQ(od.enforcing_success_rate().value(), 0u);
  EXPECT_EQ(od.failure_percentage_threshold().value(), 85u);
  EXPECT_EQ(od.enforcing_failure_percentage().value(), 100u);
}

TEST(XdsResourcesTest, EqualWeightsShareOneLocalityAndDrainingEndpointsAreLeftOut) {
  EndpointSet set({MakeEndpoint("127.0.0.11:50051"), MakeEndpoint("127.0.0.12:50051"),
                   MakeEndpoint("127.0.0.13:50051", 1, /*draining=*/true),
                   MakeEndpoint("[::1]:50051"), MakeEndpoint("backend.local:50051")});
  auto assignment = BuildClusterLoadAssignment("greeter", set);
  EXPECT_EQ(assignment.cluster_name(), "greeter");
  ASSERT_EQ(assignment.endpoints_size(), 1);
  const auto& locality = assignment.endpoints(0);
  EXPECT_EQ(locality.load_balancing_weight().value(), 1u);
  std::vector<std::string> addresses;
  for (const auto& lb : locality.lb_endpoints()) {
    const auto& socket = lb.endpoint().address().socket_address();
    addresses.push_back(socket.address() + ":" + std::to_string(socket.port_value()));
  }
  // Sorted as the set is; the draining one and the name (not an address) are not sent.
  EXPECT_EQ(addresses,
            (std::vector<std::string>{"127.0.0.11:50051", "127.0.0.12:50051", "::1:50051"}));
}

TEST(XdsResourcesTest, DifferentWeightsBecomeOneWeightedLocalityPerEndpoint) {
  EndpointSet set({MakeEndpoint("127.0.0.11:50051", 1), MakeEndpoint("127.0.0.12:50051", 3)});
  auto assignment = BuildClusterLoadAssignment("greeter", set);
  ASSERT_EQ(assignment.endpoints_size(), 2);
  EXPECT_EQ(assignment.endpoints(0).load_balancing_weight().value(), 1u);
  EXPECT_EQ(assignment.endpoints(1).load_balancing_weight().value(), 3u);
  EXPECT_NE(assignment.endpoints(0).locality().sub_zone(),
            assignment.endpoints(1).locality().sub_zone());
  EXPECT_EQ(assignment.endpoints(1).lb_endpoints(0).endpoint().address().socket_address().address(),
            "127.0.0.12");
}

TEST(XdsResourcesTest, TheTableHoldsEachServiceUnderEveryType) {
  std::map<std::string, ServiceResources> services;
  services["greeter"].endpoints = EndpointSet({MakeEndpoint("127.0.0.11:50051")});
  services["echo"];
  ResourceTable table = BuildResourceTable(services);
  for (const char* type : {kListenerType, kRouteConfigurationType, kClusterType,
                           kClusterLoadAssignmentType}) {
    ASSERT_EQ(table[type].size(), 2u) << type;
    EXPECT_EQ(table[type]["greeter"].type_url(), type);
  }
}

}  // namespace
}  // namespace sluice::xds
