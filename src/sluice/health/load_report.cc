#include "sluice/health/load_report.h"

#include <atomic>
#include <cmath>

#include "sluice/core/clock.h"
#include "sluice/core/log.h"
#include "xds/data/orca/v3/orca_load_report.pb.h"

namespace sluice::health {
namespace {

using xds::data::orca::v3::OrcaLoadReport;

// One warning a second at most: a broken backend sends a bad report with every call.
void WarnRateLimited(absl::string_view what) {
  static std::atomic<int64_t> next_warning_ns{0};
  const int64_t now_ns = absl::ToUnixNanos(SystemClock::Instance().Now());
  int64_t due = next_warning_ns.load(std::memory_order_relaxed);
  if (now_ns < due || !next_warning_ns.compare_exchange_strong(
                          due, now_ns + absl::ToInt64Nanoseconds(absl::Seconds(1)))) {
    return;
  }
  LogWarning("ignored a backend load report (", kLoadReportTrailer, "): ", what,
             "; the backend's load-reporting code needs fixing (further warnings are limited "
             "to one a second)");
}

bool Usable(double value) { return std::isfinite(value) && value >= 0; }

}  // namespace

std::string EncodeLoadReport(const LoadReport& report) {
  OrcaLoadReport proto;
  proto.set_cpu_utilization(report.cpu_utilization);
  proto.set_mem_utilization(report.mem_utilization);
  proto.set_application_utilization(report.application_utilization);
  proto.set_rps_fractional(report.rps_fractional);
  proto.set_eps(report.eps);
  proto.mutable_named_metrics()->insert(report.named_metrics.begin(), report.named_metrics.end());
  proto.mutable_utilization()->insert(report.utilization.begin(), report.utilization.end());
  proto.mutable_request_cost()->insert(report.request_cost.begin(), report.request_cost.end());
  return proto.SerializeAsString();
}

std::optional<LoadReport> DecodeLoadReport(absl::string_view bytes) {
  OrcaLoadReport proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    WarnRateLimited(absl::StrCat(bytes.size(), " bytes that are not an OrcaLoadReport"));
    return std::nullopt;
  }
  LoadReport report;
  report.cpu_utilization = proto.cpu_utilization();
  report.mem_utilization = proto.mem_utilization();
  report.application_utilization = proto.application_utilization();
  report.rps_fractional = proto.rps_fractional();
  report.eps = proto.eps();
  for (auto [name, value] :
       {std::pair<absl::string_view, double>{"cpu_utilization", report.cpu_utilization},
        {"mem_utilization", report.mem_utilization},
        {"application_utilization", report.application_utilization},
        {"rps_fractional", report.rps_fractional},
        {"eps", report.eps}}) {
    if (!Usable(value)) {
      WarnRateLimited(absl::StrCat(name, " is ", value, " (must be a finite number >= 0)"));
      return std::nullopt;
    }
  }
  report.named_metrics.insert(proto.named_metrics().begin(), proto.named_metrics().end());
  report.utilization.insert(proto.utilization().begin(), proto.utilization().end());
  report.request_cost.insert(proto.request_cost().begin(), proto.request_cost().end());
  return report;
}

std::optional<absl::string_view> FindLoadReportTrailer(
    const std::multimap<grpc::string_ref, grpc::string_ref>& trailers) {
  for (const char* name : {kLoadReportTrailer, kLoadReportMirrorTrailer}) {
    auto it = trailers.find(name);
    if (it != trailers.end()) return absl::string_view(it->second.data(), it->second.size());
  }
  return std::nullopt;
}

double ReportedUtilization(const LoadReport& report) {
  return report.application_utilization > 0 ? report.application_utilization
                                            : report.cpu_utilization;
}

bool RecordLoadReport(absl::string_view trailer_bytes, EndpointStats& stats, absl::Time now) {
  std::optional<LoadReport> report = DecodeLoadReport(trailer_bytes);
  if (!report.has_value()) return false;
  stats.OnLoadReport(report->rps_fractional, report->eps, ReportedUtilization(*report), now);
  return true;
}

}  // namespace sluice::health
