// End-to-end: the Sluice client library against gRPC's own round_robin, on three local Greeter
// backends (greeter_server processes), side by side in one run, interleaved, each cell the
// median of several rounds. 64 calls in flight through the callback API on both sides.
//
//   build/bench/client_e2e_bench [--duration 3s] [--rounds 3] [--inflight 64]
//                                [--out bench/results/client_e2e.md]
//   build/bench/client_e2e_bench --only sluice|grpc [--only-connections N] [--calls N]
//     (one side alone, for profilers: bench/client_callgrind.sh counts instructions per call
//     from two runs of --calls that differ only in the number of calls)
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "helloworld.grpc.pb.h"
#include "process.h"
#include "sluice/client/balancer.h"
#include "sluice/client/call.h"

namespace {

using sluice::testing::ChildProcess;

struct RunResult {
  double qps = 0;
  // CPU time (user + system) of this process, the client, per successful call: steadier than
  // calls/s on a shared machine, and where a client library's own overhead shows.
  double client_cpu_us_per_call = 0;
  absl::Duration p50, p99;
  int64_t failed = 0;
};

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// Keeps `inflight` calls going until `duration` passes, or, when `calls` > 0, until exactly
// that many calls have been made; `issue(i, done)` starts call i.
using Issue = std::function<void(int64_t index, std::function<void(bool ok)> done)>;

RunResult Drive(int inflight, absl::Duration duration, int64_t calls, const Issue& issue) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int64_t> latencies_ns;
  latencies_ns.reserve(1 << 20);
  int64_t failed = 0, outstanding = 0, next_index = 0;
  const absl::Time end = absl::Now() + duration;
  const absl::Time start = absl::Now();
  const double cpu_start = ProcessCpuSeconds();

  // Under the lock: whether another call may start.
  auto more = [&](absl::Time now) { return calls > 0 ? next_index < calls : now < end; };
  std::function<void()> launch;
  launch = [&] {
    int64_t index;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (calls > 0 && next_index >= calls) return;  // exactly `calls`, however they interleave
      index = next_index++;
      ++outstanding;
    }
    absl::Time sent = absl::Now();
    issue(index, [&, sent](bool ok) {
      absl::Time now = absl::Now();
      bool again;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (ok) {
          latencies_ns.push_back(absl::ToInt64Nanoseconds(now - sent));
        } else {
          ++failed;
        }
        --outstanding;
        again = more(now);
        if (!again && outstanding == 0) cv.notify_all();
      }
      if (again) launch();
    });
  };
  const int64_t first = calls > 0 ? std::min<int64_t>(inflight, calls) : inflight;
  for (int64_t i = 0; i < first; ++i) launch();
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return outstanding == 0 && !more(absl::Now()); });
  absl::Duration elapsed = absl::Now() - start;
  const double cpu_used = ProcessCpuSeconds() - cpu_start;
  RunResult result;
  if (!latencies_ns.empty()) {
    result.client_cpu_us_per_call = cpu_used * 1e6 / static_cast<double>(latencies_ns.size());
  }
  result.failed = failed;
  result.qps = static_cast<double>(latencies_ns.size()) / absl::ToDoubleSeconds(elapsed);
  std::sort(latencies_ns.begin(), latencies_ns.end());
  if (!latencies_ns.empty()) {
    result.p50 = absl::Nanoseconds(latencies_ns[latencies_ns.size() / 2]);
    result.p99 = absl::Nanoseconds(latencies_ns[latencies_ns.size() * 99 / 100]);
  }
  return result;
}

RunResult RunGrpcRoundRobin(const std::vector<std::string>& backends, int connections, int inflight,
                            absl::Duration duration, int64_t calls = 0) {
  std::vector<std::unique_ptr<Greeter::Stub>> stubs;
  for (int i = 0; i < connections; ++i) {
    grpc::ChannelArguments args;
    args.SetServiceConfigJSON(R"({"loadBalancingConfig":[{"round_robin":{}}]})");
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel = grpc::CreateCustomChannel("ipv4:" + absl::StrJoin(backends, ","),
                                             grpc::InsecureChannelCredentials(), args);
    channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10));
    stubs.push_back(Greeter::NewStub(channel));
  }
  struct Call {
    grpc::ClientContext context;
    HelloRequest request;
    HelloReply reply;
  };
  return Drive(inflight, duration, calls, [&](int64_t index, std::function<void(bool)> done) {
    auto call = std::make_shared<Call>();
    call->request.set_name("bench");
    // The same per-call deadline on both sides (it costs gRPC a timer per call).
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    stubs[index % connections]->async()->SayHello(
        &call->context, &call->request, &call->reply,
        [call, done = std::move(done)](grpc::Status status) { done(status.ok()); });
  });
}

RunResult RunSluice(const std::vector<std::string>& backends, int connections, int inflight,
                    absl::Duration duration, int64_t calls = 0) {
  std::vector<std::unique_ptr<sluice::client::Balancer>> balancers;
  for (int i = 0; i < connections; ++i) {
    sluice::client::BalancerOptions options;
    options.target = "static://" + absl::StrJoin(backends, ",");
    options.policy = "round_robin";
    auto balancer = sluice::client::Balancer::Create(options);
    if (!balancer.ok()) {
      std::fprintf(stderr, "%s\n", std::string(balancer.status().message()).c_str());
      std::exit(1);
    }
    (*balancer)->WaitForReady(backends.size(), absl::Seconds(10));
    balancers.push_back(std::move(*balancer));
  }
  struct Call {
    HelloRequest request;
    HelloReply reply;
  };
  return Drive(inflight, duration, calls, [&](int64_t index, std::function<void(bool)> done) {
    auto call = std::make_shared<Call>();
    call->request.set_name("bench");
    sluice::client::CallOptions options;
    options.method = "/Greeter/SayHello";
    options.deadline = balancers[index % connections]->clock().Now() + absl::Seconds(10);
    sluice::client::UnaryCallAsync<Greeter::Stub>(
        *balancers[index % connections], std::move(options), &call->request, &call->reply,
        [](Greeter::Stub& stub, grpc::ClientContext* context, const HelloRequest* request,
           HelloReply* reply, std::function<void(grpc::Status)> finished) {
          stub.async()->SayHello(context, request, reply, std::move(finished));
        },
        [call, done = std::move(done)](grpc::Status status) { done(status.ok()); });
  });
}

std::string Ms(absl::Duration d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f", absl::ToDoubleMilliseconds(d));
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Sluice client library vs gRPC round_robin, end to end"};
  std::string duration_text = "3s";
  int rounds = 3;
  int inflight = 64;
  std::string out = "bench/results/client_e2e.md";
  std::string only;
  app.add_option("--duration", duration_text, "Length of each run")->capture_default_str();
  app.add_option("--rounds", rounds, "Rounds (median reported)")->capture_default_str();
  app.add_option("--inflight", inflight, "Calls in flight")->capture_default_str();
  app.add_option("--out", out, "Markdown results file")->capture_default_str();
  app.add_option("--only", only, "Run one side only, for profiling: grpc or sluice (no report)");
  int only_connections = 1;
  app.add_option("--only-connections", only_connections, "Connections per backend with --only");
  int64_t only_calls = 0;
  app.add_option("--calls", only_calls,
                 "With --only: make exactly this many calls instead of running for --duration")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  absl::Duration duration;
  if (!absl::ParseDuration(duration_text, &duration)) {
    std::fprintf(stderr, "--duration: not a duration: %s\n", duration_text.c_str());
    return 2;
  }

  std::vector<ChildProcess> servers;
  std::vector<std::string> backends;
  for (int i = 0; i < 3; ++i) {
    std::string ip = absl::StrCat("127.0.0.", 11 + i);
    int port = sluice::testing::FreePort();
    auto child = ChildProcess::Start({sluice::testing::BuiltBinary("bin/greeter_server"), "--ip",
                                      ip, "--port", std::to_string(port), "--quiet"},
                                     {}, "/dev/null");
    if (!child.ok()) return 1;
    servers.push_back(std::move(*child));
    backends.push_back(absl::StrCat(ip, ":", port));
    sluice::testing::WaitFor([&] { return sluice::testing::CanConnect(ip, port); },
                             absl::Seconds(10));
  }

  if (!only.empty()) {
    if (only != "grpc" && only != "sluice") {
      std::fprintf(stderr, "--only: grpc or sluice, got '%s'\n", only.c_str());
      return 2;
    }
    for (int round = 0; round < rounds; ++round) {
      RunResult r =
          only == "grpc"
              ? RunGrpcRoundRobin(backends, only_connections, inflight, duration, only_calls)
              : RunSluice(backends, only_connections, inflight, duration, only_calls);
      std::printf("%s: %.0f calls/s p50 %s ms p99 %s ms, client CPU %.1f us/call, %lld failed\n",
                  only.c_str(), r.qps, Ms(r.p50).c_str(), Ms(r.p99).c_str(),
                  r.client_cpu_us_per_call, static_cast<long long>(r.failed));
      if (r.failed > 0) return 1;  // a count of instructions per call needs every call to succeed
    }
    return 0;
  }
  // cell -> per-round results; interleaved so drift hits both sides alike.
  std::map<std::string, std::vector<RunResult>> cells;
  const std::vector<int> connection_counts = {1, 8};
  for (int round = 0; round < rounds; ++round) {
    for (int connections : connection_counts) {
      RunResult grpc_result = RunGrpcRoundRobin(backends, connections, inflight, duration);
      RunResult sluice_result = RunSluice(backends, connections, inflight, duration);
      cells[absl::StrCat("grpc/", connections)].push_back(grpc_result);
      cells[absl::StrCat("sluice/", connections)].push_back(sluice_result);
      std::fprintf(stderr,
                   "round %d, %d conn: grpc %.0f/s %.1f us/call  sluice %.0f/s %.1f us/call\n",
                   round + 1, connections, grpc_result.qps, grpc_result.client_cpu_us_per_call,
                   sluice_result.qps, sluice_result.client_cpu_us_per_call);
    }
  }
  auto median = [](std::vector<RunResult> runs) {
    std::sort(runs.begin(), runs.end(),
              [](const RunResult& a, const RunResult& b) { return a.qps < b.qps; });
    return runs[runs.size() / 2];
  };

  std::string report = absl::StrCat(
      "# Client library vs gRPC round_robin, end to end\n\n",
      "Command: `build/bench/client_e2e_bench --duration ", duration_text, " --rounds ", rounds,
      " --inflight ", inflight, "`  \n",
      "Date: ", absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::Now(), absl::UTCTimeZone()), "  \n",
      "Setup: 3 greeter_server processes (127.0.0.11-13, --quiet), one client process, ", inflight,
      " unary SayHello calls in flight (callback API, 10 s deadline each), ",
      std::thread::hardware_concurrency(), " cores shared by all. Cells are the median of ", rounds,
      " interleaved rounds. gRPC: channel `ipv4:a,b,c` with the round_robin service config, "
      "local subchannel pool; N connections = N channels used in turn. Sluice: "
      "Balancer(static://a,b,c, round_robin) and UnaryCallAsync; N connections = N balancers.\n\n",
      "Ratio: the median over rounds of (Sluice calls/s / gRPC calls/s) measured back to back in "
      "the same round. Client CPU: user + system time of the client process per call.\n\n",
      "| connections per backend | gRPC calls/s | Sluice calls/s | ratio | gRPC client CPU us/call "
      "| Sluice client CPU us/call | gRPC p50 ms | Sluice p50 ms | gRPC p99 ms | Sluice p99 ms | "
      "failed |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int connections : connection_counts) {
    const auto& grpc_rounds = cells[absl::StrCat("grpc/", connections)];
    const auto& sluice_rounds = cells[absl::StrCat("sluice/", connections)];
    std::vector<double> ratios;
    for (size_t i = 0; i < grpc_rounds.size(); ++i) {
      ratios.push_back(sluice_rounds[i].qps / grpc_rounds[i].qps);
    }
    std::sort(ratios.begin(), ratios.end());
    RunResult g = median(grpc_rounds);
    RunResult s = median(sluice_rounds);
    char cells_text[128];
    std::snprintf(cells_text, sizeof(cells_text), "%.3f | %.1f | %.1f", ratios[ratios.size() / 2],
                  g.client_cpu_us_per_call, s.client_cpu_us_per_call);
    absl::StrAppend(&report, "| ", connections, " | ", static_cast<int64_t>(g.qps), " | ",
                    static_cast<int64_t>(s.qps), " | ", cells_text, " | ", Ms(g.p50), " | ",
                    Ms(s.p50), " | ", Ms(g.p99), " | ", Ms(s.p99), " | ", g.failed + s.failed,
                    " |\n");
  }
  absl::StrAppend(&report, "\nGoal: Sluice calls/s >= 0.97 x gRPC's.\n");
  std::ofstream(out) << report;
  std::printf("%s", report.c_str());
  return 0;
}
