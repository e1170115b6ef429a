// HealthWatcher and HealthMonitor against real gRPC servers on loopback "pod" addresses: gRPC's
// default health service, a servicer of our own that can drop Watch, and a server without any.
#include "sluice/health/health_watcher.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "health_test_servers.h"
#include "helloworld.grpc.pb.h"
#include "process.h"
#include "sluice/core/clock.h"
#include "sluice/health/health_monitor.h"

namespace sluice::health {
namespace {

using testing::FlippableHealthService;
using testing::Scaled;
using testing::WaitFor;
using ServingStatus = grpc::health::v1::HealthCheckResponse;

constexpr char kPodIp[] = "127.0.0.11";

// A real server on 127.0.0.11 with the given services; `default_health` adds gRPC's own
// health service (grpc::EnableDefaultHealthCheckService is process-wide, so it is set per build).
struct TestServer {
  std::unique_ptr<grpc::Server> server;
  std::string address;
  int port = 0;

  static TestServer Start(std::vector<grpc::Service*> services, bool default_health, int port = 0) {
    grpc::EnableDefaultHealthCheckService(default_health);
    TestServer result;
    grpc::ServerBuilder builder;
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.AddListeningPort(absl::StrCat(kPodIp, ":", port), grpc::InsecureServerCredentials(),
                             &result.port);
    for (grpc::Service* service : services) builder.RegisterService(service);
    // A server needs one service besides gRPC's own health service to poll its queues.
    static Greeter::Service greeter;
    builder.RegisterService(&greeter);
    result.server = builder.BuildAndStart();
    grpc::EnableDefaultHealthCheckService(false);
    result.address = absl::StrCat(kPodIp, ":", result.port);
    return result;
  }
  void SetServing(const std::string& service, bool serving) {
    server->GetHealthCheckService()->SetServingStatus(service, serving);
  }
};

std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

// Records every state a listener hears.
class Recorder {
 public:
  HealthListener Listener() {
    return [this](HealthState state) {
      std::lock_guard<std::mutex> lock(mu_);
      states_.push_back(state);
    };
  }
  std::vector<HealthState> states() const {
    std::lock_guard<std::mutex> lock(mu_);
    return states_;
  }
  HealthState last() const {
    std::lock_guard<std::mutex> lock(mu_);
    return states_.empty() ? HealthState::kPending : states_.back();
  }

 private:
  mutable std::mutex mu_;
  std::vector<HealthState> states_;
};

HealthCheckOptions FastOptions(std::string service) {
  HealthCheckOptions options;
  options.service = std::move(service);
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  options.poll_interval = absl::Milliseconds(20);
  options.check_timeout = absl::Milliseconds(500);
  options.no_service_recheck = absl::Milliseconds(200);
  return options;
}

bool Becomes(const HealthWatcher& watcher, HealthState state, absl::Duration within) {
  return WaitFor([&] { return watcher.state() == state; }, Scaled(within));
}

TEST(HealthWatcherTest, WatchFollowsTheDefaultHealthServiceWithin100ms) {
  TestServer server = TestServer::Start({}, /*default_health=*/true);
  ASSERT_NE(server.server, nullptr);
  server.SetServing("greeter", true);
  Recorder recorder;
  auto watcher =
      HealthWatcher::Start(ChannelTo(server.address), FastOptions("greeter"), recorder.Listener());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  ASSERT_TRUE(Becomes(**watcher, HealthState::kServing, absl::Seconds(5)));

  server.SetServing("greeter", false);
  EXPECT_TRUE(Becomes(**watcher, HealthState::kNotServing, absl::Milliseconds(100)));
  server.SetServing("greeter", true);
  EXPECT_TRUE(Becomes(**watcher, HealthState::kServing, absl::Milliseconds(100)));
  EXPECT_EQ(recorder.states(),
            (std::vector<HealthState>{HealthState::kServing, HealthState::kNotServing,
                                      HealthState::kServing}));
  EXPECT_GT((*watcher)->last_answer_time(), absl::InfinitePast());
  server.server->Shutdown(std::chrono::system_clock::now());
}

TEST(HealthWatcherTest, AnUnknownServiceNameIsServiceUnknown) {
  TestServer server = TestServer::Start({}, /*default_health=*/true);
  auto watcher =
      HealthWatcher::Start(ChannelTo(server.address), FastOptions("no.such.Service"), nullptr);
  ASSERT_TRUE(watcher.ok());
  EXPECT_TRUE(Becomes(**watcher, HealthState::kServiceUnknown, absl::Seconds(5)));
  EXPECT_FALSE(IsPickable((*watcher)->state()));
  server.server->Shutdown(std::chrono::system_clock::now());
}

TEST(HealthWatcherTest, PollsCheckWhereWatchIsUnimplemented) {
  FlippableHealthService health(/*watch_implemented=*/false);
  TestServer server = TestServer::Start({&health}, false);
  auto watcher = HealthWatcher::Start(ChannelTo(server.address), FastOptions(""), nullptr);
  ASSERT_TRUE(watcher.ok());
  ASSERT_TRUE(Becomes(**watcher, HealthState::kServing, absl::Seconds(5)));
  health.Set(ServingStatus::NOT_SERVING);
  // One poll interval (20 ms) plus the call.
  EXPECT_TRUE(Becomes(**watcher, HealthState::kNotServing, absl::Milliseconds(100)));
  health.Set(ServingStatus::SERVING);
  EXPECT_TRUE(Becomes(**watcher, HealthState::kServing, absl::Milliseconds(100)));
  EXPECT_GE(health.checks(), 3);
  EXPECT_EQ(health.watch_streams(), 0);
  server.server->Shutdown(std::chrono::system_clock::now());
}

TEST(HealthWatcherTest, AServerWithoutHealthServiceCountsAsHealthy) {
  TestServer server = TestServer::Start({}, /*default_health=*/false);
  auto watcher = HealthWatcher::Start(ChannelTo(server.address), FastOptions("greeter"), nullptr);
  ASSERT_TRUE(watcher.ok());
  EXPECT_TRUE(Becomes(**watcher, HealthState::kNoHealthService, absl::Seconds(5)));
  EXPECT_TRUE(IsPickable((*watcher)->state()));
  server.server->Shutdown(std::chrono::system_clock::now());
}

TEST(HealthWatcherTest, TurnedOffOpensNoStreamAndCountsAsHealthy) {
  FlippableHealthService health(/*watch_implemented=*/true);
  health.Set(ServingStatus::NOT_SERVING);
  TestServer server = TestServer::Start({&health}, false);
  HealthCheckOptions options = FastOptions("");
  options.enabled = false;
  Recorder recorder;
  auto watcher = HealthWatcher::Start(ChannelTo(server.address), options, recorder.Listener());
  ASSERT_TRUE(watcher.ok());
  EXPECT_EQ((*watcher)->state(), HealthState::kNotChecked);
  EXPECT_EQ(recorder.states(), std::vector<HealthState>{HealthState::kNotChecked});
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(health.watch_streams() + health.checks(), 0);
  watcher->reset();
  health.Stop();
  server.server->Shutdown(std::chrono::system_clock::now());
}

TEST(HealthWatcherTest, KeepsTheLastAnswerWhileTheBackendIsGoneAndReconnects) {
  TestServer first = TestServer::Start({}, /*default_health=*/true);
  first.SetServing("", true);
  auto watcher = HealthWatcher::Start(ChannelTo(first.address), FastOptions(""), nullptr);
  ASSERT_TRUE(watcher.ok());
  ASSERT_TRUE(Becomes(**watcher, HealthState::kServing, absl::Seconds(5)));
  first.SetServing("", false);
  ASSERT_TRUE(Becomes(**watcher, HealthState::kNotServing, absl::Seconds(1)));
  const int port = first.port;
  first.server->Shutdown(std::chrono::system_clock::now());
  first.server.reset();
  // Gone: the stream broke, but a backend that said NOT_SERVING stays not pickable.
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ((*watcher)->state(), HealthState::kNotServing);

  // Back on the same port and serving: the stream is reopened after its backoff.
  TestServer second = TestServer::Start({}, /*default_health=*/true, port);
  ASSERT_NE(second.server, nullptr);
  second.SetServing("", true);
  EXPECT_TRUE(Becomes(**watcher, HealthState::kServing, absl::Seconds(5)));
  second.server->Shutdown(std::chrono::system_clock::now());
}

TEST(HealthWatcherTest, StopsPromptlyWhileWaitingForALongPoll) {
  FlippableHealthService health(/*watch_implemented=*/false);
  TestServer server = TestServer::Start({&health}, false);
  HealthCheckOptions options = FastOptions("");
  options.poll_interval = absl::Minutes(10);
  auto watcher = HealthWatcher::Start(ChannelTo(server.address), options, nullptr);
  ASSERT_TRUE(watcher.ok());
  ASSERT_TRUE(Becomes(**watcher, HealthState::kServing, absl::Seconds(5)));
  const absl::Time start = absl::Now();
  watcher->reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  server.server->Shutdown(std::chrono::system_clock::now());
}

TEST(HealthWatcherTest, RejectsBadOptionsNamingThem) {
  HealthCheckOptions options;
  options.poll_interval = absl::ZeroDuration();
  auto watcher = HealthWatcher::Start(ChannelTo("127.0.0.11:1"), options, nullptr);
  ASSERT_FALSE(watcher.ok());
  EXPECT_NE(watcher.status().message().find("poll_interval"), std::string::npos)
      << watcher.status();
}

TEST(HealthMonitorTest, OneStreamPerEndpointHoweverManySubscribers) {
  FlippableHealthService health(/*watch_implemented=*/true);
  TestServer server = TestServer::Start({&health}, false);
  HealthMonitor monitor(ChannelTo);
  Recorder first, second;
  auto a = monitor.Subscribe(server.address, FastOptions(""), first.Listener());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(
      WaitFor([&] { return first.last() == HealthState::kServing; }, Scaled(absl::Seconds(5))));
  // A later subscriber hears the known state at once, from the same stream.
  auto b = monitor.Subscribe(server.address, FastOptions(""), second.Listener());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(second.states(), std::vector<HealthState>{HealthState::kServing});
  EXPECT_EQ(monitor.watcher_count(), 1u);

  health.Set(ServingStatus::NOT_SERVING);
  EXPECT_TRUE(WaitFor(
      [&] {
        return first.last() == HealthState::kNotServing &&
               second.last() == HealthState::kNotServing;
      },
      Scaled(absl::Milliseconds(100))));
  EXPECT_EQ((*b)->state(), HealthState::kNotServing);
  EXPECT_EQ(health.watch_streams(), 1);

  a->reset();
  EXPECT_EQ(monitor.watcher_count(), 1u);
  b->reset();
  EXPECT_EQ(monitor.watcher_count(), 0u);
  // The last subscriber gone, the stream is closed.
  EXPECT_TRUE(WaitFor([&] { return health.open_watch_streams() == 0; }, Scaled(absl::Seconds(2))));
  health.Stop();
  server.server->Shutdown(std::chrono::system_clock::now());
}

}  // namespace
}  // namespace sluice::health
