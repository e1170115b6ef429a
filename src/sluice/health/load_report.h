#pragma once

#include <grpcpp/support/string_ref.h>

#include <map>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sluice/balancer/endpoint_stats.h"

namespace sluice::health {

// The trailer a backend puts its load in, as gRPC's ORCA per-call reports do (gRFC A51). HTTP/2
// peers (sluice proxy, Envoy) and gRPC's own LB policies read it.
inline constexpr char kLoadReportTrailer[] = "endpoint-load-metrics-bin";
// The same bytes again under a name gRPC C++ hands to applications: gRPC (1.51, Debian 12)
// consumes kLoadReportTrailer inside its core and never shows it in a ClientContext's trailing
// metadata, so the client library reads this copy.
inline constexpr char kLoadReportMirrorTrailer[] = "sluice-load-report-bin";

// One backend load report: the fields of xds.data.orca.v3.OrcaLoadReport, without protobuf.
struct LoadReport {
  double cpu_utilization = 0;          // fraction of the backend's CPU; may exceed 1
  double mem_utilization = 0;          // fraction of its memory
  double application_utilization = 0;  // the application's own measure of busy; may exceed 1
  double rps_fractional = 0;           // requests per second it serves
  double eps = 0;                      // errors per second
  std::map<std::string, double> named_metrics;
  std::map<std::string, double> utilization;
  std::map<std::string, double> request_cost;

  bool operator==(const LoadReport&) const = default;
};

// The report as OrcaLoadReport wire bytes (the trailer's value; gRPC base64s -bin trailers).
std::string EncodeLoadReport(const LoadReport& report);

// Parses OrcaLoadReport bytes. Bytes that are not a report, or a report with a negative or
// non-finite number, give nullopt and a warning naming what was wrong (rate-limited to one
// a second, since a broken backend would send one per call); a caller just carries on.
std::optional<LoadReport> DecodeLoadReport(absl::string_view bytes);

// What weighted_round_robin reads: application_utilization when set, else cpu_utilization.
double ReportedUtilization(const LoadReport& report);

// Decodes a trailer value and records it on the endpoint's stats (for weighted_round_robin).
// The one call a caller makes when a call to that endpoint ends. Returns whether it was a
// valid report.
bool RecordLoadReport(absl::string_view trailer_bytes, EndpointStats& stats, absl::Time now);

// The report bytes among a gRPC C++ call's trailing metadata (the standard trailer when gRPC
// shows it, else the mirror), or nullopt when the backend sent none.
std::optional<absl::string_view> FindLoadReportTrailer(
    const std::multimap<grpc::string_ref, grpc::string_ref>& trailers);

}  // namespace sluice::health
