#include "sluice/core/open_files.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

namespace sluice {
namespace {

// Sets the soft limit for the test and restores the original limit afterwards.
class OpenFilesTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original_), 0); }
  void TearDown() override { setrlimit(RLIMIT_NOFILE, &original_); }
  rlimit original_{};
};

TEST_F(OpenFilesTest, RaisesTheSoftLimitToTheHardLimit) {
  if (original_.rlim_max != RLIM_INFINITY) {
    ASSERT_GT(original_.rlim_max, 1024u);
  }
  rlimit low = original_;
  low.rlim_cur = 1024;  // systemd's default soft limit
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);

  auto raised = RaiseOpenFilesLimit();
  ASSERT_TRUE(raised.ok()) << raised.status();
  EXPECT_EQ(raised->soft_before, 1024u);
  rlimit now{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(now.rlim_cur, raised->soft);
  EXPECT_GT(raised->soft, 1024u);
  if (original_.rlim_max != RLIM_INFINITY) {
    EXPECT_EQ(raised->soft, original_.rlim_max);
  }
  EXPECT_EQ(now.rlim_max, original_.rlim_max);  // the hard limit is left alone
}

TEST_F(OpenFilesTest, AlreadyAtTheHardLimitIsLeftAsItIs) {
  ASSERT_TRUE(RaiseOpenFilesLimit().ok());
  auto again = RaiseOpenFilesLimit();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->soft, again->soft_before);
}

TEST(ConnectionCapacityTest, KeepsFilesForListenersAndBackends) {
  EXPECT_EQ(ConnectionCapacity(1024), 1024 - kReservedFileDescriptors);
  EXPECT_EQ(ConnectionCapacity(10), 0u);
}

}  // namespace
}  // namespace sluice
