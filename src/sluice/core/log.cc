#include "sluice/core/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sluice {
namespace {

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kWarning: return "WARN";
    case LogLevel::kError: return "ERROR";
  }
  return "?";
}

LogLevel LevelFromEnvironment() {
  const char* env = std::getenv("SLUICE_LOG_LEVEL");
  if (env == nullptr) return LogLevel::kInfo;
  std::string value(env);
  if (value == "debug") return LogLevel::kDebug;
  if (value == "warning" || value == "warn") return LogLevel::kWarning;
  if (value == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

struct LogState {
  std::mutex mu;
  LogSink sink;
  std::atomic<int> min_level{static_cast<int>(LevelFromEnvironment())};
};

LogState& State() {
  static LogState* state = new LogState();  // never destroyed: logging works during exit
  return *state;
}

void WriteToStderr(LogLevel level, absl::string_view message) {
  std::string line = absl::StrCat(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3S", absl::Now(), absl::UTCTimeZone()), " ",
      LevelName(level), " ", message, "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace

LogSink SetLogSink(LogSink sink) {
  LogState& state = State();
  std::lock_guard<std::mutex> lock(state.mu);
  LogSink previous = std::move(state.sink);
  state.sink = std::move(sink);
  return previous;
}

void SetMinLogLevel(LogLevel level) {
  State().min_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= State().min_level.load(std::memory_order_relaxed);
}

void LogLine(LogLevel level, absl::string_view message) {
  LogState& state = State();
  std::lock_guard<std::mutex> lock(state.mu);
  if (state.sink) {
    state.sink(level, message);
  } else {
    WriteToStderr(level, message);
  }
}

}  // namespace sluice
