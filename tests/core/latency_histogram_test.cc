#include "sluice/core/latency_histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>
#include <vector>

namespace sluice {
namespace {

TEST(LatencyHistogramTest, BucketsCoverEveryValueWithinTwoPercent) {
  for (uint64_t v : {0ull, 1ull, 127ull, 128ull, 129ull, 1000ull, 123456ull, 999999999ull,
                     (1ull << 40) + 12345ull, ~0ull >> 1}) {
    const size_t b = LatencyHistogram::BucketOf(v);
    EXPECT_LE(LatencyHistogram::BucketLower(b), v) << v;
    EXPECT_GE(LatencyHistogram::BucketUpper(b), v) << v;
    const double width = static_cast<double>(LatencyHistogram::BucketUpper(b) -
                                             LatencyHistogram::BucketLower(b));
    EXPECT_LE(width, 0.016 * static_cast<double>(std::max<uint64_t>(v, 1))) << v;
  }
  // Buckets are contiguous: the next bucket starts right after this one ends.
  for (size_t b = 0; b < 2000; ++b) {
    EXPECT_EQ(LatencyHistogram::BucketUpper(b) + 1, LatencyHistogram::BucketLower(b + 1)) << b;
  }
}

TEST(LatencyHistogramTest, PercentilesMatchASortedSampleWithinPrecision) {
  std::mt19937_64 gen(7);
  std::lognormal_distribution<double> dist(13.0, 1.0);  // around half a millisecond
  std::vector<int64_t> samples;
  LatencyHistogram histogram;
  for (int i = 0; i < 100000; ++i) {
    const int64_t ns = static_cast<int64_t>(dist(gen));
    samples.push_back(ns);
    histogram.Record(absl::Nanoseconds(ns));
  }
  std::sort(samples.begin(), samples.end());
  EXPECT_EQ(histogram.count(), samples.size());
  EXPECT_EQ(histogram.max(), absl::Nanoseconds(samples.back()));
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    const double exact = static_cast<double>(samples[static_cast<size_t>(q * 100000) - 1]);
    const double got = absl::ToDoubleNanoseconds(histogram.Percentile(q));
    EXPECT_NEAR(got, exact, exact * 0.02) << "quantile " << q;
  }
  EXPECT_EQ(histogram.Percentile(1.0), histogram.max());
}

TEST(LatencyHistogramTest, EmptyAndConcurrentRecording) {
  LatencyHistogram histogram;
  EXPECT_EQ(histogram.Percentile(0.5), absl::ZeroDuration());
  EXPECT_EQ(histogram.mean(), absl::ZeroDuration());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) histogram.Record(absl::Microseconds(t + 1));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(histogram.count(), 40000u);
  EXPECT_EQ(histogram.max(), absl::Microseconds(4));
  EXPECT_EQ(histogram.mean(), absl::Nanoseconds(2500));
}

}  // namespace
}  // namespace sluice
