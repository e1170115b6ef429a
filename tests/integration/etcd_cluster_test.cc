// etcd as a real 3-member cluster under a steady client-library load: the leader killed with -9,
// and every member stopped for a while. The callers must not notice either.
#include "etcd_cluster.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "greeter_backend.h"
#include "gtest/gtest.h"
#include "helloworld.grpc.pb.h"
#include "process.h"
#include "sluice/client/balancer.h"
#include "sluice/client/call.h"
#include "sluice/discovery/discovery.h"
#include "sluice/etcd/etcd_client.h"
#include "sluice/registry/registrar.h"

namespace sluice {
namespace {

using ::sluice::testing::EtcdCluster;
using ::sluice::testing::GreeterBackend;
using ::sluice::testing::WaitFor;

constexpr char kPrefix[] = "services/x";
constexpr int64_t kTtlSeconds = 3;
constexpr int kLoadThreads = 4;

#define ASSERT_CLUSTER_STARTS(cluster)        \
  do {                                        \
    absl::Status started = (cluster).Start(); \
    ASSERT_TRUE(started.ok()) << started;     \
  } while (false)

bool LongTests() {
  const char* value = std::getenv("SLUICE_LONG_TESTS");
  return value != nullptr && std::string(value) == "1";
}

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

// One Greeter backend and its registration.
struct RegisteredBackend {
  std::unique_ptr<GreeterBackend> server;
  std::unique_ptr<registry::Registrar> registrar;
  std::string address() const { return server->address(); }
};

RegisteredBackend StartBackend(const std::string& ip, const std::vector<std::string>& members) {
  RegisteredBackend backend;
  auto server = GreeterBackend::Start(ip);
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return backend;
  backend.server = std::move(*server);
  registry::RegistrarOptions options;
  options.etcd.endpoints = members;  // every member: keep-alives fail over
  options.prefix = kPrefix;
  options.endpoint.address = backend.server->address();
  options.ttl_seconds = kTtlSeconds;
  auto registrar = registry::Registrar::Start(options);
  EXPECT_TRUE(registrar.ok()) << registrar.status();
  if (registrar.ok()) backend.registrar = std::move(*registrar);
  return backend;
}

std::string Target(const std::vector<std::string>& members) {
  return absl::StrCat("etcd://", absl::StrJoin(members, ","), "/", kPrefix);
}

// The members with `first` in front: clients use the first member until it fails, so putting
// the leader first makes its death move every keep-alive and watch to another member.
std::vector<std::string> MembersStartingWith(const EtcdCluster& cluster, int first) {
  std::vector<std::string> members = {cluster.endpoint(first)};
  for (int i = 0; i < cluster.size(); ++i) {
    if (i != first) members.push_back(cluster.endpoint(i));
  }
  return members;
}

// One failed call: when it ended, and why.
struct Failure {
  absl::Time at;
  grpc::StatusCode code;
  std::string message;
};

struct LoadResult {
  int64_t ok = 0;
  std::vector<Failure> failures;
  std::map<std::string, int64_t> by_backend;

  std::string Summary() const {
    std::string text = absl::StrCat("ok=", ok, " failed=", failures.size());
    for (const auto& [backend, count] : by_backend)
      absl::StrAppend(&text, " ", backend, "=", count);
    for (size_t i = 0; i < failures.size() && i < 5; ++i) {
      absl::StrAppend(&text, "\n  failed at ",
                      absl::FormatTime("%H:%M:%E3S", failures[i].at, absl::LocalTimeZone()), ": ",
                      failures[i].code, " ", failures[i].message);
    }
    return text;
  }
};

// `threads` callers sending SayHello through the balancer back to back, recording when and why
// any call failed, so a failure can be matched with what the test did at that moment.
class TimedLoad {
 public:
  TimedLoad(client::Balancer& balancer, int threads) : balancer_(balancer) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~TimedLoad() { Stop(); }

  LoadResult Stop() {
    stop_.store(true);
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
    std::lock_guard<std::mutex> lock(mu_);
    return result_;
  }
  int64_t ok() const { return ok_.load(); }
  int64_t failed() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int64_t>(result_.failures.size());
  }
  int64_t CallsTo(const std::string& backend) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = result_.by_backend.find(backend);
    return it == result_.by_backend.end() ? 0 : it->second;
  }

 private:
  void Run() {
    HelloRequest request;
    request.set_name("load");
    while (!stop_.load()) {
      HelloReply reply;
      client::CallOptions options;
      options.method = "/Greeter/SayHello";
      options.deadline = balancer_.clock().Now() + absl::Seconds(5);
      grpc::Status status =
          client::UnaryCall(balancer_, &Greeter::Stub::SayHello, options, request, &reply);
      std::lock_guard<std::mutex> lock(mu_);
      if (status.ok()) {
        ++result_.ok;
        ok_.fetch_add(1);
        size_t at = reply.message().rfind("I am ");
        ++result_.by_backend[at == std::string::npos ? "?" : reply.message().substr(at + 5)];
      } else {
        result_.failures.push_back({absl::Now(), status.error_code(), status.error_message()});
      }
    }
  }

  client::Balancer& balancer_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> ok_{0};
  std::mutex mu_;
  LoadResult result_;
  std::vector<std::thread> threads_;
};

// Samples a Discovery's set every 10 ms: the fewest endpoints it ever held since Reset().
class SetSizeMonitor {
 public:
  explicit SetSizeMonitor(const discovery::Discovery& discovery) : discovery_(discovery) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        size_t size = discovery_.Current().size();
        size_t seen = min_.load();
        while (size < seen && !min_.compare_exchange_weak(seen, size)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    });
  }
  ~SetSizeMonitor() {
    stop_.store(true);
    thread_.join();
  }
  void Reset() { min_.store(SIZE_MAX); }
  size_t min() const { return min_.load(); }

 private:
  const discovery::Discovery& discovery_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> min_{SIZE_MAX};
  std::thread thread_;
};

bool Has(const discovery::Discovery& discovery, const std::string& address) {
  return discovery.Current().Find(address) != nullptr;
}

// The caller side: a balancer under load, and a Discovery of the same target to look at.
struct Caller {
  std::unique_ptr<client::Balancer> balancer;
  std::unique_ptr<discovery::Discovery> discovery;
  std::unique_ptr<TimedLoad> load;
  std::unique_ptr<SetSizeMonitor> monitor;

  Caller(const std::vector<std::string>& members, size_t expected) {
    client::BalancerOptions options;
    options.target = Target(members);
    // SayHello is idempotent, as a production caller would configure it: a call a backend
    // cancels as it shuts down goes to another backend.
    options.retry.idempotent_methods = {"/Greeter/SayHello"};
    auto created = client::Balancer::Create(options);
    EXPECT_TRUE(created.ok()) << created.status();
    if (!created.ok()) return;
    balancer = std::move(*created);
    auto watched = discovery::CreateDiscovery(Target(members));
    EXPECT_TRUE(watched.ok()) << watched.status();
    if (!watched.ok()) return;
    discovery = std::move(*watched);
    discovery->Start(nullptr);
    EXPECT_TRUE(balancer->WaitForReady(expected, absl::Seconds(10)));
    EXPECT_TRUE(
        WaitFor([&] { return discovery->Current().size() == expected; }, absl::Seconds(10)));
    monitor = std::make_unique<SetSizeMonitor>(*discovery);
    load = std::make_unique<TimedLoad>(*balancer, kLoadThreads);
  }
};

// Waits until `condition` holds and returns how long that took from `since`, or -1 s.
absl::Duration TimeUntil(const std::function<bool()>& condition, absl::Time since,
                         absl::Duration timeout) {
  if (!WaitFor(condition, timeout)) return absl::Seconds(-1);
  return absl::Now() - since;
}

void Report(const std::string& scenario, const std::string& text) {
  std::printf("[%s] %s\n", scenario.c_str(), text.c_str());
  std::fflush(stdout);
}

TEST(EtcdClusterTest, FixtureFindsTheLeaderAndSurvivesARestartOfEveryMember) {
  EtcdCluster cluster(3);
  ASSERT_CLUSTER_STARTS(cluster);
  auto leader = cluster.Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  // Every member agrees on who leads.
  auto leader_status = cluster.MemberStatus(*leader);
  ASSERT_TRUE(leader_status.ok());
  for (int i = 0; i < cluster.size(); ++i) {
    auto status = cluster.MemberStatus(i);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(status->leader_id, leader_status->member_id) << "member " << i;
  }
  etcd::EtcdClientOptions options;
  options.endpoints = cluster.endpoints();
  auto client = etcd::EtcdClient::Create(options);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->Put("fixture/k", "v").ok());

  cluster.StopAll();
  for (int i = 0; i < cluster.size(); ++i) EXPECT_FALSE(cluster.running(i));
  ASSERT_CLUSTER_STARTS(cluster);  // same data dirs: the key is still there
  absl::StatusOr<etcd::RangeResult> got;
  ASSERT_TRUE(WaitFor(
      [&] {
        got = (*client)->Get("fixture/k");
        return got.ok();
      },
      absl::Seconds(10)))
      << got.status();
  ASSERT_EQ(got->kvs.size(), 1u);
  EXPECT_EQ(got->kvs[0].value, "v");
}

TEST(EtcdClusterTest, KillingTheLeaderFailsNoCallAndLosesNoRegistration) {
  const std::string scenario = "leader-kill";
  EtcdCluster cluster(3);
  ASSERT_CLUSTER_STARTS(cluster);
  auto first_leader = cluster.Leader();
  ASSERT_TRUE(first_leader.ok()) << first_leader.status();
  const std::vector<std::string> members = MembersStartingWith(cluster, *first_leader);
  std::vector<RegisteredBackend> backends;
  for (int i = 0; i < 3; ++i) {
    backends.push_back(StartBackend(absl::StrCat("127.0.0.", 11 + i), members));
  }
  std::vector<int64_t> leases;
  for (auto& backend : backends) {
    ASSERT_TRUE(backend.registrar->WaitUntilRegistered(absl::Seconds(10)));
    leases.push_back(backend.registrar->lease_id());
  }
  Caller caller(members, 3);
  ASSERT_NE(caller.load, nullptr);
  std::this_thread::sleep_for(std::chrono::seconds(1));

  auto leader = cluster.Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int64_t ok_before = caller.load->ok();
  caller.monitor->Reset();
  const absl::Time killed_at = absl::Now();
  cluster.KillMember(*leader);
  auto new_leader = cluster.Leader(absl::Seconds(15));
  ASSERT_TRUE(new_leader.ok()) << new_leader.status();
  const absl::Duration election = absl::Now() - killed_at;
  EXPECT_NE(*new_leader, *leader);
  Report(scenario, absl::StrCat("killed leader m", *leader, " (-9)",
                                *leader == *first_leader ? ", the member every client used" : "",
                                "; m", *new_leader, " leads after ", Seconds(election), " s"));

  // Three TTLs without the old leader: every lease must have been kept alive elsewhere.
  std::this_thread::sleep_for(absl::ToChronoNanoseconds(absl::Seconds(3 * kTtlSeconds)));
  EXPECT_EQ(caller.monitor->min(), 3u) << "discovery lost an endpoint after the leader died";
  etcd::EtcdClientOptions options;
  options.endpoints = members;
  auto client = etcd::EtcdClient::Create(options);
  ASSERT_TRUE(client.ok());
  for (size_t i = 0; i < backends.size(); ++i) {
    EXPECT_TRUE(backends[i].registrar->registered()) << backends[i].address();
    EXPECT_EQ(backends[i].registrar->lease_id(), leases[i])
        << backends[i].address() << " had to register again: its lease was lost";
    auto key = (*client)->Get(backends[i].registrar->key());
    ASSERT_TRUE(key.ok()) << key.status();
    ASSERT_EQ(key->kvs.size(), 1u) << backends[i].address() << " is no longer in etcd";
    EXPECT_EQ(key->kvs[0].lease, leases[i]);
  }
  const int64_t ok_during = caller.load->ok() - ok_before;
  EXPECT_GT(ok_during, 100) << "calls stalled while the leader was replaced";

  // Changes made after the failover reach the caller: one backend joins, one leaves.
  const absl::Time joined_at = absl::Now();
  RegisteredBackend joined = StartBackend("127.0.0.14", members);
  ASSERT_NE(joined.registrar, nullptr);
  const absl::Duration to_see_join = TimeUntil(
      [&] { return Has(*caller.discovery, joined.address()); }, joined_at, absl::Seconds(15));
  const absl::Duration to_first_call = TimeUntil(
      [&] { return caller.load->CallsTo(joined.address()) > 0; }, joined_at, absl::Seconds(15));
  EXPECT_GE(to_see_join, absl::ZeroDuration()) << "discovery never saw the new backend";
  EXPECT_GE(to_first_call, absl::ZeroDuration()) << "the new backend never got a call";

  RegisteredBackend& leaving = backends[1];
  const absl::Time left_at = absl::Now();
  EXPECT_TRUE(leaving.registrar->Stop().ok());
  const absl::Duration to_see_leave = TimeUntil(
      [&] { return !Has(*caller.discovery, leaving.address()); }, left_at, absl::Seconds(15));
  EXPECT_GE(to_see_leave, absl::ZeroDuration()) << "discovery never saw the backend leave";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  leaving.server->Shutdown(absl::Seconds(2));
  std::this_thread::sleep_for(std::chrono::seconds(1));

  LoadResult result = caller.load->Stop();
  Report(scenario, absl::StrCat("calls ok=", result.ok, " failed=", result.failures.size(),
                                " (ok in the ", 3 * kTtlSeconds, " s after the kill: ", ok_during,
                                "); fewest endpoints seen: ", caller.monitor->min()));
  Report(scenario,
         absl::StrCat("join after failover seen in ", Seconds(to_see_join), " s, first call after ",
                      Seconds(to_first_call), " s; leave seen in ", Seconds(to_see_leave), " s"));
  Report(scenario, result.Summary());
  EXPECT_EQ(result.failures.size(), 0u) << result.Summary();
}

TEST(EtcdClusterTest, AnOutageOfEveryMemberKeepsCallsFlowingAndChangesArePickedUpAfter) {
  const std::string scenario = "full-outage";
  const absl::Duration outage = LongTests() ? absl::Seconds(60) : absl::Seconds(15);
  EtcdCluster cluster(3);
  ASSERT_CLUSTER_STARTS(cluster);
  const std::vector<std::string> members = cluster.endpoints();
  std::vector<RegisteredBackend> backends;
  for (int i = 0; i < 3; ++i) {
    backends.push_back(StartBackend(absl::StrCat("127.0.0.", 11 + i), members));
  }
  std::vector<int64_t> leases;
  for (auto& backend : backends) {
    ASSERT_TRUE(backend.registrar->WaitUntilRegistered(absl::Seconds(10)));
    leases.push_back(backend.registrar->lease_id());
  }
  Caller caller(members, 3);
  ASSERT_NE(caller.load, nullptr);
  std::this_thread::sleep_for(std::chrono::seconds(1));

  caller.monitor->Reset();
  const int64_t ok_before = caller.load->ok();
  const absl::Time down_at = absl::Now();
  cluster.StopAll();
  Report(scenario, absl::StrCat("stopped all 3 members for ", Seconds(outage), " s"));

  // During the outage one backend starts (it cannot register yet) and one leaves (it cannot
  // deregister: its key outlives it until its lease expires once etcd is back).
  std::this_thread::sleep_for(std::chrono::seconds(2));
  RegisteredBackend joined = StartBackend("127.0.0.14", members);
  ASSERT_NE(joined.registrar, nullptr);
  RegisteredBackend& leaving = backends[2];
  EXPECT_FALSE(leaving.registrar->Stop().ok()) << "revoking worked with etcd down?";
  // The callers cannot learn that it leaves: it is still picked while it shuts down.
  const absl::Time shutdown_began = absl::Now();
  leaving.server->Shutdown(absl::Seconds(2));
  const absl::Time shutdown_ended = absl::Now();
  const int64_t leaving_calls = leaving.server->calls();

  const absl::Time quiet_from = absl::Now();
  const int64_t ok_at_quiet = caller.load->ok();
  std::this_thread::sleep_until(absl::ToChronoTime(down_at + outage));
  const int64_t ok_late_outage = caller.load->ok() - ok_at_quiet;
  const absl::Duration late_window = absl::Now() - quiet_from;
  const int64_t ok_outage = caller.load->ok() - ok_before;
  const size_t min_during_outage = caller.monitor->min();
  EXPECT_EQ(min_during_outage, 3u) << "the caller dropped endpoints while etcd was down";
  EXPECT_GT(ok_late_outage, 100) << "calls stopped flowing while etcd was down";
  EXPECT_FALSE(joined.registrar->registered());
  EXPECT_FALSE(joined.registrar->LastError().ok());

  const absl::Time back_at = absl::Now();
  ASSERT_CLUSTER_STARTS(cluster);
  const absl::Duration quorum = absl::Now() - back_at;
  const absl::Duration to_see_join = TimeUntil(
      [&] { return Has(*caller.discovery, joined.address()); }, back_at, absl::Seconds(30));
  const absl::Duration to_first_call = TimeUntil(
      [&] { return caller.load->CallsTo(joined.address()) > 0; }, back_at, absl::Seconds(30));
  const absl::Duration to_see_leave = TimeUntil(
      [&] { return !Has(*caller.discovery, leaving.address()); }, back_at, absl::Seconds(30));
  EXPECT_GE(to_see_join, absl::ZeroDuration()) << "the backend that joined during the outage "
                                                  "was never seen";
  EXPECT_GE(to_first_call, absl::ZeroDuration()) << "it never got a call";
  EXPECT_GE(to_see_leave, absl::ZeroDuration()) << "the backend that left during the outage "
                                                   "was never removed";
  // The survivors kept their registrations: etcd keeps leases across a restart.
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(WaitFor([&] { return backends[i].registrar->registered(); }, absl::Seconds(10)))
        << backends[i].address();
    EXPECT_EQ(backends[i].registrar->lease_id(), leases[i]) << backends[i].address();
    EXPECT_TRUE(Has(*caller.discovery, backends[i].address())) << backends[i].address();
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  LoadResult result = caller.load->Stop();
  // A gRPC server kills (RST_STREAM CANCEL) the streams that reach it after its Shutdown began
  // and before its GOAWAY reached the caller; the balancer retries those elsewhere (idempotent).
  // They are counted apart in the report, but every failure fails the test.
  int64_t killed_by_shutdown = 0;
  std::vector<Failure> other_failures;
  for (const Failure& failure : result.failures) {
    if (failure.code == grpc::StatusCode::CANCELLED && failure.at >= shutdown_began &&
        failure.at <= shutdown_ended + absl::Milliseconds(200)) {
      ++killed_by_shutdown;
    } else {
      other_failures.push_back(failure);
    }
  }
  Report(scenario,
         absl::StrCat("calls ok=", result.ok, " failed=", result.failures.size(), " (",
                      killed_by_shutdown, " CANCELLED by the leaving backend's own shutdown, ",
                      other_failures.size(), " other)", "; ok during the outage: ", ok_outage, " (",
                      ok_late_outage, " in its last ", Seconds(late_window),
                      " s); fewest endpoints seen during the outage: ", min_during_outage));
  Report(scenario, absl::StrCat("calls answered by the backend that left: ", leaving_calls,
                                " (none after it stopped)"));
  Report(scenario, absl::StrCat("etcd back with a leader in ", Seconds(quorum),
                                " s; then joined backend seen in ", Seconds(to_see_join),
                                " s, first call in ", Seconds(to_first_call),
                                " s; left backend removed in ", Seconds(to_see_leave),
                                " s (its lease had to expire: ttl ", kTtlSeconds, " s)"));
  Report(scenario, result.Summary());
  EXPECT_TRUE(other_failures.empty()) << result.Summary();
  EXPECT_EQ(killed_by_shutdown, 0) << result.Summary();
  EXPECT_EQ(leaving.server->calls(), leaving_calls);
}

}  // namespace
}  // namespace sluice
