// What the etcd client's test files share: one etcd for a suite, a client factory and a
// recorder of what a watch delivers.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "etcd_process.h"
#include "process.h"
#include "shared_etcd_test.h"
#include "sluice/etcd/etcd_client.h"

namespace sluice::etcd::test_support {

// Collects what a watch delivers, for the test thread to wait on.
class WatchRecorder {
 public:
  std::function<void(const WatchUpdate&)> OnUpdate() {
    return [this](const WatchUpdate& update) {
      std::lock_guard<std::mutex> lock(mu_);
      for (const WatchEvent& event : update.events) events_.push_back(event);
      ++updates_;
    };
  }
  std::function<void(absl::Status, int64_t)> OnEnd() {
    return [this](absl::Status status, int64_t compact_revision) {
      std::lock_guard<std::mutex> lock(mu_);
      ++ends_;
      end_status_ = status;
      compact_revision_ = compact_revision;
    };
  }
  std::vector<WatchEvent> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  size_t event_count() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
  }
  int ends() {
    std::lock_guard<std::mutex> lock(mu_);
    return ends_;
  }
  absl::Status end_status() {
    std::lock_guard<std::mutex> lock(mu_);
    return end_status_;
  }
  int64_t compact_revision() {
    std::lock_guard<std::mutex> lock(mu_);
    return compact_revision_;
  }

 private:
  std::mutex mu_;
  std::vector<WatchEvent> events_;
  int updates_ = 0;
  int ends_ = 0;
  absl::Status end_status_;
  int64_t compact_revision_ = 0;
};

// A loopback address nothing listens on: a dead member.
inline std::string DeadEndpoint() {
  return absl::StrCat("127.0.0.1:", ::sluice::testing::FreePort());
}

inline std::unique_ptr<EtcdClient> MakeClient(std::vector<std::string> endpoints,
                                              absl::Duration timeout = absl::Seconds(5)) {
  EtcdClientOptions options;
  options.endpoints = std::move(endpoints);
  options.call_timeout = timeout;
  auto client = EtcdClient::Create(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

// One etcd for the whole suite; each test uses its own key prefix.
class EtcdClientTest : public ::sluice::testing::SharedEtcdTest {
 protected:
  void SetUp() override {
    SharedEtcdTest::SetUp();
    if (HasFatalFailure()) return;
    client_ = MakeClient({etcd_->endpoint()});
    ASSERT_NE(client_, nullptr);
    prefix_ = TestPrefix("test/") + "/";
  }

  std::unique_ptr<EtcdClient> client_;
  std::string prefix_;
};

}  // namespace sluice::etcd::test_support
