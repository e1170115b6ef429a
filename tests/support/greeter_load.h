#pragma once
// Header-only: it calls through the client library, which sluice_test_support does not link;
// the tests that include it link sluice_client themselves.

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "helloworld.grpc.pb.h"
#include "sluice/client/balancer.h"
#include "sluice/client/call.h"

namespace sluice::testing {

// One failed call: when it started and ended, and why, so a test can match it with what it did
// to the system at that moment.
struct TimedFailure {
  absl::Time start;
  absl::Time end;
  grpc::StatusCode code;
  std::string message;
};

// What a closed-loop load run saw.
struct LoadResult {
  // Failures kept with their times; a long run keeps counting past it without growing.
  static constexpr size_t kMaxKeptFailures = 100000;

  int64_t ok = 0;
  int64_t failed = 0;
  std::map<std::string, int64_t> by_backend;  // from the reply "... I am <address>"
  std::vector<TimedFailure> failures;         // the first kMaxKeptFailures
  std::vector<absl::Duration> latencies;      // empty unless LoadOptions::keep_latencies

  double Share(const std::string& backend) const {
    auto it = by_backend.find(backend);
    return ok == 0 || it == by_backend.end()
               ? 0.0
               : static_cast<double>(it->second) / static_cast<double>(ok);
  }
  absl::Duration Percentile(double p) {
    if (latencies.empty()) return absl::ZeroDuration();
    std::sort(latencies.begin(), latencies.end());
    size_t index = std::min(latencies.size() - 1,
                            static_cast<size_t>(p * static_cast<double>(latencies.size())));
    return latencies[index];
  }
  // Counts, answers by backend, and the first five failures with when and why.
  std::string Summary() const {
    std::string text = absl::StrCat("ok=", ok, " failed=", failed);
    for (const auto& [backend, count] : by_backend)
      absl::StrAppend(&text, " ", backend, "=", count);
    for (size_t i = 0; i < failures.size() && i < 5; ++i) {
      absl::StrAppend(&text, "\n  failed ",
                      absl::FormatTime("%H:%M:%E3S", failures[i].start, absl::LocalTimeZone()),
                      "..", absl::FormatTime("%H:%M:%E3S", failures[i].end, absl::LocalTimeZone()),
                      ": code ", failures[i].code, " ", failures[i].message);
    }
    return text;
  }
};

struct LoadOptions {
  int threads = 4;
  // Pause between two calls of one thread: steady load that leaves the shared cores to the
  // processes under test (etcd, the proxy).
  absl::Duration think_time = absl::ZeroDuration();
  // Off for long runs whose memory is measured.
  bool keep_latencies = true;
  // Called on the load's threads after every answered call (not under the load's lock).
  std::function<void(const std::string& backend, absl::Time start, absl::Time end)> on_answer;
};

// Callers each sending SayHello in a loop until Stop(): through the client library, or through
// any Greeter stub (a plain gRPC client of `sluice proxy`).
class GreeterLoad {
 public:
  // Makes one call; fills the reply.
  using CallFn = std::function<grpc::Status(const HelloRequest& request, HelloReply* reply)>;

  // Through the client library, each call with a deadline `call_timeout` after it starts.
  static CallFn ViaBalancer(client::Balancer& balancer,
                            absl::Duration call_timeout = absl::Seconds(5)) {
    return [&balancer, call_timeout](const HelloRequest& request, HelloReply* reply) {
      client::CallOptions options;
      options.method = "/Greeter/SayHello";
      // On the balancer's (monotonic) clock: an absl::Now() time would be no deadline at all.
      options.deadline = balancer.clock().Now() + call_timeout;
      return client::UnaryCall(balancer, &Greeter::Stub::SayHello, options, request, reply);
    };
  }
  // Through a plain stub with no retries of its own, so every failure is its server's.
  static CallFn ViaStub(Greeter::Stub& stub, absl::Duration call_timeout = absl::Seconds(5)) {
    return [&stub, call_timeout](const HelloRequest& request, HelloReply* reply) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + call_timeout));
      return stub.SayHello(&context, request, reply);
    };
  }

  GreeterLoad(client::Balancer& balancer, int threads,
              absl::Duration call_timeout = absl::Seconds(5))
      : GreeterLoad(ViaBalancer(balancer, call_timeout), WithThreads(threads)) {}
  GreeterLoad(CallFn call, LoadOptions options)
      : call_(std::move(call)), options_(std::move(options)) {
    for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~GreeterLoad() { Stop(); }

  LoadResult Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    std::lock_guard<std::mutex> lock(mu_);
    return result_;
  }
  int64_t ok() const { return ok_.load(); }
  int64_t failed() const { return failed_.load(); }
  // Calls answered by `backend` so far.
  int64_t CallsTo(const std::string& backend) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = result_.by_backend.find(backend);
    return it == result_.by_backend.end() ? 0 : it->second;
  }

 private:
  static LoadOptions WithThreads(int threads) {
    LoadOptions options;
    options.threads = threads;
    return options;
  }
  void Run() {
    HelloRequest request;
    request.set_name("load");
    while (!stop_) {
      HelloReply reply;
      const absl::Time start = absl::Now();
      grpc::Status status = call_(request, &reply);
      const absl::Time end = absl::Now();
      if (status.ok()) {
        size_t at = reply.message().rfind("I am ");
        std::string backend = at == std::string::npos ? "?" : reply.message().substr(at + 5);
        if (options_.on_answer) options_.on_answer(backend, start, end);
        std::lock_guard<std::mutex> lock(mu_);
        ++result_.ok;
        ok_.fetch_add(1);
        ++result_.by_backend[backend];
        if (options_.keep_latencies) result_.latencies.push_back(end - start);
      } else {
        std::lock_guard<std::mutex> lock(mu_);
        ++result_.failed;
        failed_.fetch_add(1);
        if (result_.failures.size() < LoadResult::kMaxKeptFailures) {
          result_.failures.push_back({start, end, status.error_code(), status.error_message()});
        }
      }
      if (options_.think_time > absl::ZeroDuration()) absl::SleepFor(options_.think_time);
    }
  }

  const CallFn call_;
  const LoadOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> ok_{0};
  std::atomic<int64_t> failed_{0};
  std::mutex mu_;
  LoadResult result_;
  std::vector<std::thread> threads_;
};

}  // namespace sluice::testing
