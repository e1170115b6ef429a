#include "sluice/xds/resources.h"

#include "absl/strings/str_join.h"
#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "sluice/core/address.h"

namespace sluice::xds {
namespace {

namespace cluster_v3 = envoy::config::cluster::v3;
namespace core_v3 = envoy::config::core::v3;
namespace endpoint_v3 = envoy::config::endpoint::v3;
namespace hcm_v3 = envoy::extensions::filters::network::http_connection_manager::v3;
namespace route_v3 = envoy::config::route::v3;

// Every authority the client dials the service by.
const std::string kAnyDomain = "*";

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t nanos = absl::ToInt64Nanoseconds(d);
  out->set_seconds(nanos / 1000000000);
  out->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

void SetRetryPolicy(const RetrySettings& retry, route_v3::RetryPolicy* out) {
  out->set_retry_on(absl::StrJoin(retry.retry_on, ","));
  out->mutable_num_retries()->set_value(retry.max_attempts - 1);
  SetDuration(retry.initial_backoff, out->mutable_retry_back_off()->mutable_base_interval());
  SetDuration(retry.max_backoff, out->mutable_retry_back_off()->mutable_max_interval());
}

}  // namespace

route_v3::RouteConfiguration BuildRouteConfiguration(const std::string& service,
                                                     const ServiceSettings& settings) {
  route_v3::RouteConfiguration config;
  config.set_name(service);
  route_v3::VirtualHost* host = config.add_virtual_hosts();
  host->set_name(service);
  host->add_domains(kAnyDomain);
  route_v3::Route* route = host->add_routes();
  route->mutable_match()->mutable_prefix();  // the empty prefix: every method
  route_v3::RouteAction* action = route->mutable_route();
  action->set_cluster(service);
  if (settings.timeout) {
    SetDuration(*settings.timeout,
                action->mutable_max_stream_duration()->mutable_max_stream_duration());
  }
  if (settings.retry) SetRetryPolicy(*settings.retry, action->mutable_retry_policy());
  return config;
}

envoy::config::listener::v3::Listener BuildListener(const std::string& service,
                                                    const ServiceSettings& settings) {
  hcm_v3::HttpConnectionManager manager;
  manager.set_stat_prefix(service);
  *manager.mutable_route_config() = BuildRouteConfiguration(service, settings);
  hcm_v3::HttpFilter* router = manager.add_http_filters();
  router->set_name("router");
  router->mutable_typed_config()->PackFrom(envoy::extensions::filters::http::router::v3::Router());

  envoy::config::listener::v3::Listener listener;
  listener.set_name(service);
  listener.mutable_api_listener()->mutable_api_listener()->PackFrom(manager);
  return listener;
}

cluster_v3::Cluster BuildCluster(const std::string& service, const ServiceSettings& settings) {
  cluster_v3::Cluster cluster;
  cluster.set_name(service);
  cluster.set_type(cluster_v3::Cluster::EDS);
  cluster.mutable_eds_cluster_config()->set_service_name(service);
  core_v3::ConfigSource* source = cluster.mutable_eds_cluster_config()->mutable_eds_config();
  source->mutable_ads();
  source->set_resource_api_version(core_v3::V3);
  cluster.set_lb_policy(cluster_v3::Cluster::ROUND_ROBIN);
  if (settings.outlier_detection) {
    const OutlierSettings& o = *settings.outlier_detection;
    cluster_v3::OutlierDetection* out = cluster.mutable_outlier_detection();
    SetDuration(o.interval, out->mutable_interval());
    SetDuration(o.base_ejection_time, out->mutable_base_ejection_time());
    SetDuration(o.max_ejection_time, out->mutable_max_ejection_time());
    out->mutable_max_ejection_percent()->set_value(o.max_ejection_percent);
    // gRFC A50: the success-rate detector runs unless enforcing_success_rate is 0 (absent means
    // 100); the failure-percentage one only when enforcing_failure_percentage is non-zero.
    if (o.success_rate) {
      out->mutable_success_rate_stdev_factor()->set_value(o.success_rate->stdev_factor);
      out->mutable_enforcing_success_rate()->set_value(o.success_rate->enforcing);
      out->mutable_success_rate_minimum_hosts()->set_value(o.success_rate->minimum_hosts);
      out->mutable_success_rate_request_volume()->set_value(o.success_rate->request_volume);
    } else {
      out->mutable_enforcing_success_rate()->set_value(0);
    }
    if (o.failure_percentage) {
      out->mutable_failure_percentage_threshold()->set_value(o.failure_percentage->threshold);
      out->mutable_enforcing_failure_percentage()->set_value(o.failure_percentage->enforcing);
      out->mutable_failure_percentage_minimum_hosts()->set_value(
          o.failure_percentage->minimum_hosts);
      out->mutable_failure_percentage_request_volume()->set_value(
          o.failure_percentage->request_volume);
    }
  }
  return cluster;
}

std::vector<std::pair<const Endpoint*, HostPort>> ServedEndpoints(const EndpointSet& endpoints) {
  std::vector<std::pair<const Endpoint*, HostPort>> serving;
  for (const Endpoint& endpoint : endpoints.endpoints()) {
    if (endpoint.draining) continue;
    absl::StatusOr<HostPort> address = ParseHostPort(endpoint.address);
    if (!address.ok() || !IsIpLiteral(address->host)) continue;
    serving.emplace_back(&endpoint, *address);
  }
  return serving;
}

endpoint_v3::ClusterLoadAssignment BuildClusterLoadAssignment(const std::string& service,
                                                              const EndpointSet& endpoints) {
  const std::vector<std::pair<const Endpoint*, HostPort>> serving = ServedEndpoints(endpoints);
  // Equal weights: one locality, in which gRPC round-robins exactly. Different weights: one
  // locality per endpoint, weighted by it, since gRPC 1.51 honours only locality weights (its
  // weighted_target then picks localities at random in proportion).
  bool equal_weights = true;
  for (const auto& [endpoint, address] : serving) {
    equal_weights = equal_weights && endpoint->weight == serving.front().first->weight;
  }
  endpoint_v3::ClusterLoadAssignment assignment;
  assignment.set_cluster_name(service);
  endpoint_v3::LocalityLbEndpoints* shared = nullptr;
  for (const auto& [endpoint, address] : serving) {
    endpoint_v3::LocalityLbEndpoints* locality = shared;
    if (locality == nullptr) {
      locality = assignment.add_endpoints();
      if (equal_weights) {
        shared = locality;
        locality->mutable_locality()->set_sub_zone(service);
        locality->mutable_load_balancing_weight()->set_value(1);
      } else {
        locality->mutable_locality()->set_sub_zone(endpoint->address);
        if (!endpoint->zone.empty()) locality->mutable_locality()->set_zone(endpoint->zone);
        locality->mutable_load_balancing_weight()->set_value(endpoint->weight);
      }
    }
    endpoint_v3::LbEndpoint* lb_endpoint = locality->add_lb_endpoints();
    core_v3::SocketAddress* socket =
        lb_endpoint->mutable_endpoint()->mutable_address()->mutable_socket_address();
    socket->set_address(address.host);
    socket->set_port_value(address.port);
    lb_endpoint->set_health_status(core_v3::HEALTHY);
    lb_endpoint->mutable_load_balancing_weight()->set_value(endpoint->weight);
  }
  return assignment;
}

ResourceTable BuildResourceTable(const std::map<std::string, ServiceResources>& services) {
  ResourceTable table;
  for (const auto& [service, resources] : services) {
    table[kListenerType][service].PackFrom(BuildListener(service, resources.settings));
    table[kRouteConfigurationType][service].PackFrom(
        BuildRouteConfiguration(service, resources.settings));
    table[kClusterType][service].PackFrom(BuildCluster(service, resources.settings));
    table[kClusterLoadAssignmentType][service].PackFrom(
        BuildClusterLoadAssignment(service, resources.endpoints));
  }
  return table;
}

}  // namespace sluice::xds
