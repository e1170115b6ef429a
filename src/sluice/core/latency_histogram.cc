#include "sluice/core/latency_histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace sluice {

size_t LatencyHistogram::BucketOf(uint64_t nanos) {
  if (nanos < static_cast<uint64_t>(kExactBelow)) return static_cast<size_t>(nanos);
  const int exponent = std::bit_width(nanos) - 1;  // >= kFirstExponent
  const uint64_t sub = (nanos >> (exponent - kSubBucketBits)) & ((1u << kSubBucketBits) - 1);
  return kExactBelow + static_cast<size_t>(exponent - kFirstExponent) * (1u << kSubBucketBits) +
         static_cast<size_t>(sub);
}

uint64_t LatencyHistogram::BucketLower(size_t bucket) {
  if (bucket < static_cast<size_t>(kExactBelow)) return bucket;
  const size_t offset = bucket - kExactBelow;
  const int exponent = kFirstExponent + static_cast<int>(offset >> kSubBucketBits);
  const uint64_t sub = offset & ((1u << kSubBucketBits) - 1);
  return (uint64_t{1} << exponent) + (sub << (exponent - kSubBucketBits));
}

uint64_t LatencyHistogram::BucketUpper(size_t bucket) {
  if (bucket < static_cast<size_t>(kExactBelow)) return bucket;
  const int exponent = kFirstExponent + static_cast<int>((bucket - kExactBelow) >> kSubBucketBits);
  return BucketLower(bucket) + (uint64_t{1} << (exponent - kSubBucketBits)) - 1;
}

void LatencyHistogram::Record(absl::Duration latency) {
  const int64_t ns = std::max<int64_t>(0, absl::ToInt64Nanoseconds(latency));
  buckets_[BucketOf(static_cast<uint64_t>(ns))].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
  int64_t seen = max_ns_.load(std::memory_order_relaxed);
  while (ns > seen && !max_ns_.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
  }
}

absl::Duration LatencyHistogram::mean() const {
  const uint64_t n = count();
  if (n == 0) return absl::ZeroDuration();
  return absl::Nanoseconds(static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) /
                           static_cast<double>(n));
}

absl::Duration LatencyHistogram::Percentile(double quantile) const {
  const uint64_t n = count();
  if (n == 0) return absl::ZeroDuration();
  quantile = std::clamp(quantile, 0.0, 1.0);
  // The rank of the sample asked for, 1-based.
  const uint64_t rank =
      std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(quantile * static_cast<double>(n))));
  if (rank >= n) return max();
  uint64_t seen = 0;
  for (size_t b = 0; b < kBuckets; ++b) {
    seen += buckets_[b].load(std::memory_order_relaxed);
    if (seen >= rank) {
      const uint64_t mid = BucketLower(b) + (BucketUpper(b) - BucketLower(b)) / 2;
      return std::min(absl::Nanoseconds(static_cast<int64_t>(mid)), max());
    }
  }
  return max();
}

}  // namespace sluice
