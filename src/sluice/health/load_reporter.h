#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "absl/time/time.h"
#include "sluice/core/clock.h"
#include "sluice/health/load_report.h"

namespace sluice::health {

// Server side of ORCA per-call reports: measures this backend's load and attaches it to each
// response's trailers (kLoadReportTrailer), so callers running weighted_round_robin weigh it.
// Thread-safe; one per server process.
//
//   rps_fractional, eps      calls (and failed calls) finished per second over the last window
//   cpu_utilization          this process's CPU time over the last window / (wall time x cores)
//   application_utilization  the value set with SetApplicationUtilization, else calls in
//                            flight / capacity when a capacity is given, else unset
//   named_metrics            whatever the application sets
class LoadReporter {
 public:
  struct Options {
    // How long rates and CPU use are averaged over.
    absl::Duration window = absl::Seconds(1);
    // Calls in flight that make the backend fully busy; 0: no application_utilization from it.
    int64_t capacity = 0;
    Clock* clock = &SystemClock::Instance();
    // Also attach the report as kLoadReportMirrorTrailer, for gRPC C++ callers (the client
    // library), which cannot see the standard trailer.
    bool mirror_for_grpc_cpp_callers = true;
  };

  explicit LoadReporter(Options options);

  void OnCallStarted();
  void OnCallFinished(bool failed);

  // A fixed application_utilization (>= 0); a negative value goes back to the default.
  void SetApplicationUtilization(double value);
  void SetNamedMetric(const std::string& name, double value);

  // The report as of now.
  LoadReport Current();
  // Adds the current report to the call's trailers (and its mirror). Call before the call
  // finishes.
  void AttachTo(grpc::ServerContextBase& context);

 private:
  // Closes the window if it is over: rates and CPU use from its counts.
  void RollLocked(absl::Time now);

  const Options options_;
  std::mutex mu_;
  int64_t in_flight_ = 0;
  absl::Time window_start_;
  int64_t window_calls_ = 0;
  int64_t window_errors_ = 0;
  double window_start_cpu_seconds_ = 0;
  double rps_ = 0;
  double eps_ = 0;
  double cpu_utilization_ = 0;
  double fixed_application_utilization_ = -1;
  std::map<std::string, double> named_metrics_;
};

// Process CPU time (user + system) in seconds.
double ProcessCpuSeconds();

}  // namespace sluice::health
