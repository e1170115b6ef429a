#pragma once

#include <atomic>
#include <cstdint>
#include <limits>

#include "absl/time/time.h"

namespace sluice {

// Peak-EWMA (Linkerd / Finagle): a latency estimate that jumps up to a slower sample at once and
// drifts down toward faster samples with time constant `decay`. Pure, for tests and callers.
//   sample > estimate: estimate = sample
//   otherwise:         w = exp(-elapsed_since_last / decay); estimate = estimate*w + sample*(1-w)
// A negative elapsed counts as 0; a decay <= 0 keeps no memory (estimate = sample).
double PeakEwmaUpdate(double estimate_ns, double sample_ns, absl::Duration elapsed_since_last,
                      absl::Duration decay);

// exp(-elapsed_ns / decay_ns), clamped to [0, 1]: how much of an old estimate survives.
double EwmaDecayFactor(int64_t elapsed_ns, int64_t decay_ns);

// What the data plane learns about one endpoint, shared by every picker generation built over it
// (held by shared_ptr, so an old picker still in use keeps it alive) and by every call to it.
// Atomics only: any thread calls anything, nothing blocks. Callers report each call:
// OnCallStarted() when the call is sent to the endpoint a picker chose, OnCallFinished() once
// when it ends. Pickers only read.
//
// The latency estimate is peak-EWMA over call latencies. Between samples it decays toward 0 when
// read (ReadEstimateNanos), treating silence as fast answers, so an endpoint that was slow once
// is probed again later instead of being shunned forever (Linkerd's behaviour). Until the first
// successful call there is no estimate and readers use their own default.
//
// The estimate and its update time are two atomics, not one: a reader racing an update may decay
// a fresh estimate by a stale interval. The error is bounded by one update interval and harmless
// to a heuristic, and it keeps both sides lock-free.
class alignas(64) EndpointStats {
 public:
  static constexpr absl::Duration kDefaultEwmaDecay = absl::Seconds(10);

  explicit EndpointStats(absl::Duration ewma_decay = kDefaultEwmaDecay);
  EndpointStats(const EndpointStats&) = delete;
  EndpointStats& operator=(const EndpointStats&) = delete;

  void OnCallStarted() { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  // `latency` is the time from OnCallStarted to the end of the call; `now` the clock at the end.
  // A failed call only ever raises the estimate: an endpoint that fails fast must not look fast.
  void OnCallFinished(bool success, absl::Duration latency, absl::Time now);

  // Calls started and not yet finished (never negative).
  int64_t in_flight() const {
    const int64_t n = in_flight_.load(std::memory_order_relaxed);
    return n > 0 ? n : 0;
  }
  uint64_t calls() const { return calls_.load(std::memory_order_relaxed); }
  uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }

  // Whether the endpoint has answered any call (success or failure) and not for `stale_ns` or
  // more as of `now_ns` (monotonic Unix nanoseconds): its latency estimate is old news.
  bool AnswerIsStale(int64_t now_ns, int64_t stale_ns) const {
    const int64_t last = last_answer_ns_.load(std::memory_order_relaxed);
    return last != kNoSample && now_ns - last >= stale_ns;
  }
  // Rations probes of an endpoint that has calls in flight yet has not answered for a while (a
  // long-lived stream, or a call stuck on it), so that one such call does not keep it out of
  // the picks for good: the first ask starts the period, then true once `every_ns` has passed
  // since the period started or the last ClaimProbe. An answer ends the period.
  bool ProbeDue(int64_t now_ns, int64_t every_ns) const {
    int64_t start = probe_clock_ns_.load(std::memory_order_relaxed);
    if (start == kNoSample) {
      probe_clock_ns_.compare_exchange_strong(start, now_ns, std::memory_order_relaxed);
      return false;
    }
    return now_ns - start >= every_ns;
  }
  void ClaimProbe(int64_t now_ns) const {
    probe_clock_ns_.store(now_ns, std::memory_order_relaxed);
  }

  // A successful answer after this long a silence replaces the latency estimate instead of
  // blending into it (peak_ewma sets it from its probe_after): the old estimate is stale.
  void set_replace_after(absl::Duration silence) {
    replace_after_ns_.store(absl::ToInt64Nanoseconds(silence), std::memory_order_relaxed);
  }

  // The peak-EWMA estimate decayed to `now_ns` (Unix nanoseconds of the monotonic clock), or
  // `fallback_ns` when no call has succeeded yet. The hot path of peak_ewma's picker.
  double ReadEstimateNanos(int64_t now_ns, double fallback_ns) const;
  absl::Duration ReadEstimate(absl::Time now, absl::Duration fallback) const;
  bool has_estimate() const { return last_update_ns_.load(std::memory_order_acquire) != kNoSample; }

  // Server-reported load (ORCA reports, gRFC A51), for weighted_round_robin's weights as in
  // gRFC A58. A report counts only with qps > 0 and utilization > 0; others are ignored. A
  // report arriving `report_expiration` or more after the previous one (or the first) starts a
  // new run of continuous reports.
  void OnLoadReport(double qps, double eps, double utilization, absl::Time now);
  // qps / (utilization + error_penalty * eps / qps) from the latest report, or 0 when there is
  // none to use: no report yet, the latest older than the expiration, or the current run of
  // reports younger than `blackout` (weights settle before they steer calls).
  double ReadReportedWeight(absl::Time now, absl::Duration blackout, double error_penalty) const;
  // How long a report stays usable. weighted_round_robin sets it from its config.
  void set_report_expiration(absl::Duration expiration) {
    report_expiration_ns_.store(absl::ToInt64Nanoseconds(expiration), std::memory_order_relaxed);
  }

  // The EWMA time constant. The peak_ewma policy sets it from its config when it builds a
  // picker, so its config governs both the updates here and its reads.
  void set_ewma_decay(absl::Duration decay);
  absl::Duration ewma_decay() const {
    return absl::Nanoseconds(decay_ns_.load(std::memory_order_relaxed));
  }

 private:
  static constexpr int64_t kNoSample = std::numeric_limits<int64_t>::min();

  std::atomic<int64_t> in_flight_{0};
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<double> estimate_ns_{0.0};
  std::atomic<int64_t> last_update_ns_{kNoSample};
  std::atomic<int64_t> decay_ns_;
  std::atomic<int64_t> last_answer_ns_{kNoSample};  // any outcome
  std::atomic<int64_t> replace_after_ns_{std::numeric_limits<int64_t>::max()};
  mutable std::atomic<int64_t> probe_clock_ns_{kNoSample};  // see ProbeDue

  // The latest usable load report. Separate atomics: a reader racing a report may mix two
  // reports' numbers, harmless for a weight that is recomputed every update period.
  std::atomic<double> report_qps_{0.0};
  std::atomic<double> report_eps_{0.0};
  std::atomic<double> report_utilization_{0.0};
  std::atomic<int64_t> report_last_ns_{kNoSample};
  std::atomic<int64_t> report_run_start_ns_{kNoSample};
  std::atomic<int64_t> report_expiration_ns_{absl::ToInt64Nanoseconds(absl::Minutes(3))};
};

}  // namespace sluice
