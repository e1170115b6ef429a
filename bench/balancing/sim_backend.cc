// Simulated Greeter backends for the balancing benchmark: service time is spent on timers, not
// CPU, so a 2-core machine can host backends "busier" than it is. Each backend has `slots`
// concurrent slots and an unbounded FIFO queue beyond them; a call holds a slot for a drawn
// service time. A scenario file changes slots, service time, periodic stalls (a GC-like freeze
// of the whole backend) and fail-fast mode over scenario time. One process serves every backend
// (one gRPC server each) and publishes their true queue lengths in the shared state file.
//
//   balancing_backend --listen 127.0.0.11:P1,127.0.0.12:P2,... --scenario FILE --state FILE
//
// Scenario file (JSON):
//   {"backends": [{"slots": 4, "service_ms": 20, "distribution": "exponential"}, ...],
//    "events": [{"at_s": 10, "backend": 2, "slots": 2}, {"at_s": 5, "backend": 1,
//                "fail_fast": true}, {"at_s": 3, "backend": 0, "service_ms": 60}],
//    "stalls": [{"backend": 0, "first_s": 1, "every_s": 2, "length_s": 0.3}]}
// The reply's message (or a failed call's status message) starts with "b<index>".
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "helloworld.grpc.pb.h"
#include "shared_state.h"

namespace sluice::bench {
namespace {

enum class Distribution { kExponential, kConstant };

struct BackendModel {
  int slots = 4;
  double service_ms = 20;
  Distribution distribution = Distribution::kExponential;
  bool fail_fast = false;
  // Periodic stalls in scenario time: [first + k*every, first + k*every + length).
  double stall_first_s = 0, stall_every_s = 0, stall_length_s = 0;
};

struct ScenarioEvent {
  double at_s;
  int backend;
  nlohmann::json changes;
};

struct Scenario {
  std::vector<BackendModel> backends;
  std::vector<ScenarioEvent> events;  // sorted by time
};

// Errors name the field; the benchmark's own scenarios are generated, so this is for people
// editing them by hand.
bool ApplyChanges(const nlohmann::json& changes, BackendModel* model, std::string* error) {
  for (const auto& [key, value] : changes.items()) {
    if (key == "slots" && value.is_number_integer() && value.get<int>() >= 1) {
      model->slots = value.get<int>();
    } else if (key == "service_ms" && value.is_number() && value.get<double>() > 0) {
      model->service_ms = value.get<double>();
    } else if (key == "distribution" && value == "exponential") {
      model->distribution = Distribution::kExponential;
    } else if (key == "distribution" && value == "constant") {
      model->distribution = Distribution::kConstant;
    } else if (key == "fail_fast" && value.is_boolean()) {
      model->fail_fast = value.get<bool>();
    } else if (key != "at_s" && key != "backend") {
      *error = absl::StrCat("bad scenario field '", key, "': ", value.dump(),
                            " (slots >= 1, service_ms > 0, distribution exponential|constant, "
                            "fail_fast true|false)");
      return false;
    }
  }
  return true;
}

bool LoadScenario(const std::string& path, size_t backend_count, Scenario* scenario,
                  std::string* error) {
  std::ifstream in(path);
  const nlohmann::json doc = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("backends") ||
      !doc["backends"].is_array() || doc["backends"].size() != backend_count) {
    *error = absl::StrCat(path, ": not a scenario with one 'backends' entry per --listen address");
    return false;
  }
  for (const auto& b : doc["backends"]) {
    BackendModel model;
    if (!ApplyChanges(b, &model, error)) return false;
    scenario->backends.push_back(model);
  }
  auto index_of = [&](const nlohmann::json& item, int* index) {
    if (!item.contains("backend") || !item["backend"].is_number_integer()) return false;
    *index = item["backend"].get<int>();
    return *index >= 0 && *index < static_cast<int>(backend_count);
  };
  for (const auto& e : doc.value("events", nlohmann::json::array())) {
    int index;
    if (!index_of(e, &index) || !e.contains("at_s") || !e["at_s"].is_number()) {
      *error = absl::StrCat("bad event (needs at_s and a valid backend): ", e.dump());
      return false;
    }
    BackendModel check;
    if (!ApplyChanges(e, &check, error)) return false;
    scenario->events.push_back({e["at_s"].get<double>(), index, e});
  }
  std::stable_sort(scenario->events.begin(), scenario->events.end(),
                   [](const ScenarioEvent& a, const ScenarioEvent& b) { return a.at_s < b.at_s; });
  for (const auto& s : doc.value("stalls", nlohmann::json::array())) {
    int index;
    if (!index_of(s, &index) || !s.value("every_s", 0.0) || !s.contains("length_s")) {
      *error = absl::StrCat("bad stall (needs backend, every_s > 0, length_s): ", s.dump());
      return false;
    }
    BackendModel& m = scenario->backends[index];
    m.stall_first_s = s.value("first_s", 0.0);
    m.stall_every_s = s["every_s"].get<double>();
    m.stall_length_s = s["length_s"].get<double>();
  }
  return true;
}

// Nanoseconds of [from, to) (scenario time) that fall inside the model's stalls.
int64_t StallOverlapNanos(const BackendModel& m, int64_t from, int64_t to) {
  if (m.stall_every_s <= 0 || m.stall_length_s <= 0 || to <= from) return 0;
  const double first = m.stall_first_s * 1e9, every = m.stall_every_s * 1e9;
  const double length = m.stall_length_s * 1e9;
  int64_t k = std::max<int64_t>(0, static_cast<int64_t>(std::floor((from - first) / every)));
  int64_t total = 0;
  for (;; ++k) {
    const double start = first + static_cast<double>(k) * every;
    if (start >= to) break;
    const double overlap = std::min<double>(to, start + length) - std::max<double>(from, start);
    if (overlap > 0) total += static_cast<int64_t>(overlap);
  }
  return total;
}

class SimulatedBackends {
 public:
  SimulatedBackends(Scenario scenario, SharedState* shared)
      : scenario_(std::move(scenario)),
        shared_(shared),
        busy_(scenario_.backends.size(), 0),
        waiting_(scenario_.backends.size()),
        random_(12345) {}

  void Arrive(int backend, grpc::CallbackServerContext* context,
              grpc::ServerUnaryReactor* reactor) {
    std::vector<Done> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const int64_t now = MonotonicNanos();
      shared_->arrived[backend].fetch_add(1);
      ApplyEventsLocked(now, &done);
      if (scenario_.backends[backend].fail_fast) {
        timers_.push({now + 1'000'000, backend, reactor, context, 0, 0, true});
      } else if (busy_[backend] < scenario_.backends[backend].slots) {
        StartLocked(backend, reactor, context, now);
      } else {
        waiting_[backend].push_back({reactor, context});
      }
      PublishLocked(backend);
    }
    cv_.notify_one();
    Finish(done);
  }

  // The timer loop: completes calls, applies scenario events. Never returns.
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      std::vector<Done> done;
      const int64_t now = MonotonicNanos();
      ApplyEventsLocked(now, &done);
      while (!timers_.empty() && timers_.top().due_ns <= now) {
        Timer t = timers_.top();
        timers_.pop();
        if (t.fail) {
          done.push_back({t.reactor, grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                  absl::StrCat("b", t.backend, " fail-fast"))});
          Answered(t.backend);
          continue;
        }
        // A stall freezes the backend: service time spent inside one does not count.
        const BackendModel& m = scenario_.backends[t.backend];
        const int64_t epoch = shared_->epoch_ns.load();
        const int64_t stalled =
            epoch == 0 ? 0 : StallOverlapNanos(m, t.start_ns - epoch, t.due_ns - epoch);
        if (stalled > t.stall_counted_ns) {
          t.due_ns += stalled - t.stall_counted_ns;
          t.stall_counted_ns = stalled;
          timers_.push(t);
          continue;
        }
        --busy_[t.backend];
        done.push_back({t.reactor, grpc::Status::OK});
        Answered(t.backend);
        StartWaitingLocked(t.backend, now, &done);
        PublishLocked(t.backend);
      }
      lock.unlock();
      Finish(done);
      lock.lock();
      // Wake for the next completion, and at least every 2 ms for scenario events.
      int64_t wake = MonotonicNanos() + 2'000'000;
      if (!timers_.empty()) wake = std::min(wake, timers_.top().due_ns);
      cv_.wait_until(lock, std::chrono::steady_clock::time_point(std::chrono::nanoseconds(wake)));
    }
  }

 private:
  struct Timer {
    int64_t due_ns;
    int backend;
    grpc::ServerUnaryReactor* reactor;
    grpc::CallbackServerContext* context;
    int64_t start_ns;
    int64_t stall_counted_ns;
    bool fail;
    bool operator>(const Timer& o) const { return due_ns > o.due_ns; }
  };
  struct Waiting {
    grpc::ServerUnaryReactor* reactor;
    grpc::CallbackServerContext* context;
  };
  struct Done {
    grpc::ServerUnaryReactor* reactor;
    grpc::Status status;
  };

  static void Finish(std::vector<Done>& done) {
    for (auto& d : done) d.reactor->Finish(d.status);
  }

  void Answered(int backend) { shared_->answered[backend].fetch_add(1); }

  void StartLocked(int backend, grpc::ServerUnaryReactor* reactor,
                   grpc::CallbackServerContext* context, int64_t now) {
    const BackendModel& m = scenario_.backends[backend];
    double ms = m.service_ms;
    if (m.distribution == Distribution::kExponential) {
      ms = std::exponential_distribution<double>(1.0 / m.service_ms)(random_);
    }
    ++busy_[backend];
    timers_.push({now + static_cast<int64_t>(ms * 1e6), backend, reactor, context, now, 0, false});
  }

  void StartWaitingLocked(int backend, int64_t now, std::vector<Done>* done) {
    auto& queue = waiting_[backend];
    while (!queue.empty() && busy_[backend] < scenario_.backends[backend].slots) {
      Waiting w = queue.front();
      queue.pop_front();
      if (w.context->IsCancelled()) {
        // Its caller gave up (deadline): it takes no slot.
        done->push_back({w.reactor, grpc::Status::CANCELLED});
        Answered(backend);
        continue;
      }
      StartLocked(backend, w.reactor, w.context, now);
    }
  }

  void ApplyEventsLocked(int64_t now, std::vector<Done>* done) {
    const int64_t epoch = shared_->epoch_ns.load();
    if (epoch == 0) return;
    while (next_event_ < scenario_.events.size() &&
           epoch + static_cast<int64_t>(scenario_.events[next_event_].at_s * 1e9) <= now) {
      const ScenarioEvent& e = scenario_.events[next_event_++];
      std::string ignored;
      ApplyChanges(e.changes, &scenario_.backends[e.backend], &ignored);
      StartWaitingLocked(e.backend, now, done);
      PublishLocked(e.backend);
    }
  }

  void PublishLocked(int backend) {
    shared_->queue_length[backend].store(busy_[backend] +
                                         static_cast<int32_t>(waiting_[backend].size()));
  }

  std::mutex mu_;
  std::condition_variable cv_;
  Scenario scenario_;
  SharedState* const shared_;
  std::vector<int32_t> busy_;
  std::vector<std::deque<Waiting>> waiting_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  size_t next_event_ = 0;
  std::mt19937_64 random_;
};

class GreeterFront final : public Greeter::CallbackService {
 public:
  GreeterFront(int index, SimulatedBackends* backends) : index_(index), backends_(backends) {}
  grpc::ServerUnaryReactor* SayHello(grpc::CallbackServerContext* context, const HelloRequest*,
                                     HelloReply* reply) override {
    reply->set_message(absl::StrCat("b", index_));
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    backends_->Arrive(index_, context, reactor);
    return reactor;
  }

 private:
  const int index_;
  SimulatedBackends* const backends_;
};

int Main(int argc, char** argv) {
  std::string listen, scenario_path, state_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--listen")
      listen = argv[i + 1];
    else if (flag == "--scenario")
      scenario_path = argv[i + 1];
    else if (flag == "--state")
      state_path = argv[i + 1];
  }
  if (listen.empty() || scenario_path.empty() || state_path.empty()) {
    std::fprintf(stderr,
                 "usage: balancing_backend --listen IP:PORT[,IP:PORT...] --scenario FILE "
                 "--state FILE\n");
    return 2;
  }
  const std::vector<std::string> addresses = absl::StrSplit(listen, ',');
  if (addresses.size() > kMaxSimulatedBackends) {
    std::fprintf(stderr, "balancing_backend: at most %d backends\n", kMaxSimulatedBackends);
    return 2;
  }
  Scenario scenario;
  std::string error;
  if (!LoadScenario(scenario_path, addresses.size(), &scenario, &error)) {
    std::fprintf(stderr, "balancing_backend: %s\n", error.c_str());
    return 2;
  }
  absl::StatusOr<SharedState*> shared = MapSharedState(state_path, /*create=*/true);
  if (!shared.ok()) {
    std::fprintf(stderr, "balancing_backend: %s\n", std::string(shared.status().message()).c_str());
    return 1;
  }
  SimulatedBackends backends(std::move(scenario), *shared);
  std::vector<std::unique_ptr<GreeterFront>> fronts;
  std::vector<std::unique_ptr<grpc::Server>> servers;
  for (size_t i = 0; i < addresses.size(); ++i) {
    fronts.push_back(std::make_unique<GreeterFront>(static_cast<int>(i), &backends));
    grpc::ServerBuilder builder;
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    int port = 0;
    builder.AddListeningPort(addresses[i], grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(fronts.back().get());
    servers.push_back(builder.BuildAndStart());
    if (servers.back() == nullptr || port == 0) {
      std::fprintf(stderr, "balancing_backend: cannot listen on %s\n", addresses[i].c_str());
      return 1;
    }
  }
  std::printf("balancing_backend: serving %zu backends\n", addresses.size());
  std::fflush(stdout);
  // Runs until SIGTERM ends the process: the calls it holds die with it, as with a real crash,
  // and the benchmark stops it only between arms.
  backends.Run();
  return 0;
}

}  // namespace
}  // namespace sluice::bench

int main(int argc, char** argv) { return sluice::bench::Main(argc, argv); }
