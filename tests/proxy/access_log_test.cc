// The access log: the line format, the bounded per-worker buffers (a full one drops and
// counts, never waits), sampling, and the lines a real proxy writes for real calls.
#include "sluice/proxy/access_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "sluice/core/random.h"

namespace sluice::proxy {
namespace {

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/access-" + name + "-" + std::to_string(getpid()) + ".log";
}

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::vector<std::string> lines = absl::StrSplit(text.str(), '\n', absl::SkipEmpty());
  return lines;
}

AccessRecord Record() {
  AccessRecord record;
  record.start = absl::FromCivil(absl::CivilSecond(2026, 12, 4, 1, 2, 3), absl::UTCTimeZone()) +
                 absl::Milliseconds(456);
  record.method = "/Greeter/Say\"Hello\"\n";
  record.client = "127.0.0.1:40000";
  record.backend = "127.0.0.11:50051";
  record.attempts = 2;
  record.grpc_status = 14;
  record.latency = absl::Microseconds(1500);
  record.bytes_in = 12;
  record.bytes_out = 40;
  return record;
}

TEST(AccessLogTest, ALineIsOneJsonObjectWithEveryField) {
  std::string line;
  AppendAccessLine(Record(), line);
  ASSERT_EQ(line.back(), '\n');
  const nlohmann::json j = nlohmann::json::parse(line);  // quotes and newline escaped
  EXPECT_EQ(j["start"], "2026-12-04T01:02:03.456Z");
  EXPECT_EQ(j["method"], "/Greeter/Say\"Hello\"\n");
  EXPECT_EQ(j["client"], "127.0.0.1:40000");
  EXPECT_EQ(j["backend"], "127.0.0.11:50051");
  EXPECT_EQ(j["attempts"], 2);
  EXPECT_EQ(j["grpc_status"], 14);
  EXPECT_DOUBLE_EQ(j["latency_ms"].get<double>(), 1.5);
  EXPECT_EQ(j["bytes_in"], 12);
  EXPECT_EQ(j["bytes_out"], 40);
}

TEST(AccessLogTest, AFullBufferDropsAndCountsInsteadOfWaiting) {
  const std::string path = TempPath("full");
  std::string one;
  AppendAccessLine(Record(), one);
  {
    // Room for two lines, and a writer that does not come round during the test.
    auto log = AccessLog::Open({.path = path,
                                .workers = 1,
                                .buffer_bytes = 2 * one.size() + 1,
                                .flush_interval = absl::Hours(1)});
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 0; i < 10; ++i) (*log)->ForWorker(0).Add(Record());
    EXPECT_EQ((*log)->lines(), 2u);
    EXPECT_EQ((*log)->dropped(), 8u);
  }  // closing writes what was kept
  EXPECT_EQ(Lines(path).size(), 2u);
  unlink(path.c_str());
}

TEST(AccessLogTest, SamplesTheGivenShareAndRefusesBadRatios) {
  auto log = AccessLog::Open({.path = TempPath("sample"), .sample = 0.25, .workers = 1});
  ASSERT_TRUE(log.ok()) << log.status();
  SeededRandom random(7);
  int sampled = 0;
  for (int i = 0; i < 20000; ++i) sampled += (*log)->ForWorker(0).Sampled(random);
  EXPECT_NEAR(sampled, 5000, 300);  // about 5 sigma
  for (double bad : {0.0, -1.0, 1.5}) {
    auto refused = AccessLog::Open({.path = TempPath("bad"), .sample = bad});
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.status().message().find("--access-log-sample"), std::string::npos);
  }
  auto unwritable = AccessLog::Open({.path = "/nonexistent-dir/x.log"});
  ASSERT_FALSE(unwritable.ok());
  EXPECT_NE(unwritable.status().message().find("/nonexistent-dir/x.log"), std::string::npos);
}

}  // namespace
}  // namespace sluice::proxy
