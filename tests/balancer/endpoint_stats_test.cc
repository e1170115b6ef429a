#include "sluice/balancer/endpoint_stats.h"

#include <gtest/gtest.h>

#include <cmath>

#include "sluice/core/clock.h"

namespace sluice {
namespace {

constexpr double kMs = 1e6;  // nanoseconds per millisecond

TEST(PeakEwmaUpdateTest, SlowerSampleReplacesTheEstimateAtOnce) {
  EXPECT_DOUBLE_EQ(PeakEwmaUpdate(10 * kMs, 50 * kMs, absl::ZeroDuration(), absl::Seconds(10)),
                   50 * kMs);
  EXPECT_DOUBLE_EQ(PeakEwmaUpdate(10 * kMs, 50 * kMs, absl::Hours(1), absl::Seconds(10)), 50 * kMs);
}

TEST(PeakEwmaUpdateTest, FasterSampleAfterOneDecayTimeMovesItByOneMinusOneOverE) {
  const double got = PeakEwmaUpdate(100 * kMs, 10 * kMs, absl::Seconds(10), absl::Seconds(10));
  // 100 * e^-1 + 10 * (1 - e^-1) = 43.109 ms: it moved 1 - 1/e of the way from 100 to 10.
  const double expected = 100 * kMs * std::exp(-1.0) + 10 * kMs * (1 - std::exp(-1.0));
  EXPECT_NEAR(got, expected, 1.0);
  EXPECT_NEAR((100 * kMs - got) / (90 * kMs), 1 - 1 / std::exp(1.0), 1e-9);
}

TEST(PeakEwmaUpdateTest, WeightFollowsElapsedTime) {
  // Half a decay time: w = e^-0.5 = 0.60653.
  EXPECT_NEAR(PeakEwmaUpdate(100 * kMs, 0, absl::Seconds(5), absl::Seconds(10)),
              100 * kMs * 0.6065306597, 10.0);
  // No time passed: the sample has no weight.
  EXPECT_DOUBLE_EQ(PeakEwmaUpdate(100 * kMs, 10 * kMs, absl::ZeroDuration(), absl::Seconds(10)),
                   100 * kMs);
  // Time running backwards counts as none.
  EXPECT_DOUBLE_EQ(PeakEwmaUpdate(100 * kMs, 10 * kMs, absl::Seconds(-3), absl::Seconds(10)),
                   100 * kMs);
  // Long after, the estimate is the sample.
  EXPECT_NEAR(PeakEwmaUpdate(100 * kMs, 10 * kMs, absl::Hours(1), absl::Seconds(10)), 10 * kMs,
              1.0);
  // No decay time: no memory.
  EXPECT_DOUBLE_EQ(PeakEwmaUpdate(100 * kMs, 10 * kMs, absl::Seconds(1), absl::ZeroDuration()),
                   10 * kMs);
}

TEST(EndpointStatsTest, CountsCallsInFlightAndFailures) {
  FakeClock clock;
  EndpointStats stats;
  EXPECT_EQ(stats.in_flight(), 0);
  stats.OnCallStarted();
  stats.OnCallStarted();
  stats.OnCallStarted();
  EXPECT_EQ(stats.in_flight(), 3);
  stats.OnCallFinished(true, absl::Milliseconds(5), clock.Now());
  stats.OnCallFinished(false, absl::Milliseconds(5), clock.Now());
  EXPECT_EQ(stats.in_flight(), 1);
  EXPECT_EQ(stats.calls(), 2u);
  EXPECT_EQ(stats.failures(), 1u);
}

TEST(EndpointStatsTest, NoEstimateUntilTheFirstSuccessThenTheSampleItself) {
  FakeClock clock;
  EndpointStats stats;
  EXPECT_FALSE(stats.has_estimate());
  EXPECT_EQ(stats.ReadEstimate(clock.Now(), absl::Milliseconds(30)), absl::Milliseconds(30));
  // A failure alone sets nothing: a fast error must not pass for a fast endpoint.
  stats.OnCallStarted();
  stats.OnCallFinished(false, absl::Milliseconds(1), clock.Now());
  EXPECT_FALSE(stats.has_estimate());
  stats.OnCallStarted();
  stats.OnCallFinished(true, absl::Milliseconds(12), clock.Now());
  EXPECT_TRUE(stats.has_estimate());
  EXPECT_EQ(stats.ReadEstimate(clock.Now(), absl::Milliseconds(30)), absl::Milliseconds(12));
}

TEST(EndpointStatsTest, PeakEwmaWithAFakeClockMatchesHandComputedValues) {
  FakeClock clock;
  EndpointStats stats(absl::Seconds(10));
  auto finish = [&](bool ok, absl::Duration latency) {
    stats.OnCallStarted();
    stats.OnCallFinished(ok, latency, clock.Now());
  };
  auto read_ms = [&] {
    return absl::ToDoubleMilliseconds(stats.ReadEstimate(clock.Now(), absl::Milliseconds(30)));
  };
  finish(true, absl::Milliseconds(20));
  EXPECT_NEAR(read_ms(), 20.0, 1e-6);
  // A slow call: the estimate jumps to it at once.
  clock.Advance(absl::Milliseconds(1));
  finish(true, absl::Milliseconds(100));
  EXPECT_NEAR(read_ms(), 100.0, 1e-6);
  // One decay time later a 10 ms call: 100/e + 10(1 - 1/e) = 43.109 ms.
  clock.Advance(absl::Seconds(10));
  finish(true, absl::Milliseconds(10));
  EXPECT_NEAR(read_ms(), 43.1091, 1e-3);
  // Reading decays toward 0 with time and does not change the stored state:
  // after 5 s more, 43.109 * e^-0.5 = 26.147 ms, read twice.
  clock.Advance(absl::Seconds(5));
  EXPECT_NEAR(read_ms(), 26.1470, 1e-3);
  EXPECT_NEAR(read_ms(), 26.1470, 1e-3);
  // A fast failure does not lower it...
  finish(false, absl::Milliseconds(1));
  EXPECT_NEAR(read_ms(), 26.1470, 1e-3);
  // ...a slow failure raises it.
  finish(false, absl::Milliseconds(500));
  EXPECT_NEAR(read_ms(), 500.0, 1e-6);
}

TEST(EndpointStatsTest, DecayIsConfigurable) {
  FakeClock clock;
  EndpointStats stats;
  EXPECT_EQ(stats.ewma_decay(), absl::Seconds(10));
  stats.set_ewma_decay(absl::Seconds(1));
  EXPECT_EQ(stats.ewma_decay(), absl::Seconds(1));
  stats.OnCallStarted();
  stats.OnCallFinished(true, absl::Milliseconds(100), clock.Now());
  clock.Advance(absl::Seconds(1));
  // One (1 s) decay time of silence: 100 / e.
  EXPECT_NEAR(absl::ToDoubleMilliseconds(stats.ReadEstimate(clock.Now(), absl::ZeroDuration())),
              100 / std::exp(1.0), 1e-3);
}

TEST(EndpointStatsTest, ALateReportDoesNotRewindTheUpdateTime) {
  FakeClock clock;
  EndpointStats stats;
  const absl::Time start = clock.Now();
  stats.OnCallStarted();
  stats.OnCallFinished(true, absl::Milliseconds(100), start + absl::Seconds(10));
  // Reported with an older timestamp (another thread's clock read): elapsed counts as 0.
  stats.OnCallStarted();
  stats.OnCallFinished(true, absl::Milliseconds(10), start);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(
                  stats.ReadEstimate(start + absl::Seconds(10), absl::ZeroDuration())),
              100.0, 1e-6);
}

}  // namespace
}  // namespace sluice
