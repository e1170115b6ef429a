#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sluice/core/log.h"
#include "sluice/discovery/discovery.h"

namespace sluice::discovery {

// Collects every report a Discovery delivers, with the time it arrived; thread-safe.
class Recorder {
 public:
  EndpointSetCallback Callback() {
    return [this](const EndpointSet& set, const EndpointSetDiff& diff) {
      std::lock_guard<std::mutex> lock(mu_);
      sets_.push_back(set);
      diffs_.push_back(diff);
      times_.push_back(absl::Now());
    };
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mu_);
    return sets_.size();
  }
  EndpointSet set(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return sets_.at(i);
  }
  EndpointSetDiff diff(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return diffs_.at(i);
  }
  absl::Time time(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return times_.at(i);
  }

 private:
  std::mutex mu_;
  std::vector<EndpointSet> sets_;
  std::vector<EndpointSetDiff> diffs_;
  std::vector<absl::Time> times_;
};

// Captures log lines at or above `min_level` while it lives (and keeps them off stderr).
class LogCapture {
 public:
  explicit LogCapture(LogLevel min_level = LogLevel::kWarning) {
    previous_ = SetLogSink([this, min_level](LogLevel level, absl::string_view message) {
      if (level < min_level) return;
      std::lock_guard<std::mutex> lock(mu_);
      lines_.emplace_back(message);
    });
  }
  ~LogCapture() { SetLogSink(std::move(previous_)); }

  bool Contains(absl::string_view needle) { return CountContaining(needle) > 0; }
  size_t CountContaining(absl::string_view needle) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (const std::string& line : lines_) n += absl::StrContains(line, needle) ? 1 : 0;
    return n;
  }
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

 private:
  LogSink previous_;
  std::mutex mu_;
  std::vector<std::string> lines_;
};

}  // namespace sluice::discovery
