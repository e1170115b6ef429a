// etcd as a real 3-member cluster under steady load from two callers, the client library and a
// plain gRPC client through `sluice proxy` (a real process): the leader killed with -9, and
// every member stopped for a while. Neither caller may notice either.
#include "etcd_cluster.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "greeter_backend.h"
#include "greeter_load.h"
#include "gtest/gtest.h"
#include "helloworld.grpc.pb.h"
#include "process.h"
#include "proxy_process.h"
#include "sluice/client/balancer.h"
#include "sluice/etcd/etcd_client.h"
#include "sluice/registry/registrar.h"

namespace sluice {
namespace {

using ::sluice::testing::EtcdCluster;
using ::sluice::testing::GreeterBackend;
using ::sluice::testing::GreeterLoad;
using ::sluice::testing::LoadOptions;
using ::sluice::testing::LoadResult;
using ::sluice::testing::ProxyProcess;
using ::sluice::testing::Scaled;
using ::sluice::testing::TimedFailure;
using ::sluice::testing::WaitFor;

constexpr char kPrefix[] = "services/x";
constexpr int64_t kTtlSeconds = 3;
constexpr int kLoadThreads = 3;  // per caller
// Between two calls of one load thread: steady load that still leaves the two shared cores to
// etcd (a starved member misses heartbeats and forces elections) and to the proxy.
constexpr absl::Duration kThinkTime = absl::Milliseconds(1);

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

// A caller's current endpoint set; nullopt when it could not be asked.
using EndpointsFn = std::function<std::optional<std::vector<std::string>>()>;

// Samples a caller's endpoint set every 20 ms: the fewest endpoints it ever held since Reset().
class SetSizeMonitor {
 public:
  explicit SetSizeMonitor(EndpointsFn endpoints) : endpoints_(std::move(endpoints)) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        if (std::optional<std::vector<std::string>> set = endpoints_(); set.has_value()) {
          size_t seen = min_.load();
          while (set->size() < seen && !min_.compare_exchange_weak(seen, set->size())) {
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
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
  const EndpointsFn endpoints_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> min_{SIZE_MAX};
  std::thread thread_;
};

// One caller of the service under steady load, and the endpoint set it balances over.
struct Caller {
  explicit Caller(std::string name) : name(std::move(name)) {}

  void Start(GreeterLoad::CallFn call, EndpointsFn endpoints_fn) {
    endpoints = std::move(endpoints_fn);
    monitor = std::make_unique<SetSizeMonitor>(endpoints);
    LoadOptions options;
    options.threads = kLoadThreads;
    options.think_time = kThinkTime;
    load = std::make_unique<GreeterLoad>(std::move(call), std::move(options));
  }
  // Whether the caller's set lists `address`; nullopt when it could not be asked, so neither
  // `== true` nor `== false` holds then.
  std::optional<bool> Lists(const std::string& address) const {
    std::optional<std::vector<std::string>> set = endpoints();
    if (!set.has_value()) return std::nullopt;
    return std::find(set->begin(), set->end(), address) != set->end();
  }

  const std::string name;
  EndpointsFn endpoints;
  std::unique_ptr<SetSizeMonitor> monitor;
  std::unique_ptr<GreeterLoad> load;
};

// Polls every condition until each has held once or `timeout` passes; returns, for each, how
// long after `since` it first held, or -1 s. Polled together, so that one caller's slow
// condition does not delay when another's is seen.
std::vector<absl::Duration> TimesUntil(const std::vector<std::function<bool()>>& conditions,
                                       absl::Time since, absl::Duration timeout) {
  std::vector<absl::Duration> times(conditions.size(), absl::Seconds(-1));
  const absl::Time give_up = absl::Now() + timeout;
  size_t pending = conditions.size();
  while (pending > 0 && absl::Now() < give_up) {
    for (size_t i = 0; i < conditions.size(); ++i) {
      if (times[i] < absl::ZeroDuration() && conditions[i]()) {
        times[i] = absl::Now() - since;
        --pending;
      }
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return times;
}

void Report(const std::string& scenario, const std::string& text) {
  std::printf("[%s] %s\n", scenario.c_str(), text.c_str());
  std::fflush(stdout);
}

// "calls=N ok=N failed=N" and the failures grouped by code and message.
std::string CallFigures(const LoadResult& result) {
  std::string text = absl::StrCat("calls=", result.ok + result.failed, " ok=", result.ok,
                                  " failed=", result.failed);
  std::map<std::string, int64_t> why;
  for (const TimedFailure& failure : result.failures) {
    ++why[absl::StrCat("code ", failure.code, " (", failure.message, ")")];
  }
  if (why.empty()) absl::StrAppend(&text, " (none failed)");
  for (const auto& [reason, count] : why) absl::StrAppend(&text, "; ", count, " x ", reason);
  return text;
}

// A started 3-member cluster; each scenario then starts three registered backends and both
// callers with StartBackendsAndCallers().
class EtcdClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_CLUSTER_STARTS(cluster_); }

  // Three backends (127.0.0.11-13) registered through `members`, then both callers on the etcd
  // target of `members`, each under load once its set holds all three.
  void StartBackendsAndCallers(const std::vector<std::string>& members) {
    for (int i = 0; i < 3; ++i) {
      backends_.push_back(StartBackend(absl::StrCat("127.0.0.", 11 + i), members));
    }
    for (auto& backend : backends_) {
      ASSERT_NE(backend.registrar, nullptr);
      ASSERT_TRUE(backend.registrar->WaitUntilRegistered(Scaled(absl::Seconds(10))));
      leases_.push_back(backend.registrar->lease_id());
    }

    client::BalancerOptions options;
    options.target = Target(members);
    // SayHello is idempotent, as a production caller would configure it: a call a backend
    // cancels as it shuts down goes to another backend.
    options.retry.idempotent_methods = {"/Greeter/SayHello"};
    auto balancer = client::Balancer::Create(options);
    ASSERT_TRUE(balancer.ok()) << balancer.status();
    balancer_ = std::move(*balancer);
    // The proxy configured as the library caller is.
    auto proxy = ProxyProcess::Start(Target(members), {"--idempotent", "/Greeter/SayHello"});
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = std::move(*proxy);
    proxy_stub_ = Greeter::NewStub(proxy_->Channel());

    const EndpointsFn library_set = [this]() -> std::optional<std::vector<std::string>> {
      std::vector<std::string> set;
      for (const client::BackendInfo& backend : balancer_->Backends()) {
        set.push_back(backend.address);
      }
      return set;
    };
    // The proxy's own set, from its admin endpoint.
    const EndpointsFn proxy_set = [this]() -> std::optional<std::vector<std::string>> {
      auto [status, body] = proxy_->Get("/backends");
      if (status != 200) return std::nullopt;
      nlohmann::json list = nlohmann::json::parse(body, nullptr, false);
      if (!list.is_array()) return std::nullopt;
      std::vector<std::string> set;
      for (const nlohmann::json& backend : list) set.push_back(backend.value("address", ""));
      return set;
    };
    ASSERT_TRUE(balancer_->WaitForReady(3, Scaled(absl::Seconds(10))));
    ASSERT_TRUE(WaitFor(
        [&] {
          auto set = proxy_set();
          return set.has_value() && set->size() == 3;
        },
        Scaled(absl::Seconds(10))))
        << proxy_->process().ReadLog();
    library_.Start(GreeterLoad::ViaBalancer(*balancer_), library_set);
    via_proxy_.Start(GreeterLoad::ViaStub(*proxy_stub_), proxy_set);
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }

  std::vector<Caller*> callers() { return {&library_, &via_proxy_}; }

  EtcdCluster cluster_{3};
  std::vector<RegisteredBackend> backends_;
  std::vector<int64_t> leases_;
  std::unique_ptr<client::Balancer> balancer_;
  std::unique_ptr<ProxyProcess> proxy_;
  std::unique_ptr<Greeter::Stub> proxy_stub_;
  // Last, so their loads stop before what they call goes away.
  Caller library_{"library"};
  Caller via_proxy_{"proxy"};
};

TEST_F(EtcdClusterTest, FixtureFindsTheLeaderAndSurvivesARestartOfEveryMember) {
  auto leader = cluster_.Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  // Every member agrees on who leads.
  auto leader_status = cluster_.MemberStatus(*leader);
  ASSERT_TRUE(leader_status.ok());
  for (int i = 0; i < cluster_.size(); ++i) {
    auto status = cluster_.MemberStatus(i);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(status->leader_id, leader_status->member_id) << "member " << i;
  }
  etcd::EtcdClientOptions options;
  options.endpoints = cluster_.endpoints();
  auto client = etcd::EtcdClient::Create(options);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->Put("fixture/k", "v").ok());

  cluster_.StopAll();
  for (int i = 0; i < cluster_.size(); ++i) EXPECT_FALSE(cluster_.running(i));
  ASSERT_CLUSTER_STARTS(cluster_);  // same data dirs: the key is still there
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

TEST_F(EtcdClusterTest, KillingTheLeaderFailsNoCallAndLosesNoRegistration) {
  const std::string scenario = "leader-kill";
  auto first_leader = cluster_.Leader();
  ASSERT_TRUE(first_leader.ok()) << first_leader.status();
  const std::vector<std::string> members = MembersStartingWith(cluster_, *first_leader);
  ASSERT_NO_FATAL_FAILURE(StartBackendsAndCallers(members));

  auto leader = cluster_.Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  std::vector<int64_t> ok_before;
  for (Caller* caller : callers()) {
    ok_before.push_back(caller->load->ok());
    caller->monitor->Reset();
  }
  const absl::Time killed_at = absl::Now();
  cluster_.KillMember(*leader);
  auto new_leader = cluster_.Leader(Scaled(absl::Seconds(15)));
  ASSERT_TRUE(new_leader.ok()) << new_leader.status();
  const absl::Duration election = absl::Now() - killed_at;
  EXPECT_NE(*new_leader, *leader);
  Report(scenario, absl::StrCat("killed leader m", *leader, " (-9)",
                                *leader == *first_leader ? ", the member every client used" : "",
                                "; m", *new_leader, " leads after ", Seconds(election), " s"));

  // Three TTLs without the old leader: every lease must have been kept alive elsewhere.
  std::this_thread::sleep_for(absl::ToChronoNanoseconds(absl::Seconds(3 * kTtlSeconds)));
  for (Caller* caller : callers()) {
    EXPECT_EQ(caller->monitor->min(), 3u)
        << caller->name << " lost an endpoint after the leader died";
  }
  etcd::EtcdClientOptions options;
  options.endpoints = members;
  auto client = etcd::EtcdClient::Create(options);
  ASSERT_TRUE(client.ok());
  for (size_t i = 0; i < backends_.size(); ++i) {
    EXPECT_TRUE(backends_[i].registrar->registered()) << backends_[i].address();
    EXPECT_EQ(backends_[i].registrar->lease_id(), leases_[i])
        << backends_[i].address() << " had to register again: its lease was lost";
    auto key = (*client)->Get(backends_[i].registrar->key());
    ASSERT_TRUE(key.ok()) << key.status();
    ASSERT_EQ(key->kvs.size(), 1u) << backends_[i].address() << " is no longer in etcd";
    EXPECT_EQ(key->kvs[0].lease, leases_[i]);
  }
  std::vector<int64_t> ok_during;
  for (size_t c = 0; c < callers().size(); ++c) {
    ok_during.push_back(callers()[c]->load->ok() - ok_before[c]);
    EXPECT_GT(ok_during[c], 100) << callers()[c]->name << ": calls stalled while the leader "
                                 << "was replaced";
  }

  // Changes made after the failover reach both callers: one backend joins, one leaves.
  const absl::Time joined_at = absl::Now();
  RegisteredBackend joined = StartBackend("127.0.0.14", members);
  ASSERT_NE(joined.registrar, nullptr);
  // [2c]: caller c lists it; [2c + 1]: caller c's first call to it.
  std::vector<std::function<bool()>> join_seen;
  for (Caller* caller : callers()) {
    join_seen.push_back([&, caller] { return caller->Lists(joined.address()) == true; });
    join_seen.push_back([&, caller] { return caller->load->CallsTo(joined.address()) > 0; });
  }
  const std::vector<absl::Duration> join_times =
      TimesUntil(join_seen, joined_at, Scaled(absl::Seconds(15)));
  for (size_t c = 0; c < callers().size(); ++c) {
    EXPECT_GE(join_times[2 * c], absl::ZeroDuration())
        << callers()[c]->name << " never saw the new backend";
    EXPECT_GE(join_times[2 * c + 1], absl::ZeroDuration())
        << callers()[c]->name << ": the new backend never got a call";
  }

  RegisteredBackend& leaving = backends_[1];
  const absl::Time left_at = absl::Now();
  EXPECT_TRUE(leaving.registrar->Stop().ok());
  std::vector<std::function<bool()>> leave_seen;
  for (Caller* caller : callers()) {
    leave_seen.push_back([&, caller] { return caller->Lists(leaving.address()) == false; });
  }
  const std::vector<absl::Duration> leave_times =
      TimesUntil(leave_seen, left_at, Scaled(absl::Seconds(15)));
  for (size_t c = 0; c < callers().size(); ++c) {
    EXPECT_GE(leave_times[c], absl::ZeroDuration())
        << callers()[c]->name << " never saw the backend leave";
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  leaving.server->Shutdown(absl::Seconds(2));
  std::this_thread::sleep_for(std::chrono::seconds(1));

  for (size_t c = 0; c < callers().size(); ++c) {
    Caller& caller = *callers()[c];
    LoadResult result = caller.load->Stop();
    Report(scenario, absl::StrCat(caller.name, ": ", CallFigures(result), "; ok in the ",
                                  3 * kTtlSeconds, " s after the kill: ", ok_during[c],
                                  "; fewest endpoints in its set: ", caller.monitor->min()));
    Report(scenario,
           absl::StrCat(caller.name, ": join after failover seen in ", Seconds(join_times[2 * c]),
                        " s, first call after ", Seconds(join_times[2 * c + 1]),
                        " s; leave seen in ", Seconds(leave_times[c]), " s"));
    Report(scenario, absl::StrCat(caller.name, ": ", result.Summary()));
    EXPECT_EQ(result.failed, 0) << caller.name << ": " << result.Summary();
  }
}

TEST_F(EtcdClusterTest, AnOutageOfEveryMemberKeepsCallsFlowingAndChangesArePickedUpAfter) {
  const std::string scenario = "full-outage";
  const absl::Duration outage = LongTests() ? absl::Seconds(60) : absl::Seconds(15);
  const std::vector<std::string> members = cluster_.endpoints();
  ASSERT_NO_FATAL_FAILURE(StartBackendsAndCallers(members));

  std::vector<int64_t> ok_before;
  for (Caller* caller : callers()) {
    caller->monitor->Reset();
    ok_before.push_back(caller->load->ok());
  }
  const absl::Time down_at = absl::Now();
  cluster_.StopAll();
  Report(scenario, absl::StrCat("stopped all 3 members for ", Seconds(outage), " s"));

  // During the outage one backend starts (it cannot register yet) and one leaves (it cannot
  // deregister: its key outlives it until its lease expires once etcd is back).
  std::this_thread::sleep_for(std::chrono::seconds(2));
  RegisteredBackend joined = StartBackend("127.0.0.14", members);
  ASSERT_NE(joined.registrar, nullptr);
  RegisteredBackend& leaving = backends_[2];
  EXPECT_FALSE(leaving.registrar->Stop().ok()) << "revoking worked with etcd down?";
  // The callers cannot learn that it leaves: it is still picked while it shuts down.
  const absl::Time shutdown_began = absl::Now();
  leaving.server->Shutdown(absl::Seconds(2));
  const absl::Time shutdown_ended = absl::Now();
  const int64_t leaving_calls = leaving.server->calls();

  // The rest of the outage: both callers keep calling the two backends they last knew of.
  const absl::Time quiet_from = absl::Now();
  std::vector<int64_t> ok_at_quiet;
  std::vector<std::vector<int64_t>> survivors_at_quiet;
  for (Caller* caller : callers()) {
    ok_at_quiet.push_back(caller->load->ok());
    survivors_at_quiet.push_back({caller->load->CallsTo(backends_[0].address()),
                                  caller->load->CallsTo(backends_[1].address())});
  }
  std::this_thread::sleep_until(absl::ToChronoTime(down_at + outage));
  const absl::Duration late_window = absl::Now() - quiet_from;
  std::vector<int64_t> ok_late_outage, ok_outage, leaving_calls_by;
  std::vector<size_t> min_during_outage;
  for (size_t c = 0; c < callers().size(); ++c) {
    Caller& caller = *callers()[c];
    ok_late_outage.push_back(caller.load->ok() - ok_at_quiet[c]);
    ok_outage.push_back(caller.load->ok() - ok_before[c]);
    min_during_outage.push_back(caller.monitor->min());
    // Long after the leaving backend stopped: from here on it must answer no call.
    leaving_calls_by.push_back(caller.load->CallsTo(leaving.address()));
    EXPECT_EQ(min_during_outage[c], 3u) << caller.name << " dropped endpoints while etcd was down";
    EXPECT_GT(ok_late_outage[c], 100) << caller.name << ": calls stopped while etcd was down";
    for (int i = 0; i < 2; ++i) {
      EXPECT_GT(caller.load->CallsTo(backends_[i].address()), survivors_at_quiet[c][i])
          << caller.name << " stopped calling " << backends_[i].address() << " while etcd was down";
    }
  }
  EXPECT_FALSE(joined.registrar->registered());
  EXPECT_FALSE(joined.registrar->LastError().ok());

  const absl::Time back_at = absl::Now();
  ASSERT_CLUSTER_STARTS(cluster_);
  const absl::Duration quorum = absl::Now() - back_at;
  // [3c]: caller c lists the backend that joined; [3c + 1]: its first call there; [3c + 2]: it
  // no longer lists the backend that left.
  std::vector<std::function<bool()>> changes_seen;
  for (Caller* caller : callers()) {
    changes_seen.push_back([&, caller] { return caller->Lists(joined.address()) == true; });
    changes_seen.push_back([&, caller] { return caller->load->CallsTo(joined.address()) > 0; });
    changes_seen.push_back([&, caller] { return caller->Lists(leaving.address()) == false; });
  }
  const std::vector<absl::Duration> times =
      TimesUntil(changes_seen, back_at, Scaled(absl::Seconds(30)));
  for (size_t c = 0; c < callers().size(); ++c) {
    const std::string& name = callers()[c]->name;
    EXPECT_GE(times[3 * c], absl::ZeroDuration())
        << name << " never saw the backend that joined during the outage";
    EXPECT_GE(times[3 * c + 1], absl::ZeroDuration())
        << name << ": the backend that joined during the outage never got a call";
    EXPECT_GE(times[3 * c + 2], absl::ZeroDuration())
        << name << " never removed the backend that left during the outage";
  }
  // The survivors kept their registrations: etcd keeps leases across a restart.
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(
        WaitFor([&] { return backends_[i].registrar->registered(); }, Scaled(absl::Seconds(10))))
        << backends_[i].address();
    EXPECT_EQ(backends_[i].registrar->lease_id(), leases_[i]) << backends_[i].address();
    for (Caller* caller : callers()) {
      EXPECT_TRUE(caller->Lists(backends_[i].address()) == true)
          << caller->name << " lost " << backends_[i].address();
    }
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));

  Report(scenario, absl::StrCat("etcd back with a leader in ", Seconds(quorum),
                                " s; the backend "
                                "that left answered ",
                                leaving_calls,
                                " calls, none after it "
                                "stopped: ",
                                leaving.server->calls() == leaving_calls ? "yes" : "NO"));
  for (size_t c = 0; c < callers().size(); ++c) {
    Caller& caller = *callers()[c];
    LoadResult result = caller.load->Stop();
    // A gRPC server kills (RST_STREAM CANCEL) the streams that reach it after its Shutdown
    // began and before its GOAWAY reached the caller; the callers retry those elsewhere
    // (idempotent). They are counted apart in the report, but every failure fails the test.
    int64_t killed_by_shutdown = 0;
    int64_t other_failures = 0;
    for (const TimedFailure& failure : result.failures) {
      if (failure.code == grpc::StatusCode::CANCELLED && failure.end >= shutdown_began &&
          failure.end <= shutdown_ended + absl::Milliseconds(200)) {
        ++killed_by_shutdown;
      } else {
        ++other_failures;
      }
    }
    Report(scenario, absl::StrCat(caller.name, ": ", CallFigures(result), " (", killed_by_shutdown,
                                  " CANCELLED by the leaving backend's own shutdown, ",
                                  other_failures, " other); ok during the outage: ", ok_outage[c],
                                  " (", ok_late_outage[c], " in its last ", Seconds(late_window),
                                  " s); fewest endpoints in its set during the outage: ",
                                  min_during_outage[c]));
    Report(scenario,
           absl::StrCat(caller.name, ": after etcd returned, joined backend seen in ",
                        Seconds(times[3 * c]), " s, first call in ", Seconds(times[3 * c + 1]),
                        " s; left backend removed in ", Seconds(times[3 * c + 2]),
                        " s (its lease had to expire: ttl ", kTtlSeconds, " s)"));
    Report(scenario, absl::StrCat(caller.name, ": ", result.Summary()));
    EXPECT_EQ(result.failed, 0) << caller.name << ": " << result.Summary();
    EXPECT_EQ(caller.load->CallsTo(leaving.address()), leaving_calls_by[c])
        << caller.name << ": the backend that left during the outage answered calls after it";
  }
  EXPECT_EQ(leaving.server->calls(), leaving_calls);
}

}  // namespace
}  // namespace sluice
