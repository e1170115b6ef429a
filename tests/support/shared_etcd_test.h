// A test fixture whose suite shares one real etcd: started before the suite's first test and
// stopped after its last, so each test pays for a key prefix, not for an etcd.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "etcd_process.h"

namespace sluice::testing {

class SharedEtcdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    etcd_ = new EtcdProcess();
    const absl::Status status = etcd_->Start();
    ASSERT_TRUE(status.ok()) << status;
  }
  static void TearDownTestSuite() {
    delete etcd_;
    etcd_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(etcd_, nullptr);
    ASSERT_TRUE(etcd_->running());
  }
  // "<base><test name>": a prefix no other test of the suite writes under.
  static std::string TestPrefix(const std::string& base) {
    return absl::StrCat(base, ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  inline static EtcdProcess* etcd_ = nullptr;
};

}  // namespace sluice::testing
