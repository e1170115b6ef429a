// Open-loop Greeter load for the balancing benchmark: calls arrive as a Poisson process at a
// fixed rate whatever the answers do (a slow system gets no respite, as with real users), and
// each call's latency counts from its scheduled start, so a driver that falls behind cannot hide
// queueing. One arm per process:
//   sluice:POLICY      the Sluice client library over static://BACKENDS
//   channel:IP:PORT    a plain gRPC channel to a proxy (sluice proxy, HAProxy, nginx)
//   grpc_round_robin   gRPC C++'s own round_robin over BACKENDS
//   oracle             join-shortest-queue on the backends' true queue lengths (shared state)
//
//   balancing_load --arm A --backends IP:PORT,... --state FILE --rate 350 --duration 30
//                  --start-ns MONOTONIC_NS --out FILE [--seed N] [--deadline-ms 5000]
//                  [--policy-config JSON]
// Before --start-ns it sends a light warm-up (unrecorded); at --start-ns it starts scenario time
// in the shared state. Output: one line per call, "scheduled_ms latency_ms backend grpc_code"
// (backend -1 when the answer does not say).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "helloworld.grpc.pb.h"
#include "shared_state.h"
#include "sluice/client/balancer.h"
#include "sluice/client/call.h"

namespace sluice::bench {
namespace {

struct Flags {
  std::string arm, state, out, policy_config;
  std::vector<std::string> backends;
  double rate = 0, duration_s = 0;
  int64_t start_ns = 0;
  uint64_t seed = 1;
  int deadline_ms = 5000;
};

struct Call {
  HelloRequest request;
  HelloReply reply;
  grpc::ClientContext context;  // used by the plain-channel arms only
  int64_t scheduled_ns = 0;
  int64_t record = -1;  // index into the records, or -1 for a warm-up call
};

using Done = std::function<void(grpc::Status)>;

// One way of sending a call. Send returns at once; `done` runs when the call ends.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual void Send(Call* call, absl::Duration deadline, Done done) = 0;
};

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, const std::string& lb) {
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(absl::StrCat(R"({"loadBalancingConfig":[{")", lb, R"(":{}}]})"));
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return channel;
}

void SetDeadline(Call* call, absl::Duration deadline) {
  call->context.set_deadline(std::chrono::system_clock::now() +
                             absl::ToChronoMilliseconds(deadline));
}

class ChannelTransport final : public Transport {
 public:
  ChannelTransport(const std::string& target, const std::string& lb)
      : stub_(Greeter::NewStub(MakeChannel(target, lb))) {}
  void Send(Call* call, absl::Duration deadline, Done done) override {
    SetDeadline(call, deadline);
    stub_->async()->SayHello(&call->context, &call->request, &call->reply, std::move(done));
  }

 private:
  std::unique_ptr<Greeter::Stub> stub_;
};

// The limit to measure against: it sees what no balancer can, each backend's true queue.
class OracleTransport final : public Transport {
 public:
  OracleTransport(const std::vector<std::string>& backends, SharedState* shared, uint64_t seed)
      : shared_(shared), random_(seed) {
    for (const auto& b : backends) stubs_.push_back(Greeter::NewStub(MakeChannel(b, "pick_first")));
  }
  void Send(Call* call, absl::Duration deadline, Done done) override {
    // Shortest queue, counting calls on their way as queued; ties broken at random from a
    // random starting point.
    const size_t n = stubs_.size();
    const size_t start = std::uniform_int_distribution<size_t>(0, n - 1)(random_);
    size_t best = start;
    int64_t best_length = Length(start);
    for (size_t k = 1; k < n; ++k) {
      const size_t i = (start + k) % n;
      const int64_t length = Length(i);
      if (length < best_length) {
        best = i;
        best_length = length;
      }
    }
    shared_->dispatched[best].fetch_add(1);
    SetDeadline(call, deadline);
    stubs_[best]->async()->SayHello(&call->context, &call->request, &call->reply, std::move(done));
  }

 private:
  int64_t Length(size_t i) const {
    const int64_t on_the_way = shared_->dispatched[i].load() - shared_->arrived[i].load();
    return shared_->queue_length[i].load() + std::max<int64_t>(0, on_the_way);
  }

  SharedState* const shared_;
  std::vector<std::unique_ptr<Greeter::Stub>> stubs_;
  std::mt19937_64 random_;  // the sender thread only
};

class SluiceTransport final : public Transport {
 public:
  explicit SluiceTransport(std::unique_ptr<client::Balancer> balancer)
      : balancer_(std::move(balancer)) {}
  void Send(Call* call, absl::Duration deadline, Done done) override {
    client::CallOptions options;
    options.method = "/Greeter/SayHello";
    options.deadline = balancer_->clock().Now() + deadline;
    client::UnaryCallAsync<Greeter::Stub>(
        *balancer_, std::move(options), &call->request, &call->reply,
        [](Greeter::Stub& stub, grpc::ClientContext* context, const HelloRequest* request,
           HelloReply* reply, std::function<void(grpc::Status)> finished) {
          stub.async()->SayHello(context, request, reply, std::move(finished));
        },
        std::move(done));
  }

 private:
  std::unique_ptr<client::Balancer> balancer_;
};

absl::StatusOr<std::unique_ptr<Transport>> MakeTransport(const Flags& flags, SharedState* shared) {
  if (absl::StartsWith(flags.arm, "sluice:")) {
    client::BalancerOptions options;
    options.target = "static://" + absl::StrJoin(flags.backends, ",");
    options.policy = flags.arm.substr(7);
    if (!flags.policy_config.empty()) {
      options.policy_config = nlohmann::json::parse(flags.policy_config, nullptr, false);
      if (options.policy_config.is_discarded()) {
        return absl::InvalidArgumentError("--policy-config is not JSON: " + flags.policy_config);
      }
    }
    options.random_seed = flags.seed;
    absl::StatusOr<std::unique_ptr<client::Balancer>> balancer = client::Balancer::Create(options);
    if (!balancer.ok()) return balancer.status();
    (*balancer)->WaitForReady(flags.backends.size(), absl::Seconds(10));
    return std::make_unique<SluiceTransport>(std::move(*balancer));
  }
  if (absl::StartsWith(flags.arm, "channel:")) {
    return std::make_unique<ChannelTransport>("ipv4:" + flags.arm.substr(8), "pick_first");
  }
  if (flags.arm == "grpc_round_robin") {
    return std::make_unique<ChannelTransport>("ipv4:" + absl::StrJoin(flags.backends, ","),
                                              "round_robin");
  }
  if (flags.arm == "oracle") {
    return std::make_unique<OracleTransport>(flags.backends, shared, flags.seed);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown --arm '", flags.arm, "': sluice:POLICY, channel:IP:PORT, grpc_round_robin, oracle"));
}

struct Record {
  double scheduled_ms = 0;
  double latency_ms = -1;  // -1: never ended
  int backend = -1;
  int code = -1;
};

int BackendOf(const std::string& text) {
  // "b<index>..." as the simulated backends write it.
  if (text.size() < 2 || text[0] != 'b' || text[1] < '0' || text[1] > '9') return -1;
  return std::atoi(text.c_str() + 1);
}

void SleepUntil(int64_t monotonic_ns) {
  std::this_thread::sleep_until(
      std::chrono::steady_clock::time_point(std::chrono::nanoseconds(monotonic_ns)));
}

int Run(const Flags& flags) {
  absl::StatusOr<SharedState*> shared = MapSharedState(flags.state, /*create=*/false);
  if (!shared.ok()) {
    std::fprintf(stderr, "balancing_load: %s\n", std::string(shared.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<Transport>> transport = MakeTransport(flags, *shared);
  if (!transport.ok()) {
    std::fprintf(stderr, "balancing_load: %s\n", std::string(transport.status().message()).c_str());
    return 2;
  }
  const absl::Duration deadline = absl::Milliseconds(flags.deadline_ms);
  const size_t capacity = static_cast<size_t>(flags.rate * flags.duration_s * 1.5) + 1000;
  std::vector<Record> records(capacity);
  std::atomic<int64_t> outstanding{0};
  std::atomic<int64_t> warmup_failures{0};

  auto send = [&](int64_t scheduled_ns, int64_t record) {
    auto* call = new Call;
    call->request.set_name("bench");
    call->scheduled_ns = scheduled_ns;
    call->record = record;
    outstanding.fetch_add(1);
    (*transport)->Send(call, deadline, [&, call](grpc::Status status) {
      const int64_t now = MonotonicNanos();
      if (call->record >= 0) {
        Record& r = records[call->record];
        r.latency_ms = static_cast<double>(now - call->scheduled_ns) / 1e6;
        r.code = status.error_code();
        r.backend = BackendOf(status.ok() ? call->reply.message() : status.error_message());
      } else if (!status.ok()) {
        warmup_failures.fetch_add(1);
      }
      delete call;
      outstanding.fetch_sub(1);  // last: the main thread may read the records once this is 0
    });
  };

  std::mt19937_64 random(flags.seed);
  std::exponential_distribution<double> warmup_gap(50.0), gap(flags.rate);
  // Warm-up: connections open, the policy sees some calls; nothing is recorded.
  for (int64_t t = MonotonicNanos(); t < flags.start_ns;
       t += static_cast<int64_t>(warmup_gap(random) * 1e9)) {
    SleepUntil(t);
    send(t, -1);
  }
  int64_t expected = 0;
  (*shared)->epoch_ns.compare_exchange_strong(expected, flags.start_ns);
  const int64_t end_ns = flags.start_ns + static_cast<int64_t>(flags.duration_s * 1e9);
  size_t sent = 0;
  for (int64_t t = flags.start_ns + static_cast<int64_t>(gap(random) * 1e9);
       t < end_ns && sent < capacity; t += static_cast<int64_t>(gap(random) * 1e9)) {
    SleepUntil(t);
    records[sent].scheduled_ms = static_cast<double>(t - flags.start_ns) / 1e6;
    send(t, static_cast<int64_t>(sent));
    ++sent;
  }
  // Every call ends by its deadline; allow a margin for the transport to report it.
  const int64_t give_up = MonotonicNanos() + (flags.deadline_ms + 3000) * 1'000'000LL;
  while (outstanding.load() > 0 && MonotonicNanos() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  FILE* out = std::fopen(flags.out.c_str(), "w");
  if (out == nullptr) {
    std::fprintf(stderr, "balancing_load: cannot write %s\n", flags.out.c_str());
    return 1;
  }
  for (size_t i = 0; i < sent; ++i) {
    const Record& r = records[i];
    std::fprintf(out, "%.3f %.3f %d %d\n", r.scheduled_ms, r.latency_ms, r.backend, r.code);
  }
  std::fclose(out);
  std::fprintf(stderr, "balancing_load %s: %zu calls, %lld never ended, %lld warm-up failures\n",
               flags.arm.c_str(), sent, static_cast<long long>(outstanding.load()),
               static_cast<long long>(warmup_failures.load()));
  // Calls that never ended still reference the records: leave without destructors.
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace
}  // namespace sluice::bench

int main(int argc, char** argv) {
  sluice::bench::Flags flags;
  std::string backends;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--arm")
      flags.arm = value;
    else if (flag == "--backends")
      backends = value;
    else if (flag == "--state")
      flags.state = value;
    else if (flag == "--out")
      flags.out = value;
    else if (flag == "--policy-config")
      flags.policy_config = value;
    else if (flag == "--rate")
      flags.rate = std::atof(value.c_str());
    else if (flag == "--duration")
      flags.duration_s = std::atof(value.c_str());
    else if (flag == "--start-ns")
      flags.start_ns = std::atoll(value.c_str());
    else if (flag == "--seed")
      flags.seed = std::strtoull(value.c_str(), nullptr, 10);
    else if (flag == "--deadline-ms")
      flags.deadline_ms = std::atoi(value.c_str());
    else {
      std::fprintf(stderr, "balancing_load: unknown flag %s (see the comment atop the source)\n",
                   flag.c_str());
      return 2;
    }
  }
  if (!backends.empty()) flags.backends = absl::StrSplit(backends, ',');
  if (flags.arm.empty() || flags.state.empty() || flags.out.empty() || flags.rate <= 0 ||
      flags.duration_s <= 0 || flags.start_ns <= 0 || flags.backends.empty()) {
    std::fprintf(stderr,
                 "usage: balancing_load --arm A --backends IP:PORT,... --state FILE --rate R "
                 "--duration S --start-ns NS --out FILE [--seed N] [--deadline-ms MS] "
                 "[--policy-config JSON]\n");
    return 2;
  }
  return sluice::bench::Run(flags);
}
