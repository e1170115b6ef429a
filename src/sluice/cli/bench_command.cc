// sluice bench: a gRPC load generator. Closed loop (--concurrency calls always in flight) or open
// loop (--rate calls per second, latency measured from each call's intended send time, so a
// stall shows in the figures instead of slowing the load down). Calls go through the client
// library's Balancer, so a discovery target is balanced per call and --connections opens really
// distinct TCP connections (one balancer, hence one channel per endpoint, each).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "helloworld.pb.h"
#include "sluice/cli/commands.h"
#include "sluice/client/balancer.h"
#include "sluice/core/clock.h"
#include "sluice/core/grpc_util.h"
#include "sluice/core/latency_histogram.h"
#include "sluice/core/log.h"

namespace sluice::cli {
namespace {

constexpr absl::string_view kGreeterMethod = "/Greeter/SayHello";

struct BenchFlags {
  std::string target;
  std::string policy = "peak_ewma";
  std::string policy_config;
  std::string method = std::string(kGreeterMethod);
  std::string data_file;
  std::string name = "sluice-bench";
  std::string backend_header;
  int concurrency = 16;
  int connections = 1;
  std::string duration;
  int64_t calls = 0;
  double rate = 0;
  std::string warmup = "0s";
  std::string timeout = "10s";
  bool json = false;
};

// Everything a run needs, checked: a usage error names the flag.
struct BenchPlan {
  BenchFlags flags;
  absl::Duration duration = absl::InfiniteDuration();  // infinite: until --calls are made
  absl::Duration warmup;
  absl::Duration timeout;
  grpc::ByteBuffer request;
};

absl::StatusOr<absl::Duration> ParseFlagDuration(const std::string& flag, const std::string& text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", text, "' is not a duration; write it like 10s, 500ms or 1m"));
  }
  return d;
}

absl::StatusOr<BenchPlan> MakePlan(const BenchFlags& flags) {
  BenchPlan plan;
  plan.flags = flags;
  if (flags.concurrency < 1) return absl::InvalidArgumentError("--concurrency: must be at least 1");
  if (flags.connections < 1) return absl::InvalidArgumentError("--connections: must be at least 1");
  if (flags.calls < 0) return absl::InvalidArgumentError("--calls: must not be negative");
  if (flags.rate < 0) return absl::InvalidArgumentError("--rate: must not be negative");
  if (!absl::StartsWith(flags.method, "/") || flags.method.find('/', 1) == std::string::npos ||
      absl::EndsWith(flags.method, "/")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--method: '", flags.method, "' is not a full method name like /package.Service/Method"));
  }
  if (!flags.duration.empty()) {
    auto d = ParseFlagDuration("--duration", flags.duration);
    if (!d.ok()) return d.status();
    if (*d == absl::ZeroDuration()) return absl::InvalidArgumentError("--duration: must be > 0");
    plan.duration = *d;
  } else if (flags.calls == 0) {
    plan.duration = absl::Seconds(10);
  }
  auto warmup = ParseFlagDuration("--warmup", flags.warmup);
  if (!warmup.ok()) return warmup.status();
  plan.warmup = *warmup;
  auto timeout = ParseFlagDuration("--timeout", flags.timeout);
  if (!timeout.ok()) return timeout.status();
  if (*timeout == absl::ZeroDuration()) return absl::InvalidArgumentError("--timeout: must be > 0");
  plan.timeout = *timeout;

  std::string payload;
  if (!flags.data_file.empty()) {
    std::ifstream in(flags.data_file, std::ios::binary);
    if (!in) {
      return absl::InvalidArgumentError(
          absl::StrCat("--data-file: cannot read '", flags.data_file, "'"));
    }
    std::stringstream bytes;
    bytes << in.rdbuf();
    payload = bytes.str();
  } else if (flags.method == kGreeterMethod) {
    HelloRequest request;
    request.set_name(flags.name);
    payload = request.SerializeAsString();
  } else {
    return absl::InvalidArgumentError(
        "--data-file: required for methods other than /Greeter/SayHello (the serialized "
        "request message, in protobuf binary form)");
  }
  grpc::Slice slice(payload);
  plan.request = grpc::ByteBuffer(&slice, 1);
  return plan;
}

// Which backend answered: a response header the backend sets, else the Greeter's reply text
// ("Hello, x!, I am 127.0.0.11:50051"), else the address the call was sent to.
std::string AnsweredBy(const BenchPlan& plan, const grpc::ClientContext& context,
                       const grpc::ByteBuffer& response, const std::string& sent_to) {
  if (!plan.flags.backend_header.empty()) {
    const auto& headers = context.GetServerInitialMetadata();
    auto it = headers.find(plan.flags.backend_header);
    if (it != headers.end()) return std::string(it->second.data(), it->second.size());
  }
  if (plan.flags.method == kGreeterMethod) {
    std::vector<grpc::Slice> slices;
    if (response.Dump(&slices).ok()) {
      std::string bytes;
      for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
      HelloReply reply;
      if (reply.ParseFromString(bytes)) {
        const size_t at = reply.message().rfind("I am ");
        if (at != std::string::npos) return reply.message().substr(at + 5);
      }
    }
  }
  return sent_to;
}

// The figures of one run; every field is thread-safe to update.
struct RunStats {
  LatencyHistogram latency;
  std::atomic<int64_t> ok{0};
  std::atomic<int64_t> failed{0};
  std::mutex mu;
  std::map<int, int64_t> errors;             // by gRPC status code
  std::map<int, std::string> first_error;    // a sample message per code
  std::map<std::string, int64_t> answered_by;

  void Add(const grpc::Status& status, absl::Duration latency, const std::string& backend) {
    if (status.ok()) {
      ok.fetch_add(1, std::memory_order_relaxed);
      this->latency.Record(latency);
      std::lock_guard<std::mutex> lock(mu);
      ++answered_by[backend];
      return;
    }
    failed.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mu);
    ++errors[status.error_code()];
    first_error.emplace(status.error_code(), status.error_message());
  }
};

// One call's buffers, alive until its completion runs.
struct BenchCall {
  grpc::ByteBuffer response;
  std::string sent_to;
};

class BenchRun {
 public:
  BenchRun(const BenchPlan& plan, std::vector<std::unique_ptr<client::Balancer>> balancers)
      : plan_(plan), balancers_(std::move(balancers)), clock_(SystemClock::Instance()) {}

  // Runs the load; returns the measured window's length.
  absl::Duration Run(bool show_progress) {
    start_ = clock_.Now();
    measure_from_ = start_ + plan_.warmup;
    end_ = plan_.duration == absl::InfiniteDuration() ? absl::InfiniteFuture()
                                                      : measure_from_ + plan_.duration;
    std::thread progress;
    std::atomic<bool> done{false};
    if (show_progress) {
      progress = std::thread([&] { ShowProgress(done); });
    }
    if (plan_.flags.rate > 0) {
      RunOpenLoop();
    } else {
      for (int i = 0; i < plan_.flags.concurrency; ++i) LaunchClosedLoop();
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return in_flight_ == 0 && stopping_; });
    }
    done = true;
    if (progress.joinable()) progress.join();
    const absl::Time measured_end = std::min(clock_.Now(), last_completion_);
    return std::max(measured_end - measure_from_, absl::Nanoseconds(1));
  }

  RunStats& stats() { return stats_; }

 private:
  // Reserves the next call, or marks the run as stopping. Calls counted toward --calls are
  // those sent after the warmup.
  bool Reserve(absl::Time send_time) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    if (send_time >= end_ ||
        (plan_.flags.calls > 0 && send_time >= measure_from_ && measured_issued_ >= plan_.flags.calls)) {
      stopping_ = true;
      cv_.notify_all();
      return false;
    }
    if (send_time >= measure_from_) ++measured_issued_;
    ++in_flight_;
    return true;
  }

  void LaunchClosedLoop() {
    const absl::Time now = clock_.Now();
    if (!Reserve(now)) return;
    Send(now, [this] { LaunchClosedLoop(); });
  }

  void RunOpenLoop() {
    const absl::Duration interval = absl::Seconds(1) / plan_.flags.rate;
    for (int64_t i = 0;; ++i) {
      const absl::Time intended = start_ + interval * static_cast<double>(i);
      const absl::Duration wait = intended - clock_.Now();
      if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
      {
        // Never more than --concurrency in flight: wait for a slot. The call's latency still
        // counts from its intended time, so this stall shows.
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return in_flight_ < plan_.flags.concurrency || stopping_; });
      }
      if (!Reserve(intended)) return;
      Send(intended, [] {});
    }
  }

  void Send(absl::Time intended, std::function<void()> then) {
    const size_t index = next_balancer_.fetch_add(1, std::memory_order_relaxed) % balancers_.size();
    client::Balancer& balancer = *balancers_[index];
    auto call = std::make_shared<BenchCall>();
    client::CallOptions options;
    options.method = plan_.flags.method;
    options.deadline = clock_.Now() + plan_.timeout;
    auto answered_by = std::make_shared<std::string>();
    balancer.CallAsync(
        std::move(options),
        [this, call, answered_by](const client::Backend& backend, grpc::ClientContext* context,
                                  std::function<void(grpc::Status)> finished) {
          call->sent_to = backend.address();
          call->response.Clear();
          backend.StubFor<grpc::GenericStub>().UnaryCall(
              context, plan_.flags.method, grpc::StubOptions(), &plan_.request, &call->response,
              [this, call, context, answered_by,
               finished = std::move(finished)](grpc::Status status) {
                if (status.ok()) *answered_by = AnsweredBy(plan_, *context, call->response,
                                                           call->sent_to);
                finished(std::move(status));
              });
        },
        [this, intended, call, answered_by, then = std::move(then)](grpc::Status status) {
          const absl::Time now = clock_.Now();
          if (intended >= measure_from_) stats_.Add(status, now - intended, *answered_by);
          {
            std::lock_guard<std::mutex> lock(mu_);
            --in_flight_;
            last_completion_ = std::max(last_completion_ == absl::InfiniteFuture()
                                            ? now
                                            : last_completion_, now);
            cv_.notify_all();
          }
          then();
        });
  }

  void ShowProgress(const std::atomic<bool>& done) {
    while (!done) {
      absl::SleepFor(absl::Milliseconds(500));
      const absl::Duration elapsed = clock_.Now() - start_;
      const absl::Duration measured = clock_.Now() - measure_from_;
      const int64_t ok = stats_.ok.load(), failed = stats_.failed.load();
      const double rate = measured > absl::ZeroDuration()
                              ? static_cast<double>(ok) / absl::ToDoubleSeconds(measured)
                              : 0.0;
      std::fprintf(stderr, "\r%7.1fs %s %10lld ok %8lld failed %10.0f calls/s   ",
                   absl::ToDoubleSeconds(elapsed), measured < absl::ZeroDuration() ? "warmup" : "      ",
                   static_cast<long long>(ok), static_cast<long long>(failed), rate);
      std::fflush(stderr);
    }
    std::fprintf(stderr, "\r%80s\r", "");
  }

  const BenchPlan& plan_;
  std::vector<std::unique_ptr<client::Balancer>> balancers_;
  Clock& clock_;
  RunStats stats_;
  std::atomic<size_t> next_balancer_{0};
  absl::Time start_, measure_from_, end_;

  std::mutex mu_;
  std::condition_variable cv_;
  int64_t in_flight_ = 0;
  int64_t measured_issued_ = 0;
  bool stopping_ = false;
  absl::Time last_completion_ = absl::InfiniteFuture();
};

std::string Ms(absl::Duration d) { return absl::StrFormat("%.3f", absl::ToDoubleMilliseconds(d)); }

int RunBench(const BenchFlags& flags) {
  auto plan = MakePlan(flags);
  if (!plan.ok()) {
    std::fprintf(stderr, "sluice bench: %s\n", std::string(plan.status().message()).c_str());
    return kExitUsage;
  }
  nlohmann::json policy_config;
  if (!flags.policy_config.empty()) {
    policy_config = nlohmann::json::parse(flags.policy_config, nullptr, /*allow_exceptions=*/false);
    if (policy_config.is_discarded()) {
      std::fprintf(stderr, "sluice bench: --policy-config: not valid JSON\n");
      return kExitUsage;
    }
  }
  std::vector<std::unique_ptr<client::Balancer>> balancers;
  for (int i = 0; i < flags.connections; ++i) {
    client::BalancerOptions options;
    options.target = flags.target;
    options.policy = flags.policy;
    options.policy_config = policy_config;
    // A load generator reports failures; it does not hide them by retrying or ejecting.
    options.retry.max_attempts = 1;
    options.outlier_detection.enabled = false;
    // Each connection's channel has its own TCP connection (the library already keeps a local
    // subchannel pool); large messages are the user's business.
    options.channel_args.SetMaxReceiveMessageSize(-1);
    auto balancer = client::Balancer::Create(std::move(options));
    if (!balancer.ok()) {
      const bool usage = balancer.status().code() == absl::StatusCode::kInvalidArgument;
      std::fprintf(stderr, "sluice bench: %s\n", std::string(balancer.status().message()).c_str());
      return usage ? kExitUsage : kExitFailure;
    }
    balancers.push_back(std::move(*balancer));
  }
  // Connections are made before the clock starts, so the first calls do not measure connecting
  // and do not all land on the endpoint that connected first: wait for one endpoint, then give
  // the rest a moment to be ready too.
  for (auto& balancer : balancers) {
    balancer->WaitForReady(1, absl::Seconds(5));
    const absl::Time until = absl::Now() + absl::Seconds(2);
    while (balancer->ReadyCount() < balancer->Backends().size() && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(5));
    }
  }

  BenchRun run(*plan, std::move(balancers));
  const bool progress = !flags.json && isatty(STDERR_FILENO);
  const absl::Duration window = run.Run(progress);
  RunStats& stats = run.stats();
  const int64_t ok = stats.ok.load(), failed = stats.failed.load();
  const double calls_per_second = static_cast<double>(ok) / absl::ToDoubleSeconds(window);
  const LatencyHistogram& h = stats.latency;

  if (flags.json) {
    nlohmann::json out;
    out["target"] = flags.target;
    out["method"] = flags.method;
    out["policy"] = flags.policy;
    out["concurrency"] = flags.concurrency;
    out["connections"] = flags.connections;
    out["rate"] = flags.rate;
    out["warmup_s"] = absl::ToDoubleSeconds(plan->warmup);
    out["duration_s"] = absl::ToDoubleSeconds(window);
    out["calls"] = {{"total", ok + failed}, {"ok", ok}, {"failed", failed}};
    out["calls_per_second"] = calls_per_second;
    out["latency_ms"] = {{"p50", absl::ToDoubleMilliseconds(h.Percentile(0.5))},
                         {"p90", absl::ToDoubleMilliseconds(h.Percentile(0.9))},
                         {"p99", absl::ToDoubleMilliseconds(h.Percentile(0.99))},
                         {"p999", absl::ToDoubleMilliseconds(h.Percentile(0.999))},
                         {"max", absl::ToDoubleMilliseconds(h.max())},
                         {"mean", absl::ToDoubleMilliseconds(h.mean())}};
    nlohmann::json errors = nlohmann::json::object();
    for (const auto& [code, count] : stats.errors) {
      errors[StatusCodeName(static_cast<grpc::StatusCode>(code))] = {{"count", count}, {"example", stats.first_error[code]}};
    }
    out["errors"] = errors;
    out["answered_by"] = nlohmann::json(stats.answered_by);
    std::printf("%s\n", out.dump(2).c_str());
    return ok > 0 ? kExitOk : kExitFailure;
  }

  std::printf("target       %s  (%s, policy %s)\n", flags.target.c_str(), flags.method.c_str(),
              flags.policy.c_str());
  std::printf("load         %s, %d connection%s\n",
              flags.rate > 0 ? absl::StrFormat("open loop at %.0f calls/s, at most %d in flight",
                                               flags.rate, flags.concurrency)
                                   .c_str()
                             : absl::StrFormat("closed loop, %d calls in flight", flags.concurrency)
                                   .c_str(),
              flags.connections, flags.connections == 1 ? "" : "s");
  std::printf("calls        %lld ok, %lld failed in %.2f s%s\n", static_cast<long long>(ok),
              static_cast<long long>(failed), absl::ToDoubleSeconds(window),
              plan->warmup > absl::ZeroDuration()
                  ? absl::StrCat(" (after ", absl::FormatDuration(plan->warmup), " of warmup)").c_str()
                  : "");
  std::printf("throughput   %.1f calls/s\n", calls_per_second);
  std::printf("latency ms   p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s%s\n",
              Ms(h.Percentile(0.5)).c_str(), Ms(h.Percentile(0.9)).c_str(),
              Ms(h.Percentile(0.99)).c_str(), Ms(h.Percentile(0.999)).c_str(), Ms(h.max()).c_str(),
              Ms(h.mean()).c_str(), flags.rate > 0 ? "  (from each call's intended send time)" : "");
  if (!stats.errors.empty()) {
    std::printf("errors\n");
    for (const auto& [code, count] : stats.errors) {
      std::printf("  %-20s %lld  e.g. %s\n", StatusCodeName(static_cast<grpc::StatusCode>(code)).c_str(),
                  static_cast<long long>(count), stats.first_error[code].c_str());
    }
  }
  if (!stats.answered_by.empty()) {
    std::printf("answered by\n");
    for (const auto& [backend, count] : stats.answered_by) {
      const double share = ok > 0 ? static_cast<double>(count) / static_cast<double>(ok) : 0.0;
      std::printf("  %-24s %10lld %6.1f%%  %s\n", backend.c_str(), static_cast<long long>(count),
                  100.0 * share, std::string(static_cast<size_t>(share * 40 + 0.5), '#').c_str());
    }
  }
  return ok > 0 ? kExitOk : kExitFailure;
}

}  // namespace

CommandRunner AddBenchCommand(CLI::App& app) {
  auto flags = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Load a gRPC service and report throughput, latency, errors and who answered.");
  cmd->add_option("--target", flags->target,
                  "Where to send calls: IP:PORT, static://a,b, dns://name:port or "
                  "etcd://host:port/prefix (balanced per call)")
      ->required();
  cmd->add_option("--policy", flags->policy, "Load-balancing policy for discovery targets")
      ->capture_default_str();
  cmd->add_option("--policy-config", flags->policy_config, "The policy's JSON config");
  cmd->add_option("--method", flags->method, "Full method name, /package.Service/Method")
      ->capture_default_str();
  cmd->add_option("--data-file", flags->data_file,
                  "Request message, serialized protobuf (required unless --method is the "
                  "Greeter's SayHello)");
  cmd->add_option("--name", flags->name, "The Greeter request's name")->capture_default_str();
  cmd->add_option("--backend-header", flags->backend_header,
                  "Response header naming the backend that answered (default: the Greeter's "
                  "reply text, else the address called)");
  cmd->add_option("-c,--concurrency", flags->concurrency,
                  "Calls in flight (with --rate: at most this many)")
      ->capture_default_str();
  cmd->add_option("--connections", flags->connections,
                  "Distinct TCP connections per endpoint, used in turn")
      ->capture_default_str();
  cmd->add_option("-z,--duration", flags->duration,
                  "How long to measure, after the warmup (default 10s unless --calls)");
  cmd->add_option("-n,--calls", flags->calls, "Stop after this many measured calls");
  cmd->add_option("--rate", flags->rate,
                  "Open loop: start this many calls per second whatever the answers' pace");
  cmd->add_option("--warmup", flags->warmup, "Load before measuring starts")->capture_default_str();
  cmd->add_option("--timeout", flags->timeout, "Deadline of each call")->capture_default_str();
  cmd->add_flag("--json", flags->json, "Print the results as JSON");
  return [flags] {
    SetMinLogLevel(LogLevel::kWarning);
    return RunBench(*flags);
  };
}

}  // namespace sluice::cli
