#include "sluice/health/load_reporter.h"

#include <sys/resource.h>

#include <algorithm>
#include <thread>

namespace sluice::health {

double ProcessCpuSeconds() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

LoadReporter::LoadReporter(Options options)
    : options_(options),
      window_start_(options_.clock->Now()),
      window_start_cpu_seconds_(ProcessCpuSeconds()) {}

void LoadReporter::RollLocked(absl::Time now) {
  const absl::Duration elapsed = now - window_start_;
  if (elapsed < options_.window) return;
  const double seconds = absl::ToDoubleSeconds(elapsed);
  rps_ = static_cast<double>(window_calls_) / seconds;
  eps_ = static_cast<double>(window_errors_) / seconds;
  const double cpu = ProcessCpuSeconds();
  const double cores = std::max(1u, std::thread::hardware_concurrency());
  cpu_utilization_ = std::max(0.0, cpu - window_start_cpu_seconds_) / (seconds * cores);
  window_start_ = now;
  window_start_cpu_seconds_ = cpu;
  window_calls_ = 0;
  window_errors_ = 0;
}

void LoadReporter::OnCallStarted() {
  std::lock_guard<std::mutex> lock(mu_);
  ++in_flight_;
}

void LoadReporter::OnCallFinished(bool failed) {
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_ = std::max<int64_t>(0, in_flight_ - 1);
  ++window_calls_;
  if (failed) ++window_errors_;
  RollLocked(options_.clock->Now());
}

void LoadReporter::SetApplicationUtilization(double value) {
  std::lock_guard<std::mutex> lock(mu_);
  fixed_application_utilization_ = value;
}

void LoadReporter::SetNamedMetric(const std::string& name, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  named_metrics_[name] = value;
}

LoadReport LoadReporter::Current() {
  std::lock_guard<std::mutex> lock(mu_);
  RollLocked(options_.clock->Now());
  LoadReport report;
  report.rps_fractional = rps_;
  report.eps = eps_;
  report.cpu_utilization = cpu_utilization_;
  if (fixed_application_utilization_ >= 0) {
    report.application_utilization = fixed_application_utilization_;
  } else if (options_.capacity > 0) {
    report.application_utilization =
        static_cast<double>(in_flight_) / static_cast<double>(options_.capacity);
  }
  report.named_metrics = named_metrics_;
  return report;
}

void LoadReporter::AttachTo(grpc::ServerContextBase& context) {
  const std::string bytes = EncodeLoadReport(Current());
  context.AddTrailingMetadata(kLoadReportTrailer, bytes);
  if (options_.mirror_for_grpc_cpp_callers) {
    context.AddTrailingMetadata(kLoadReportMirrorTrailer, bytes);
  }
}

}  // namespace sluice::health
