// `sluice register --health-check` as a real process against a real etcd, beside real gRPC
// backends: an in-process server whose health the test flips, and a real greeter_server.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "etcd_process.h"
#include "helloworld.grpc.pb.h"
#include "process.h"
#include "sluice/etcd/etcd_client.h"

namespace sluice {
namespace {

using testing::BuiltBinary;
using testing::ChildProcess;
using testing::EtcdProcess;
using testing::FreePort;
using testing::Scaled;
using testing::WaitFor;

class RegisterHealthCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(etcd_.Start().ok());
    etcd::EtcdClientOptions options;
    options.endpoints = {etcd_.endpoint()};
    auto client = etcd::EtcdClient::Create(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    log_dir_ = testing::MakeTempDir("register-health");
  }
  void TearDown() override { testing::RemoveTree(log_dir_); }

  ChildProcess StartSidecar(const std::string& address, std::vector<std::string> extra) {
    std::vector<std::string> argv = {BuiltBinary("bin/sluice"),
                                     "register",
                                     "--etcd",
                                     etcd_.endpoint(),
                                     "--service",
                                     "greeter",
                                     "--addr",
                                     address};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto child = ChildProcess::Start(argv, {}, log_dir_ + "/register.log");
    EXPECT_TRUE(child.ok());
    return std::move(*child);
  }

  bool KeyExists(const std::string& key) {
    auto got = client_->Get(key);
    return got.ok() && !got->kvs.empty();
  }
  // Polls etcd until the key's presence is `present`; returns how long that took, or
  // InfiniteDuration when it did not happen within `timeout`.
  absl::Duration TimeUntil(const std::string& key, bool present, absl::Duration timeout) {
    const absl::Time start = absl::Now();
    while (absl::Now() - start < timeout) {
      if (KeyExists(key) == present) return absl::Now() - start;
      absl::SleepFor(absl::Milliseconds(2));
    }
    return absl::InfiniteDuration();
  }

  EtcdProcess etcd_;
  std::unique_ptr<etcd::EtcdClient> client_;
  std::string log_dir_;
};

TEST_F(RegisterHealthCheckTest, KeyGoesWithin100msOfNotServingAndComesBackWhenServing) {
  grpc::EnableDefaultHealthCheckService(true);
  Greeter::Service greeter;  // unimplemented: only its presence matters
  grpc::ServerBuilder builder;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  builder.AddListeningPort("127.0.0.13:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&greeter);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  grpc::EnableDefaultHealthCheckService(false);
  ASSERT_NE(server, nullptr);
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus("Greeter", false);

  const std::string address = absl::StrCat("127.0.0.13:", port);
  const std::string key = "services/greeter/" + address;
  ChildProcess sidecar = StartSidecar(address, {"--health-check", "Greeter"});
  // NOT_SERVING from the start: never registered.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_FALSE(KeyExists(key)) << sidecar.ReadLog();

  health->SetServingStatus("Greeter", true);
  ASSERT_LT(TimeUntil(key, true, absl::Seconds(10)), absl::InfiniteDuration()) << sidecar.ReadLog();

  for (int round = 0; round < 3; ++round) {
    health->SetServingStatus("Greeter", false);
    const absl::Duration removed = TimeUntil(key, false, absl::Seconds(5));
    EXPECT_LE(removed, Scaled(absl::Milliseconds(100))) << "round " << round;
    health->SetServingStatus("Greeter", true);
    EXPECT_LT(TimeUntil(key, true, absl::Seconds(5)), absl::Seconds(5)) << "round " << round;
  }

  EXPECT_EQ(sidecar.Stop(), 0) << sidecar.ReadLog();
  EXPECT_FALSE(KeyExists(key));
  server->Shutdown(std::chrono::system_clock::now());
}

TEST_F(RegisterHealthCheckTest, RealGreeterServerIsDeregisteredWhenItStops) {
  const int port = FreePort();
  const std::string address = absl::StrCat("127.0.0.12:", port);
  const std::string key = "services/greeter/" + address;
  // Long grace and drain: the server keeps answering, so only its NOT_SERVING can remove the key.
  auto greeter = ChildProcess::Start({BuiltBinary("bin/greeter_server"), "--ip", "127.0.0.12",
                                      "--port", std::to_string(port), "--quiet", "--drain", "3s"},
                                     {}, log_dir_ + "/greeter.log");
  ASSERT_TRUE(greeter.ok());
  ChildProcess sidecar = StartSidecar(address, {"--health-check"});
  ASSERT_LT(TimeUntil(key, true, absl::Seconds(10)), absl::InfiniteDuration())
      << sidecar.ReadLog() << greeter->ReadLog();

  // `sluice ls --health` asks the backend itself.
  auto ls = ChildProcess::Start({BuiltBinary("bin/sluice"), "ls", "--etcd", etcd_.endpoint(),
                                 "greeter", "--health", "Greeter"},
                                {}, log_dir_ + "/ls.log");
  ASSERT_TRUE(ls.ok());
  EXPECT_EQ(*ls->Wait(absl::Seconds(10)), 0);
  const std::string listing = ls->ReadLog();
  EXPECT_NE(listing.find("HEALTH"), std::string::npos) << listing;
  EXPECT_NE(listing.find(address + "  serving"), std::string::npos) << listing;

  greeter->Signal(SIGTERM);
  EXPECT_LE(TimeUntil(key, false, absl::Seconds(5)), Scaled(absl::Milliseconds(200)))
      << sidecar.ReadLog();
  EXPECT_EQ(*greeter->Wait(absl::Seconds(10)), 0);
  // The backend gone, the sidecar keeps waiting (and keeps the key away).
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_FALSE(KeyExists(key));
  EXPECT_TRUE(sidecar.running());
  EXPECT_EQ(sidecar.Stop(), 0) << sidecar.ReadLog();
}

}  // namespace
}  // namespace sluice
