#include "sluice/core/random.h"

#include <gtest/gtest.h>

#include "sluice/core/clock.h"

namespace sluice {
namespace {

TEST(SeededRandomTest, SameSeedSameSequenceDifferentSeedDifferent) {
  SeededRandom a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.Next();
    EXPECT_EQ(x, b.Next());
    differs |= x != c.Next();
  }
  EXPECT_TRUE(differs);
}

TEST(SeededRandomTest, UniformStaysInRangeAndIsRoughlyFlat) {
  SeededRandom random(7);
  constexpr int kBuckets = 10, kDraws = 100000;
  int counts[kBuckets] = {};
  for (int i = 0; i < kDraws; ++i) {
    uint64_t v = random.Uniform(kBuckets);
    ASSERT_LT(v, static_cast<uint64_t>(kBuckets));
    ++counts[v];
  }
  // Each bucket expects 10,000; 5 standard deviations is about +-475.
  for (int count : counts) EXPECT_NEAR(count, kDraws / kBuckets, 500);
  for (int i = 0; i < 1000; ++i) {
    double d = random.UniformDouble();
    ASSERT_GE(d, 0.0);
    ASSERT_LT(d, 1.0);
  }
}

TEST(FakeClockTest, MovesOnlyWhenAdvanced) {
  FakeClock clock;
  absl::Time start = clock.Now();
  EXPECT_EQ(clock.Now(), start);
  clock.Advance(absl::Milliseconds(250));
  EXPECT_EQ(clock.Now() - start, absl::Milliseconds(250));
}

TEST(SystemClockTest, IsMonotonic) {
  SystemClock& clock = SystemClock::Instance();
  absl::Time a = clock.Now();
  absl::Time b = clock.Now();
  EXPECT_LE(a, b);
}

}  // namespace
}  // namespace sluice
