#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "google/protobuf/any.pb.h"
#include "sluice/core/address.h"
#include "sluice/core/endpoint.h"
#include "sluice/xds/xds_config.h"

namespace sluice::xds {

// The four resource types a proxyless gRPC client asks for, in the order it asks.
inline constexpr char kListenerType[] = "type.googleapis.com/envoy.config.listener.v3.Listener";
inline constexpr char kRouteConfigurationType[] =
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
inline constexpr char kClusterType[] = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
inline constexpr char kClusterLoadAssignmentType[] =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

// Every resource of one service is named after it: a client's target xds:///greeter asks for
// Listener "greeter", which routes to Cluster "greeter", whose endpoints are
// ClusterLoadAssignment "greeter".
envoy::config::route::v3::RouteConfiguration BuildRouteConfiguration(
    const std::string& service, const ServiceSettings& settings);
// An API listener whose HTTP connection manager carries the route configuration inline, with the
// Router filter.
envoy::config::listener::v3::Listener BuildListener(const std::string& service,
                                                    const ServiceSettings& settings);
// EDS over the same ADS stream, round robin (never ring hash or least request: gRPC 1.51 clients
// crash on the one and lack the other), with the configured outlier detection.
envoy::config::cluster::v3::Cluster BuildCluster(const std::string& service,
                                                 const ServiceSettings& settings);
// The endpoints clients are sent, with their parsed addresses: not draining, and with an IP
// literal for an address (gRPC clients need addresses, not names).
std::vector<std::pair<const Endpoint*, HostPort>> ServedEndpoints(const EndpointSet& endpoints);
// Equal weights: one locality holding every endpoint (exact round robin). Otherwise one locality
// per endpoint, weighted by the endpoint's weight: gRPC 1.51 ignores per-endpoint weights but
// honours locality weights. Only ServedEndpoints are sent.
envoy::config::endpoint::v3::ClusterLoadAssignment BuildClusterLoadAssignment(
    const std::string& service, const EndpointSet& endpoints);

// Resources by type URL, then by name, packed in Any.
using ResourceTable = std::map<std::string, std::map<std::string, google::protobuf::Any>>;

// What one service contributes to the table.
struct ServiceResources {
  ServiceSettings settings;
  EndpointSet endpoints;
};
ResourceTable BuildResourceTable(const std::map<std::string, ServiceResources>& services);

}  // namespace sluice::xds
