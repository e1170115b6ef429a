// ORCA load reports: the codec, the server-side reporter, and a real gRPC call carrying one.
#include "sluice/health/load_report.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "helloworld.grpc.pb.h"
#include "sluice/balancer/endpoint_stats.h"
#include "sluice/core/clock.h"
#include "sluice/core/log.h"
#include "sluice/health/load_reporter.h"
#include "xds/data/orca/v3/orca_load_report.pb.h"

namespace sluice::health {
namespace {

// Collects warnings while alive.
class WarningCatcher {
 public:
  WarningCatcher() {
    previous_ = SetLogSink([this](LogLevel level, absl::string_view message) {
      if (level == LogLevel::kWarning) warnings_.emplace_back(message);
    });
  }
  ~WarningCatcher() { SetLogSink(std::move(previous_)); }
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  LogSink previous_;
  std::vector<std::string> warnings_;
};

LoadReport FullReport() {
  LoadReport report;
  report.cpu_utilization = 0.25;
  report.mem_utilization = 0.5;
  report.application_utilization = 0.75;
  report.rps_fractional = 123.5;
  report.eps = 1.5;
  report.named_metrics = {{"queue", 7}, {"slots_free", 3}};
  report.utilization = {{"gpu", 0.5}};
  report.request_cost = {{"bytes", 4096}};
  return report;
}

TEST(LoadReportTest, RoundTripsThroughBytes) {
  const LoadReport report = FullReport();
  const std::string bytes = EncodeLoadReport(report);
  std::optional<LoadReport> decoded = DecodeLoadReport(bytes);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, report);
}

TEST(LoadReportTest, UsesThePublicFieldNumbers) {
  // The bytes a peer would send: field 1 (cpu_utilization) and 9 (application_utilization).
  xds::data::orca::v3::OrcaLoadReport proto;
  proto.set_cpu_utilization(0.5);
  const std::string cpu_only = proto.SerializeAsString();
  // Tag of field 1, wire type 1 (64-bit): 0x09.
  ASSERT_FALSE(cpu_only.empty());
  EXPECT_EQ(static_cast<unsigned char>(cpu_only[0]), 0x09);
  LoadReport report;
  report.application_utilization = 0.5;
  const std::string app = EncodeLoadReport(report);
  // Field 9, wire type 1: (9 << 3) | 1 = 0x49.
  EXPECT_EQ(static_cast<unsigned char>(app[0]), 0x49);
  report = {};
  report.rps_fractional = 2;
  // Field 6: 0x31.
  EXPECT_EQ(static_cast<unsigned char>(EncodeLoadReport(report)[0]), 0x31);
}

TEST(LoadReportTest, BadBytesAreIgnoredWithAWarning) {
  WarningCatcher catcher;
  // A length-delimited field (tag 0x42 = field 8) whose length runs past the end.
  EXPECT_FALSE(DecodeLoadReport(std::string("\x42\x7f\x01", 3)).has_value());
  ASSERT_EQ(catcher.warnings().size(), 1u);
  EXPECT_TRUE(absl::StrContains(catcher.warnings()[0], "endpoint-load-metrics-bin"))
      << catcher.warnings()[0];
  EXPECT_TRUE(absl::StrContains(catcher.warnings()[0], "not an OrcaLoadReport"));

  // A report with a negative rate is also refused (warnings are limited to one a second).
  LoadReport negative;
  negative.rps_fractional = -5;
  EndpointStats stats;
  const absl::Time now = absl::UnixEpoch() + absl::Hours(1);
  EXPECT_FALSE(RecordLoadReport(EncodeLoadReport(negative), stats, now));
  EXPECT_EQ(stats.ReadReportedWeight(now, absl::ZeroDuration(), 1.0), 0);
}

TEST(LoadReportTest, RecordLoadReportFeedsTheEndpointsWeight) {
  EndpointStats stats;
  const absl::Time now = absl::UnixEpoch() + absl::Hours(1);
  LoadReport report;
  report.rps_fractional = 100;
  report.cpu_utilization = 0.9;
  report.application_utilization = 0.5;  // preferred over CPU
  ASSERT_TRUE(RecordLoadReport(EncodeLoadReport(report), stats, now));
  EXPECT_DOUBLE_EQ(stats.ReadReportedWeight(now, absl::ZeroDuration(), 1.0), 200);
  report.application_utilization = 0;  // unset: CPU is used
  ASSERT_TRUE(RecordLoadReport(EncodeLoadReport(report), stats, now));
  EXPECT_NEAR(stats.ReadReportedWeight(now, absl::ZeroDuration(), 1.0), 111.1, 0.1);
}

TEST(LoadReporterTest, RatesInFlightAndNamedMetrics) {
  FakeClock clock;
  LoadReporter::Options options;
  options.clock = &clock;
  options.capacity = 4;
  LoadReporter reporter(options);
  for (int i = 0; i < 30; ++i) {
    reporter.OnCallStarted();
    reporter.OnCallFinished(/*failed=*/i % 10 == 0);
  }
  reporter.OnCallStarted();
  reporter.OnCallStarted();
  reporter.SetNamedMetric("queue", 3);
  clock.Advance(absl::Seconds(1));
  LoadReport report = reporter.Current();
  EXPECT_DOUBLE_EQ(report.rps_fractional, 30);
  EXPECT_DOUBLE_EQ(report.eps, 3);
  EXPECT_DOUBLE_EQ(report.application_utilization, 0.5);  // 2 in flight of 4
  EXPECT_EQ(report.named_metrics, (std::map<std::string, double>{{"queue", 3}}));
  reporter.SetApplicationUtilization(0.9);
  EXPECT_DOUBLE_EQ(reporter.Current().application_utilization, 0.9);
}

// A Greeter whose every answer carries the reporter's load in its trailers.
class ReportingGreeter final : public Greeter::Service {
 public:
  explicit ReportingGreeter(LoadReporter& reporter) : reporter_(reporter) {}
  grpc::Status SayHello(grpc::ServerContext* context, const HelloRequest*,
                        HelloReply* reply) override {
    reporter_.OnCallStarted();
    reply->set_message("hi");
    reporter_.AttachTo(*context);
    reporter_.OnCallFinished(false);
    return grpc::Status::OK;
  }

 private:
  LoadReporter& reporter_;
};

TEST(LoadReporterTest, TrailersOfARealCallCarryTheReport) {
  LoadReporter reporter({});
  reporter.SetApplicationUtilization(0.4);
  reporter.SetNamedMetric("slots", 2);
  ReportingGreeter greeter(reporter);
  grpc::ServerBuilder builder;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  builder.AddListeningPort("127.0.0.12:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&greeter);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  auto stub = Greeter::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.12:", port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  HelloRequest request;
  HelloReply reply;
  ASSERT_TRUE(stub->SayHello(&context, request, &reply).ok());
  const auto& trailers = context.GetServerTrailingMetadata();
  // gRPC C++ keeps the standard trailer to itself; the mirror carries the same bytes.
  EXPECT_EQ(trailers.count(kLoadReportTrailer), 0u);
  std::optional<absl::string_view> bytes = FindLoadReportTrailer(trailers);
  ASSERT_TRUE(bytes.has_value());
  std::optional<LoadReport> report = DecodeLoadReport(*bytes);
  ASSERT_TRUE(report.has_value());
  EXPECT_DOUBLE_EQ(report->application_utilization, 0.4);
  EXPECT_EQ(report->named_metrics.at("slots"), 2);
  server->Shutdown(std::chrono::system_clock::now());
}

}  // namespace
}  // namespace sluice::health
