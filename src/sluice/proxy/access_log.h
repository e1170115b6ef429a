#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sluice/core/random.h"

namespace sluice::proxy {

// What the access log says of one call.
struct AccessRecord {
  absl::Time start;  // wall-clock time the call's headers arrived
  absl::string_view method;
  absl::string_view client;
  absl::string_view backend;  // empty: no backend was reached
  int attempts = 0;
  int grpc_status = 0;
  absl::Duration latency;
  uint64_t bytes_in = 0;   // request message bytes from the client
  uint64_t bytes_out = 0;  // response message bytes to the client
};

// One JSON object per line, keys in a fixed order:
// {"start":"2026-12-04T01:02:03.456Z","method":"/Greeter/SayHello","client":"127.0.0.1:5000",
//  "backend":"127.0.0.11:50051","attempts":1,"grpc_status":0,"latency_ms":0.412,
//  "bytes_in":12,"bytes_out":40}
// `second_cache` (optional) keeps the formatted date and time of the last whole second: most
// lines of a busy proxy fall in the same second, and formatting a time is most of a line's cost.
struct FormattedSecond {
  int64_t unix_second = -1;
  std::string text;  // "2026-12-04T01:02:03"
};
void AppendAccessLine(const AccessRecord& record, std::string& out,
                      FormattedSecond* second_cache = nullptr);

// `sluice proxy --access-log PATH|-`: a line per call (or per sampled call), written off the
// data path. Each worker formats into its own bounded buffer (a lock only the writer ever
// contends, once per flush); one writer thread swaps the buffers out and writes them. A worker
// never waits for the disk: when its buffer is full (the writer is behind), the line is dropped
// and counted.
class AccessLog {
 public:
  struct Options {
    std::string path;   // a file (appended to), or "-" for standard output
    double sample = 1;  // the share of calls logged, (0, 1]
    int workers = 1;
    // Counted here too when set (the proxy's metrics): lines buffered, lines dropped.
    std::atomic<uint64_t>* lines_counter = nullptr;
    std::atomic<uint64_t>* dropped_counter = nullptr;
    size_t buffer_bytes = 1 << 20;  // per worker
    absl::Duration flush_interval = absl::Milliseconds(100);
  };

  static absl::StatusOr<std::unique_ptr<AccessLog>> Open(Options options);
  // Writes what is buffered and stops the writer.
  ~AccessLog();

  // One worker's side: called on that worker's thread only.
  class Writer {
   public:
    // Whether this call is logged (the sample), from the worker's own random source.
    bool Sampled(Random& random) const {
      return sample_ >= 1 || random.UniformDouble() < sample_;
    }
    void Add(const AccessRecord& record);

   private:
    friend class AccessLog;
    explicit Writer(AccessLog* log, double sample) : log_(log), sample_(sample) {}
    AccessLog* log_;
    double sample_;
    std::string line_;  // reused, so formatting allocates nothing in the steady state
    FormattedSecond second_;
    std::mutex mu_;
    std::string pending_;  // guarded by mu_
  };
  Writer& ForWorker(int index) { return *writers_[index]; }

  uint64_t lines() const { return lines_.load(std::memory_order_relaxed); }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  AccessLog(Options options, int fd, bool owns_fd);
  void WriterLoop();
  // Swaps every worker's buffer out and writes it; false when nothing was pending.
  bool FlushOnce(std::string& scratch);

  const Options options_;
  const int fd_;
  const bool owns_fd_;
  std::vector<std::unique_ptr<Writer>> writers_;
  std::atomic<uint64_t> lines_{0};
  std::atomic<uint64_t> dropped_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  enum class Run { kRunning, kStopping } run_ = Run::kRunning;  // guarded by mu_
  std::thread thread_;
};

}  // namespace sluice::proxy
