// The examples and the `sluice` command as real processes against a real etcd.
#include <signal.h>

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "etcd_process.h"
#include "nlohmann/json.hpp"
#include "process.h"
#include "sluice/discovery/discovery.h"
#include "sluice/etcd/etcd_client.h"

namespace sluice {
namespace {

using testing::BuiltBinary;
using testing::ChildProcess;
using testing::EtcdProcess;
using testing::FreePort;
using testing::WaitFor;

class RegistryProcessesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(etcd_.Start().ok());
    etcd::EtcdClientOptions options;
    options.endpoints = {etcd_.endpoint()};
    auto client = etcd::EtcdClient::Create(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    log_dir_ = testing::MakeTempDir("proc-logs");
  }
  void TearDown() override { testing::RemoveTree(log_dir_); }

  std::string Log(const std::string& name) { return log_dir_ + "/" + name + ".log"; }

  ChildProcess StartGreeter(const std::string& ip, int port, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {BuiltBinary("bin/greeter_server"), "--ip", ip, "--port",
                                     std::to_string(port), "--etcd", etcd_.endpoint(),
                                     "--grace", "50ms"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto child = ChildProcess::Start(argv, {}, Log(absl::StrCat("greeter-", ip, "-", port)));
    EXPECT_TRUE(child.ok());
    return std::move(*child);
  }

  // Runs a command to completion and returns {exit code, output}.
  std::pair<int, std::string> Run(std::vector<std::string> argv,
                                  absl::Duration timeout = absl::Seconds(30)) {
    std::string log = Log(absl::StrCat("run-", runs_++));
    auto child = ChildProcess::Start(std::move(argv), {}, log);
    EXPECT_TRUE(child.ok());
    auto code = child->Wait(timeout);
    EXPECT_TRUE(code.ok()) << "command did not finish in time";
    return {code.ok() ? *code : -1, child->ReadLog()};
  }

  bool KeyExists(const std::string& key) {
    auto got = client_->Get(key);
    return got.ok() && !got->kvs.empty();
  }

  EtcdProcess etcd_;
  std::unique_ptr<etcd::EtcdClient> client_;
  std::string log_dir_;
  int runs_ = 0;
};

TEST_F(RegistryProcessesTest, GreeterServerAndClientTalkThroughTheRegistry) {
  int port = FreePort();
  ChildProcess server = StartGreeter("127.0.0.11", port);
  const std::string key = absl::StrCat("services/greeter/127.0.0.11:", port);
  ASSERT_TRUE(WaitFor([&] { return KeyExists(key); }, absl::Seconds(10)))
      << server.ReadLog();
  auto value = client_->Get(key);
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(value->kvs.at(0).value,
            absl::StrCat(R"({"Op":0,"Addr":"127.0.0.11:)", port, R"(","Metadata":null})"));

  auto [code, output] =
      Run({BuiltBinary("bin/greeter_client"), "--target",
           absl::StrCat("etcd://", etcd_.endpoint(), "/services/greeter"), "--calls", "3",
           "--interval", "10ms", "--name", "sluice"});
  EXPECT_EQ(code, 0) << output;
  const std::string reply = absl::StrCat("Greeter client received: Hello, sluice!, I am 127.0.0.11:", port);
  size_t replies = 0;
  for (size_t pos = output.find(reply); pos != std::string::npos; pos = output.find(reply, pos + 1)) {
    ++replies;
  }
  EXPECT_EQ(replies, 3u) << output;
  // The server prints every name it receives, as the seed's server does.
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(server.ReadLog(), "name: sluice"); },
                      absl::Seconds(5)));

  // A plain address works too, without etcd.
  auto [plain_code, plain_output] =
      Run({BuiltBinary("bin/greeter_client"), "--target", absl::StrCat("127.0.0.11:", port),
           "--calls", "1", "--interval", "0s"});
  EXPECT_EQ(plain_code, 0) << plain_output;
  EXPECT_TRUE(absl::StrContains(plain_output, "I am 127.0.0.11:")) << plain_output;
}

TEST_F(RegistryProcessesTest, GracefulStopDeregistersAtOnceAndExitsZero) {
  int port = FreePort();
  ChildProcess server = StartGreeter("127.0.0.12", port);
  const std::string key = absl::StrCat("services/greeter/127.0.0.12:", port);
  ASSERT_TRUE(WaitFor([&] { return KeyExists(key); }, absl::Seconds(10)));

  // Watch from a Discovery, as a client would.
  auto discovery = discovery::CreateDiscovery(
      absl::StrCat("etcd://", etcd_.endpoint(), "/services/greeter"));
  ASSERT_TRUE(discovery.ok()) << discovery.status();
  std::atomic<int64_t> gone_at_nanos{0};
  (*discovery)->Start([&](const EndpointSet& set, const EndpointSetDiff&) {
    if (set.empty()) gone_at_nanos = absl::ToUnixNanos(absl::Now());
  });
  ASSERT_TRUE(WaitFor([&] { return (*discovery)->Current().size() == 1; }, absl::Seconds(5)));

  absl::Time signalled = absl::Now();
  server.Signal(SIGTERM);
  ASSERT_TRUE(WaitFor([&] { return gone_at_nanos.load() != 0; }, absl::Seconds(5)));
  absl::Duration stop_to_gone = absl::FromUnixNanos(gone_at_nanos.load()) - signalled;
  std::printf("greeter_server SIGTERM -> removal seen by Discovery: %s\n",
              absl::FormatDuration(stop_to_gone).c_str());
  EXPECT_LT(stop_to_gone, testing::Scaled(absl::Milliseconds(100)));
  auto code = server.Wait(absl::Seconds(15));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0) << server.ReadLog();
  (*discovery)->Stop();
}

TEST_F(RegistryProcessesTest, KilledServerDisappearsAfterItsTtl) {
  int port = FreePort();
  ChildProcess server = StartGreeter("127.0.0.13", port, {"--ttl", "2"});
  const std::string key = absl::StrCat("services/greeter/127.0.0.13:", port);
  ASSERT_TRUE(WaitFor([&] { return KeyExists(key); }, absl::Seconds(10)));
  absl::Time killed = absl::Now();
  server.Kill();
  // Still there right after the crash: nothing revoked the lease...
  EXPECT_TRUE(KeyExists(key));
  // ...and gone once the 2 s lease expires (etcd checks expiry about every 500 ms).
  ASSERT_TRUE(WaitFor([&] { return !KeyExists(key); }, absl::Seconds(8)));
  absl::Duration kill_to_gone = absl::Now() - killed;
  std::printf("greeter_server kill -9 (ttl 2s) -> key gone after %s\n",
              absl::FormatDuration(kill_to_gone).c_str());
  EXPECT_GE(kill_to_gone, absl::Seconds(1));
}

TEST_F(RegistryProcessesTest, SluiceRegisterAndLs) {
  auto reg = ChildProcess::Start({BuiltBinary("bin/sluice"), "register", "--etcd", etcd_.endpoint(),
                                  "--service", "pyserver", "--addr", "127.0.0.14:50051", "--meta",
                                  "weight=5", "--meta", "zone=a"},
                                 {}, Log("register"));
  ASSERT_TRUE(reg.ok());
  const std::string key = "services/pyserver/127.0.0.14:50051";
  ASSERT_TRUE(WaitFor([&] { return KeyExists(key); }, absl::Seconds(10))) << reg->ReadLog();
  EXPECT_EQ(client_->Get(key)->kvs.at(0).value,
            R"({"Op":0,"Addr":"127.0.0.14:50051","Metadata":"{\"weight\":5,\"zone\":\"a\"}"})");
  // A malformed value beside it is reported and skipped, not fatal.
  ASSERT_TRUE(client_->Put("services/pyserver/broken", "{not json").ok());

  auto [code, output] = Run({BuiltBinary("bin/sluice"), "ls", "--etcd", etcd_.endpoint()});
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(absl::StrContains(output, "SERVICE")) << output;
  EXPECT_TRUE(absl::StrContains(output, "pyserver")) << output;
  EXPECT_TRUE(absl::StrContains(output, "127.0.0.14:50051")) << output;
  EXPECT_TRUE(absl::StrContains(output, "weight=5")) << output;
  EXPECT_TRUE(absl::StrContains(output, "skipped registry key 'services/pyserver/broken'")) << output;

  auto [json_code, json_output] =
      Run({BuiltBinary("bin/sluice"), "ls", "--etcd", etcd_.endpoint(), "pyserver", "--json"});
  EXPECT_EQ(json_code, 0) << json_output;
  // The JSON document starts on its own line; warnings about skipped keys may come first.
  size_t brace = json_output.find("\n{");
  brace = absl::StartsWith(json_output, "{") ? 0 : (brace == std::string::npos ? brace : brace + 1);
  ASSERT_NE(brace, std::string::npos) << json_output;
  auto parsed = nlohmann::json::parse(json_output.substr(brace), nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << json_output;
  ASSERT_EQ(parsed["pyserver"].size(), 1u) << json_output;
  EXPECT_EQ(parsed["pyserver"][0]["address"], "127.0.0.14:50051");
  EXPECT_EQ(parsed["pyserver"][0]["weight"], 5);

  absl::Time signalled = absl::Now();
  reg->Signal(SIGTERM);
  ASSERT_TRUE(WaitFor([&] { return !KeyExists(key); }, absl::Seconds(5)));
  std::printf("sluice register SIGTERM -> key gone after %s\n",
              absl::FormatDuration(absl::Now() - signalled).c_str());
  auto exit_code = reg->Wait(absl::Seconds(5));
  ASSERT_TRUE(exit_code.ok());
  EXPECT_EQ(*exit_code, 0) << reg->ReadLog();
}

TEST_F(RegistryProcessesTest, CommandsRejectBadInputWithUsageErrors) {
  const std::string sluice = BuiltBinary("bin/sluice");
  auto [bad_addr, bad_addr_out] = Run({sluice, "register", "--etcd", etcd_.endpoint(), "--service",
                                       "x", "--addr", "127.0.0.1"});
  EXPECT_EQ(bad_addr, 2);
  EXPECT_TRUE(absl::StrContains(bad_addr_out, "--addr")) << bad_addr_out;
  EXPECT_TRUE(absl::StrContains(bad_addr_out, "host:port")) << bad_addr_out;

  auto [missing, missing_out] = Run({sluice, "register", "--service", "x"});
  EXPECT_EQ(missing, 2);
  EXPECT_TRUE(absl::StrContains(missing_out, "--addr")) << missing_out;

  auto [unknown, unknown_out] = Run({sluice, "ls", "--bogus"});
  EXPECT_EQ(unknown, 2);
  EXPECT_TRUE(absl::StrContains(unknown_out, "--bogus")) << unknown_out;

  auto [no_cmd, no_cmd_out] = Run({sluice});
  EXPECT_EQ(no_cmd, 2) << no_cmd_out;

  auto [help, help_out] = Run({sluice, "register", "--help"});
  EXPECT_EQ(help, 0);
  EXPECT_TRUE(absl::StrContains(help_out, "--ttl")) << help_out;

  auto [bad_meta, bad_meta_out] = Run({sluice, "register", "--etcd", etcd_.endpoint(), "--service",
                                       "x", "--addr", "127.0.0.1:1", "--meta", "weight=heavy"});
  EXPECT_EQ(bad_meta, 2);
  EXPECT_TRUE(absl::StrContains(bad_meta_out, "weight")) << bad_meta_out;

  // etcd that is not there: a runtime failure (1), naming the member.
  int dead = FreePort();
  auto [dead_code, dead_out] =
      Run({sluice, "ls", "--etcd", absl::StrCat("127.0.0.1:", dead)});
  EXPECT_EQ(dead_code, 1) << dead_out;
  EXPECT_TRUE(absl::StrContains(dead_out, absl::StrCat("127.0.0.1:", dead))) << dead_out;

  auto [bad_target, bad_target_out] =
      Run({BuiltBinary("bin/greeter_client"), "--target", "http://x:1", "--calls", "1"});
  EXPECT_EQ(bad_target, 2);
  EXPECT_TRUE(absl::StrContains(bad_target_out, "etcd://")) << bad_target_out;
}

}  // namespace
}  // namespace sluice
