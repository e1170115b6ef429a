#pragma once

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "helloworld.grpc.pb.h"
#include "sluice/client/balancer.h"
#include "sluice/client/call.h"

namespace sluice::testing {

// What a closed-loop load run saw.
struct LoadResult {
  int64_t ok = 0;
  int64_t failed = 0;
  std::map<std::string, int64_t> by_backend;  // from the reply "... I am <address>"
  std::vector<std::string> errors;            // the first few failures
  std::vector<absl::Duration> latencies;

  double Share(const std::string& backend) const {
    auto it = by_backend.find(backend);
    return ok == 0 || it == by_backend.end() ? 0.0
                                            : static_cast<double>(it->second) / static_cast<double>(ok);
  }
  absl::Duration Percentile(double p) {
    if (latencies.empty()) return absl::ZeroDuration();
    std::sort(latencies.begin(), latencies.end());
    size_t index = std::min(latencies.size() - 1,
                            static_cast<size_t>(p * static_cast<double>(latencies.size())));
    return latencies[index];
  }
  std::string Summary() const {
    std::string text = absl::StrCat("ok=", ok, " failed=", failed);
    for (const auto& [backend, count] : by_backend) absl::StrAppend(&text, " ", backend, "=", count);
    for (const auto& error : errors) absl::StrAppend(&text, "\n  error: ", error);
    return text;
  }
};

// `threads` callers each sending SayHello through the balancer in a loop until Stop().
class GreeterLoad {
 public:
  GreeterLoad(client::Balancer& balancer, int threads,
              absl::Duration call_timeout = absl::Seconds(5))
      : balancer_(balancer), call_timeout_(call_timeout) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
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
  // Calls answered by `backend` so far.
  int64_t CallsTo(const std::string& backend) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = result_.by_backend.find(backend);
    return it == result_.by_backend.end() ? 0 : it->second;
  }

 private:
  void Run() {
    HelloRequest request;
    request.set_name("load");
    while (!stop_) {
      HelloReply reply;
      client::CallOptions options;
      options.method = "/Greeter/SayHello";
      options.deadline = balancer_.clock().Now() + call_timeout_;
      absl::Time start = absl::Now();
      grpc::Status status =
          client::UnaryCall(balancer_, &Greeter::Stub::SayHello, options, request, &reply);
      absl::Duration latency = absl::Now() - start;
      std::lock_guard<std::mutex> lock(mu_);
      if (status.ok()) {
        ++result_.ok;
        ok_.fetch_add(1);
        size_t at = reply.message().rfind("I am ");
        ++result_.by_backend[at == std::string::npos ? "?" : reply.message().substr(at + 5)];
        result_.latencies.push_back(latency);
      } else {
        ++result_.failed;
        if (result_.errors.size() < 5) {
          result_.errors.push_back(absl::StrCat(status.error_code(), ": ", status.error_message()));
        }
      }
    }
  }

  client::Balancer& balancer_;
  const absl::Duration call_timeout_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> ok_{0};
  std::mutex mu_;
  LoadResult result_;
  std::vector<std::thread> threads_;
};

}  // namespace sluice::testing
