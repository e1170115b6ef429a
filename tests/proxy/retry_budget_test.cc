// The retry budget binds in `sluice proxy`: with every backend failing, retries stay a bounded
// share of the calls instead of multiplying them by --max-attempts. Real Greeter backends that
// answer UNAVAILABLE, a real proxy process, real gRPC clients.
#include <gtest/gtest.h>

#include <condition_variable>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "greeter_backend.h"
#include "helloworld.grpc.pb.h"
#include "proxy_process.h"

namespace sluice::testing {
namespace {

constexpr int kCalls = 1000;
constexpr int kInFlight = 50;

struct FailingBackends {
  std::vector<std::unique_ptr<GreeterBackend>> backends;
  std::string target;

  FailingBackends() {
    std::vector<std::string> addresses;
    for (int i = 0; i < 3; ++i) {
      auto backend = GreeterBackend::Start(absl::StrCat("127.0.0.", 41 + i));
      EXPECT_TRUE(backend.ok()) << backend.status();
      if (!backend.ok()) return;
      // A little delay keeps many calls in flight at once, as under real load.
      (*backend)->set_delay(absl::Milliseconds(2));
      (*backend)->set_failure(grpc::StatusCode::UNAVAILABLE);
      addresses.push_back((*backend)->address());
      backends.push_back(std::move(*backend));
    }
    target = "static://" + absl::StrJoin(addresses, ",");
  }
  int64_t Attempts() const {
    int64_t total = 0;
    for (const auto& b : backends) total += b->calls();
    return total;
  }
};

// kCalls SayHello calls through the proxy, kInFlight at a time on one channel; returns how many
// failed.
int RunCalls(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = Greeter::NewStub(channel);
  std::mutex mu;
  std::condition_variable cv;
  int started = 0, done = 0, failed = 0;
  std::vector<HelloRequest> requests(kCalls);
  std::vector<HelloReply> replies(kCalls);
  std::vector<grpc::ClientContext> contexts(kCalls);
  std::unique_lock<std::mutex> lock(mu);
  while (done < kCalls) {
    while (started < kCalls && started - done < kInFlight) {
      const int i = started++;
      contexts[i].set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
      stub->async()->SayHello(&contexts[i], &requests[i], &replies[i], [&](grpc::Status status) {
        std::lock_guard<std::mutex> done_lock(mu);
        ++done;
        if (!status.ok()) ++failed;
        cv.notify_all();
      });
    }
    cv.wait(lock,
            [&] { return done == kCalls || (started < kCalls && started - done < kInFlight); });
  }
  return failed;
}

absl::StatusOr<std::unique_ptr<ProxyProcess>> StartProxy(const std::string& target,
                                                         int budget_min) {
  return ProxyProcess::Start(
      target, {"--idempotent", "/Greeter/*", "--max-attempts", "3", "--retry-budget-ratio", "0.2",
               "--retry-budget-min", absl::StrCat(budget_min)});
}

TEST(ProxyRetryBudgetTest, CallsAgainstFailingBackendsStayWithinTheBudget) {
  FailingBackends service;
  auto proxy = StartProxy(service.target, /*budget_min=*/0);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_EQ(RunCalls((*proxy)->Channel()), kCalls);
  const int64_t attempts = service.Attempts();
  std::cout << "attempts the backends saw for " << kCalls << " calls: " << attempts << "\n";
  // The budget is 0.2 x the calls in flight (with no floor), so it has room only because the
  // proxy counts its calls in it: some calls are retried...
  EXPECT_GT(attempts, kCalls) << "no retries: the proxy's calls are not counted in the budget";
  // ...but retries in flight stay within 0.2 x calls in flight: about 1.2 attempts per call.
  EXPECT_LE(attempts, kCalls * 13 / 10) << "the retry budget did not bind in the proxy";
}

TEST(ProxyRetryBudgetTest, WithRoomInTheBudgetEveryCallUsesAllItsAttempts) {
  // The control for the test above: the same load with a budget too large to bind.
  FailingBackends service;
  auto proxy = StartProxy(service.target, /*budget_min=*/1000);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_EQ(RunCalls((*proxy)->Channel()), kCalls);
  EXPECT_EQ(service.Attempts(), 3 * kCalls);
}

}  // namespace
}  // namespace sluice::testing
