// `sluice bench` against real Greeter backends that count the calls they answer: the report must
// agree with what the backends saw.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "greeter_backend.h"
#include "process.h"

namespace sluice {
namespace {

using testing::ChildProcess;
using testing::GreeterBackend;

struct BenchOutput {
  int exit_code = -1;
  std::string text;
};

BenchOutput RunBench(const std::vector<std::string>& args, const std::string& tag) {
  std::vector<std::string> argv = {testing::BuiltBinary("bin/sluice"), "bench"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child =
      ChildProcess::Start(argv, {}, absl::StrCat(::testing::TempDir(), "bench-", tag, ".log"));
  EXPECT_TRUE(child.ok()) << child.status();
  BenchOutput out;
  if (!child.ok()) return out;
  out.exit_code = child->Wait(absl::Seconds(60)).value_or(-1);
  out.text = child->ReadLog();
  return out;
}

nlohmann::json ParseJson(const std::string& text) {
  // The log file also holds stderr; the JSON document is the block from the first '{' line.
  const size_t begin = text.find("{\n");
  const size_t end = text.rfind("\n}");
  if (begin == std::string::npos || end == std::string::npos) return nullptr;
  return nlohmann::json::parse(text.substr(begin, end + 2 - begin), nullptr, false);
}

class BenchCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      auto backend = GreeterBackend::Start(absl::StrCat("127.0.0.", 51 + i));
      ASSERT_TRUE(backend.ok()) << backend.status();
      addresses_.push_back((*backend)->address());
      backends_.push_back(std::move(*backend));
    }
    target_ = "static://" + absl::StrJoin(addresses_, ",");
  }

  std::vector<std::unique_ptr<GreeterBackend>> backends_;
  std::vector<std::string> addresses_;
  std::string target_;
};

TEST_F(BenchCommandTest, CountsAndWhoAnsweredMatchWhatTheBackendsSaw) {
  BenchOutput out =
      RunBench({"--target", target_, "--policy", "round_robin", "--calls", "3000", "--concurrency", "8",
                "--json"},
               "counts");
  ASSERT_EQ(out.exit_code, 0) << out.text;
  nlohmann::json report = ParseJson(out.text);
  ASSERT_TRUE(report.is_object()) << out.text;
  EXPECT_EQ(report["calls"]["ok"], 3000);
  EXPECT_EQ(report["calls"]["failed"], 0);
  int64_t seen = 0;
  for (size_t i = 0; i < backends_.size(); ++i) {
    const int64_t calls = backends_[i]->calls();
    seen += calls;
    // Round robin over three: a third each.
    EXPECT_NEAR(calls, 1000, 10) << addresses_[i];
    EXPECT_EQ(report["answered_by"][addresses_[i]].get<int64_t>(), calls) << addresses_[i];
  }
  EXPECT_EQ(seen, 3000);
  // Not a terminal: no progress line (carriage returns) in the output.
  EXPECT_FALSE(absl::StrContains(out.text, "\r"));
}

TEST_F(BenchCommandTest, ErrorsAreCountedByStatusCode) {
  backends_[1]->set_failure(grpc::StatusCode::RESOURCE_EXHAUSTED);
  BenchOutput out = RunBench({"--target", target_, "--calls", "900", "--json"}, "errors");
  ASSERT_EQ(out.exit_code, 0) << out.text;
  nlohmann::json report = ParseJson(out.text);
  ASSERT_TRUE(report.is_object()) << out.text;
  const int64_t failing_calls = backends_[1]->calls();
  EXPECT_GT(failing_calls, 0);
  EXPECT_EQ(report["errors"]["RESOURCE_EXHAUSTED"]["count"].get<int64_t>(), failing_calls);
  EXPECT_EQ(report["calls"]["failed"].get<int64_t>(), failing_calls);
  EXPECT_EQ(report["calls"]["ok"].get<int64_t>(), 900 - failing_calls);
  EXPECT_FALSE(report["answered_by"].contains(addresses_[1]));
  EXPECT_EQ(report["answered_by"][addresses_[0]].get<int64_t>(), backends_[0]->calls());
}

TEST_F(BenchCommandTest, OpenLoopHoldsTheAskedRate) {
  BenchOutput out = RunBench(
      {"--target", target_, "--rate", "400", "--duration", "2s", "--warmup", "200ms", "--json"},
      "rate");
  ASSERT_EQ(out.exit_code, 0) << out.text;
  nlohmann::json report = ParseJson(out.text);
  ASSERT_TRUE(report.is_object()) << out.text;
  EXPECT_NEAR(report["calls_per_second"].get<double>(), 400, 20) << out.text;
  EXPECT_NEAR(report["calls"]["ok"].get<double>(), 800, 40) << out.text;
  // The warmup's calls reached the backends but are not in the report.
  int64_t seen = 0;
  for (const auto& b : backends_) seen += b->calls();
  EXPECT_GE(seen, report["calls"]["ok"].get<int64_t>() + 60);
}

TEST_F(BenchCommandTest, JsonHasEveryField) {
  BenchOutput out = RunBench({"--target", target_, "--calls", "50", "--json"}, "json");
  ASSERT_EQ(out.exit_code, 0) << out.text;
  nlohmann::json report = ParseJson(out.text);
  ASSERT_TRUE(report.is_object()) << out.text;
  for (const char* field : {"target", "method", "policy", "concurrency", "connections", "rate",
                            "warmup_s", "duration_s", "calls", "calls_per_second", "latency_ms",
                            "errors", "answered_by"}) {
    EXPECT_TRUE(report.contains(field)) << field;
  }
  for (const char* field : {"p50", "p90", "p99", "p999", "max", "mean"}) {
    ASSERT_TRUE(report["latency_ms"].contains(field)) << field;
    EXPECT_GT(report["latency_ms"][field].get<double>(), 0.0) << field;
  }
  EXPECT_LE(report["latency_ms"]["p50"].get<double>(), report["latency_ms"]["p99"].get<double>());
  EXPECT_LE(report["latency_ms"]["p99"].get<double>(), report["latency_ms"]["max"].get<double>());
  for (const char* field : {"total", "ok", "failed"}) EXPECT_TRUE(report["calls"].contains(field));
}

TEST_F(BenchCommandTest, TextReportShowsThroughputLatencyAndHistogram) {
  BenchOutput out = RunBench({"--target", target_, "--calls", "300"}, "text");
  ASSERT_EQ(out.exit_code, 0) << out.text;
  EXPECT_TRUE(absl::StrContains(out.text, "throughput")) << out.text;
  EXPECT_TRUE(absl::StrContains(out.text, "p99.9")) << out.text;
  for (const auto& address : addresses_) {
    EXPECT_TRUE(absl::StrContains(out.text, absl::StrCat("  ", address, " "))) << out.text;
  }
}

TEST(BenchCommandUsageTest, BadFlagsAreUsageErrorsNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"--target", "127.0.0.1:1", "--concurrency", "0"}, "--concurrency"},
      {{"--target", "127.0.0.1:1", "--duration", "soon"}, "--duration"},
      {{"--target", "127.0.0.1:1", "--method", "SayHello"}, "--method"},
      {{"--target", "127.0.0.1:1", "--method", "/pkg.S/M"}, "--data-file"},
      {{"--target", "127.0.0.1:1", "--data-file", "/nonexistent/req.bin"}, "--data-file"},
      {{"--target", "127.0.0.1:1", "--rate", "-5"}, "--rate"},
      {{"--target", "127.0.0.1:1", "--policy", "fastest"}, "fastest"},
      {{"--target", "nope://x"}, "etcd://"},
      {{"--calls", "5"}, "--target"},
  };
  int i = 0;
  for (const auto& c : cases) {
    BenchOutput out = RunBench(c.args, absl::StrCat("usage", i++));
    EXPECT_EQ(out.exit_code, 2) << absl::StrJoin(c.args, " ") << "\n" << out.text;
    EXPECT_TRUE(absl::StrContains(out.text, c.expected))
        << absl::StrJoin(c.args, " ") << "\n" << out.text;
  }
}

}  // namespace
}  // namespace sluice
