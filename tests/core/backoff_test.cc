#include "sluice/core/backoff.h"

#include <gtest/gtest.h>

#include "sluice/core/random.h"

namespace sluice {
namespace {

TEST(BackoffTest, GrowsByTheMultiplierUpToMaxAndResets) {
  Backoff backoff({.initial = absl::Milliseconds(100),
                   .multiplier = 3.0,
                   .max = absl::Seconds(1),
                   .jitter = 0.0});
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(100));
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(300));
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(900));
  EXPECT_EQ(backoff.Next(), absl::Seconds(1));
  EXPECT_EQ(backoff.Next(), absl::Seconds(1));
  EXPECT_EQ(backoff.waits(), 5);
  backoff.Reset();
  EXPECT_EQ(backoff.waits(), 0);
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(100));
}

TEST(BackoffTest, JitterStaysWithinItsBandAndFollowsTheSeed) {
  const BackoffOptions options{
      .initial = absl::Seconds(1), .multiplier = 1.0, .max = absl::Seconds(1), .jitter = 0.2};
  SeededRandom random_a(11), random_b(11);
  Backoff a(options, &random_a), b(options, &random_b);
  bool varied = false;
  absl::Duration first = a.Next();
  EXPECT_EQ(first, b.Next());
  for (int i = 0; i < 1000; ++i) {
    const absl::Duration wait = a.Next();
    ASSERT_EQ(wait, b.Next());
    ASSERT_GE(wait, absl::Milliseconds(800));
    ASSERT_LT(wait, absl::Milliseconds(1200));
    varied |= wait != first;
  }
  EXPECT_TRUE(varied);
}

TEST(BackoffTest, NoRandomMeansNoJitter) {
  Backoff backoff({.initial = absl::Milliseconds(10), .jitter = 0.5});
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(10));
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(20));
}

TEST(BackoffTest, ValidationNamesTheOwnerAndTheField) {
  EXPECT_TRUE(ValidateBackoff(BackoffOptions{}, "x").ok());
  absl::Status bad = ValidateBackoff({.initial = absl::Seconds(3), .max = absl::Seconds(1)},
                                     "registrar retry backoff");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("registrar retry backoff"), std::string::npos);
  EXPECT_NE(bad.message().find("initial"), std::string::npos);
  EXPECT_FALSE(ValidateBackoff({.multiplier = 0.5}, "x").ok());
  EXPECT_FALSE(ValidateBackoff({.jitter = 1.0}, "x").ok());
  EXPECT_FALSE(ValidateBackoff({.initial = absl::ZeroDuration()}, "x").ok());
}

}  // namespace
}  // namespace sluice
