// The retry budget binds: when every backend fails, retries stay a bounded share of the calls
// instead of multiplying them by max_attempts. Real backends that answer UNAVAILABLE.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "greeter_backend.h"
#include "sluice/client/balancer.h"
#include "sluice/client/call.h"

namespace sluice {
namespace {

using testing::GreeterBackend;

constexpr int kCalls = 1000;
constexpr int kInFlight = 50;

struct FailingService {
  std::vector<std::unique_ptr<GreeterBackend>> backends;
  std::string target;

  FailingService() {
    std::vector<std::string> addresses;
    for (int i = 0; i < 3; ++i) {
      auto backend = GreeterBackend::Start(absl::StrCat("127.0.0.", 31 + i));
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

std::unique_ptr<client::Balancer> MakeBalancer(const std::string& target, int budget_min) {
  client::BalancerOptions options;
  options.target = target;
  options.outlier_detection.enabled = false;  // every backend stays pickable
  options.retry.idempotent_methods = {"/Greeter/*"};
  options.retry.max_attempts = 3;
  options.retry.budget_ratio = 0.2;
  options.retry.budget_min = budget_min;
  auto balancer = client::Balancer::Create(options);
  EXPECT_TRUE(balancer.ok()) << balancer.status();
  if (!balancer.ok()) return nullptr;
  EXPECT_TRUE((*balancer)->WaitForReady(3, absl::Seconds(10)));
  return std::move(*balancer);
}

client::CallOptions SayHelloOptions(client::Balancer& balancer) {
  client::CallOptions options;
  options.method = "/Greeter/SayHello";
  options.deadline = balancer.clock().Now() + absl::Seconds(20);
  return options;
}

// kCalls blocking calls from kInFlight threads; returns how many failed.
int RunBlocking(client::Balancer& balancer) {
  std::atomic<int> next{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kInFlight; ++t) {
    threads.emplace_back([&] {
      while (next.fetch_add(1) < kCalls) {
        HelloRequest request;
        HelloReply reply;
        grpc::Status status = client::UnaryCall(balancer, &Greeter::Stub::SayHello,
                                                SayHelloOptions(balancer), request, &reply);
        if (!status.ok()) failed.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  return failed.load();
}

// kCalls callback calls, kInFlight at a time; returns how many failed.
int RunAsync(client::Balancer& balancer) {
  std::mutex mu;
  std::condition_variable cv;
  int started = 0, done = 0, failed = 0;
  std::vector<HelloRequest> requests(kCalls);
  std::vector<HelloReply> replies(kCalls);
  std::unique_lock<std::mutex> lock(mu);
  while (done < kCalls) {
    while (started < kCalls && started - done < kInFlight) {
      const int i = started++;
      lock.unlock();
      client::UnaryCallAsync<Greeter::Stub>(
          balancer, SayHelloOptions(balancer), &requests[i], &replies[i],
          [](Greeter::Stub& stub, grpc::ClientContext* context, const HelloRequest* request,
             HelloReply* reply, std::function<void(grpc::Status)> finished) {
            stub.async()->SayHello(context, request, reply, std::move(finished));
          },
          [&](grpc::Status status) {
            std::lock_guard<std::mutex> done_lock(mu);
            ++done;
            if (!status.ok()) ++failed;
            cv.notify_all();
          });
      lock.lock();
    }
    cv.wait(lock,
            [&] { return done == kCalls || (started < kCalls && started - done < kInFlight); });
  }
  return failed;
}

TEST(RetryBudgetTest, BlockingCallsAgainstFailingBackendsStayWithinTheBudget) {
  FailingService service;
  auto balancer = MakeBalancer(service.target, /*budget_min=*/0);
  ASSERT_NE(balancer, nullptr);
  EXPECT_EQ(RunBlocking(*balancer), kCalls);
  const int64_t attempts = service.Attempts();
  EXPECT_GE(attempts, kCalls);
  EXPECT_LE(attempts, kCalls * 13 / 10) << "the retry budget did not bind";
  EXPECT_EQ(balancer->retry_budget().calls_in_flight(), 0);
  EXPECT_EQ(balancer->retry_budget().retries_in_flight(), 0);
}

TEST(RetryBudgetTest, AsyncCallsAgainstFailingBackendsStayWithinTheBudget) {
  FailingService service;
  auto balancer = MakeBalancer(service.target, /*budget_min=*/0);
  ASSERT_NE(balancer, nullptr);
  EXPECT_EQ(RunAsync(*balancer), kCalls);
  const int64_t attempts = service.Attempts();
  EXPECT_GE(attempts, kCalls);
  EXPECT_LE(attempts, kCalls * 13 / 10) << "the retry budget did not bind";
  EXPECT_EQ(balancer->retry_budget().calls_in_flight(), 0);
  EXPECT_EQ(balancer->retry_budget().retries_in_flight(), 0);
}

TEST(RetryBudgetTest, WithRoomInTheBudgetEveryCallUsesAllItsAttempts) {
  // The control for the two above: the same load with a budget too large to bind.
  FailingService service;
  auto balancer = MakeBalancer(service.target, /*budget_min=*/1000);
  ASSERT_NE(balancer, nullptr);
  EXPECT_EQ(RunAsync(*balancer), kCalls);
  EXPECT_EQ(service.Attempts(), 3 * kCalls);
}

}  // namespace
}  // namespace sluice
