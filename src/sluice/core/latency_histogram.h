#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace sluice {

// A histogram of durations with fixed memory and about 1.6% relative precision, for load
// generators and metrics that see millions of samples: exact below 128 ns, then 64 buckets per
// power of two. Record() is one relaxed atomic add per counter, so any thread records without a
// lock; readers see a consistent-enough view once recording threads are done.
class LatencyHistogram {
 public:
  LatencyHistogram() = default;
  LatencyHistogram(const LatencyHistogram&) = delete;
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  void Record(absl::Duration latency);

  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  absl::Duration max() const { return absl::Nanoseconds(max_ns_.load(std::memory_order_relaxed)); }
  absl::Duration mean() const;
  // The smallest recorded value v such that at least `quantile` of the samples are <= v, within
  // the bucket precision (the bucket's midpoint; max() for the top sample). Zero when empty.
  // quantile in [0, 1].
  absl::Duration Percentile(double quantile) const;

  // Bucket layout, exposed for tests.
  static constexpr int kSubBucketBits = 6;
  static constexpr int kExactBelow = 128;
  static size_t BucketOf(uint64_t nanos);
  // [lower, upper] nanoseconds of a bucket.
  static uint64_t BucketLower(size_t bucket);
  static uint64_t BucketUpper(size_t bucket);

 private:
  static constexpr int kFirstExponent = 7;  // 2^7 = kExactBelow
  static constexpr size_t kBuckets =
      kExactBelow + (64 - kFirstExponent) * (size_t{1} << kSubBucketBits);

  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
  std::atomic<int64_t> max_ns_{0};
};

}  // namespace sluice
