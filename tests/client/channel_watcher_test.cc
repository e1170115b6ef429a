#include "sluice/client/channel_watcher.h"

#include <gtest/gtest.h>

#include <mutex>
#include <vector>

#include "greeter_backend.h"
#include "process.h"
#include "sluice/client/balancer.h"

namespace sluice {
namespace {

using testing::GreeterBackend;
using testing::WaitFor;

// Records transport reports; counts the ones that arrive after Close().
class RecordingReporter final : public ReadinessReporter {
 public:
  void ReportTransport(const std::shared_ptr<EndpointHandle>& /*endpoint*/,
                       TransportState state) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) ++after_close_;
    last_ = state;
  }
  void ReportHealth(const std::shared_ptr<EndpointHandle>& /*endpoint*/,
                    HealthState /*state*/) override {}

  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  TransportState last() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_;
  }
  int after_close() const {
    std::lock_guard<std::mutex> lock(mu_);
    return after_close_;
  }

 private:
  mutable std::mutex mu_;
  bool closed_ = false;
  int after_close_ = 0;
  TransportState last_ = TransportState::kIdle;
};

// A client::Backend with its own channel, as the balancer makes one.
std::shared_ptr<client::Backend> BackendFor(const std::string& address) {
  auto [channel, c_channel] = client::MakeEndpointChannel(address, client::BalancerOptions{});
  Endpoint endpoint;
  endpoint.address = address;
  return std::make_shared<client::Backend>(endpoint, std::move(channel), c_channel,
                                           std::make_shared<EndpointStats>());
}

TEST(ChannelConnectivityWatcherTest, ReportsAWatchedChannelReadyAndThenItsLoss) {
  auto server = GreeterBackend::Start("127.0.0.11", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  auto watcher = std::make_unique<client::ChannelConnectivityWatcher>();
  RecordingReporter reporter;
  auto backend = BackendFor((*server)->address());
  watcher->Watch(backend, reporter);
  ASSERT_TRUE(WaitFor([&] { return reporter.last() == TransportState::kReady; },
                      absl::Seconds(10)));
  (*server)->Shutdown(absl::ZeroDuration());
  EXPECT_TRUE(WaitFor([&] { return reporter.last() != TransportState::kReady; },
                      absl::Seconds(10)));
  watcher.reset();
}

TEST(ChannelConnectivityWatcherTest, GoesAtOnceAndWatchesEndingLaterReportNothing) {
  auto server = GreeterBackend::Start("127.0.0.11", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  auto watcher = std::make_unique<client::ChannelConnectivityWatcher>();
  RecordingReporter reporter;
  std::vector<std::shared_ptr<client::Backend>> backends;
  for (int i = 0; i < 3; ++i) {
    backends.push_back(BackendFor((*server)->address()));
    watcher->Watch(backends.back(), reporter);
  }
  ASSERT_TRUE(WaitFor([&] { return reporter.last() == TransportState::kReady; },
                      absl::Seconds(10)));
  // A watch cannot be cancelled and lasts up to a second; the watcher must not wait for it (a
  // balancer's destruction would take that long). The bound stays under a second when scaled.
  const absl::Time before = absl::Now();
  watcher.reset();
  EXPECT_LT(absl::Now() - before, testing::Scaled(absl::Milliseconds(200)));
  reporter.Close();
  // The watches still pending now end: by the server going away (a state change) and, for the
  // channel dropped here, at their deadline. None may report to the stopped watcher's reporter.
  backends.pop_back();
  (*server)->Shutdown(absl::ZeroDuration());
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_EQ(reporter.after_close(), 0);
}

}  // namespace
}  // namespace sluice
