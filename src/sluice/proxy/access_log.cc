#include "sluice/proxy/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "sluice/core/log.h"

namespace sluice::proxy {
namespace {

// JSON string contents: the method and addresses come from clients, so quotes, backslashes and
// control bytes are escaped; other bytes pass as they are.
void AppendJsonEscaped(absl::string_view text, std::string& out) {
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      static constexpr char kHex[] = "0123456789abcdef";
      out.append("\\u00");
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
}

void WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      LogWarning("sluice proxy: access log write failed: ", strerror(errno),
                 "; these lines are lost");
      return;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

void AppendAccessLine(const AccessRecord& record, std::string& out,
                      FormattedSecond* second_cache) {
  const int64_t millis = absl::ToUnixMillis(record.start);
  const int64_t second = millis >= 0 ? millis / 1000 : (millis - 999) / 1000;
  FormattedSecond local;
  FormattedSecond& formatted = second_cache != nullptr ? *second_cache : local;
  if (formatted.unix_second != second) {
    formatted.unix_second = second;
    formatted.text =
        absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixSeconds(second), absl::UTCTimeZone());
  }
  const int ms = static_cast<int>(millis - second * 1000);
  out.append("{\"start\":\"");
  out.append(formatted.text);
  const char fraction[] = {'.', static_cast<char>('0' + ms / 100),
                           static_cast<char>('0' + ms / 10 % 10), static_cast<char>('0' + ms % 10),
                           'Z'};
  out.append(fraction, sizeof(fraction));
  out.append("\",\"method\":\"");
  AppendJsonEscaped(record.method, out);
  out.append("\",\"client\":\"");
  AppendJsonEscaped(record.client, out);
  out.append("\",\"backend\":\"");
  AppendJsonEscaped(record.backend, out);
  // Latency in milliseconds with microsecond digits, written as integers (cheaper than
  // formatting a double, and exact).
  const int64_t micros = std::max<int64_t>(0, absl::ToInt64Microseconds(record.latency));
  const int64_t frac = micros % 1000;
  const char latency_fraction[] = {'.', static_cast<char>('0' + frac / 100),
                                   static_cast<char>('0' + frac / 10 % 10),
                                   static_cast<char>('0' + frac % 10)};
  absl::StrAppend(&out, "\",\"attempts\":", record.attempts, ",\"grpc_status\":", record.grpc_status,
                  ",\"latency_ms\":", micros / 1000);
  out.append(latency_fraction, sizeof(latency_fraction));
  absl::StrAppend(&out, ",\"bytes_in\":", record.bytes_in, ",\"bytes_out\":", record.bytes_out,
                  "}\n");
}

absl::StatusOr<std::unique_ptr<AccessLog>> AccessLog::Open(Options options) {
  if (!(options.sample > 0 && options.sample <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--access-log-sample must be more than 0 and at most 1 (the share of calls logged), got ",
        options.sample));
  }
  if (options.workers < 1) return absl::InvalidArgumentError("access log: no worker");
  int fd = STDOUT_FILENO;
  bool owns = false;
  if (options.path != "-") {
    fd = open(options.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      return absl::InvalidArgumentError(absl::StrCat("--access-log ", options.path,
                                                     ": cannot open it for appending: ",
                                                     strerror(errno)));
    }
    owns = true;
  }
  return std::unique_ptr<AccessLog>(new AccessLog(std::move(options), fd, owns));
}

AccessLog::AccessLog(Options options, int fd, bool owns_fd)
    : options_(std::move(options)), fd_(fd), owns_fd_(owns_fd) {
  for (int i = 0; i < options_.workers; ++i) {
    writers_.push_back(std::unique_ptr<Writer>(new Writer(this, options_.sample)));
  }
  thread_ = std::thread([this] { WriterLoop(); });
}

AccessLog::~AccessLog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    run_ = Run::kStopping;
  }
  cv_.notify_all();
  thread_.join();
  std::string scratch;
  while (FlushOnce(scratch)) {
  }
  if (owns_fd_) close(fd_);
}

void AccessLog::Writer::Add(const AccessRecord& record) {
  line_.clear();
  AppendAccessLine(record, line_, &second_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_.size() + line_.size() > log_->options_.buffer_bytes) {
      log_->dropped_.fetch_add(1, std::memory_order_relaxed);
      if (log_->options_.dropped_counter != nullptr) {
        log_->options_.dropped_counter->fetch_add(1, std::memory_order_relaxed);
      }
      return;
    }
    pending_.append(line_);
  }
  log_->lines_.fetch_add(1, std::memory_order_relaxed);
  if (log_->options_.lines_counter != nullptr) {
    log_->options_.lines_counter->fetch_add(1, std::memory_order_relaxed);
  }
}

bool AccessLog::FlushOnce(std::string& scratch) {
  bool wrote = false;
  for (auto& writer : writers_) {
    scratch.clear();
    {
      std::lock_guard<std::mutex> lock(writer->mu_);
      scratch.swap(writer->pending_);
    }
    if (scratch.empty()) continue;
    WriteAll(fd_, scratch);
    wrote = true;
  }
  return wrote;
}

void AccessLog::WriterLoop() {
  std::string scratch;
  std::unique_lock<std::mutex> lock(mu_);
  while (run_ == Run::kRunning) {
    cv_.wait_for(lock, absl::ToChronoNanoseconds(options_.flush_interval));
    lock.unlock();
    FlushOnce(scratch);
    lock.lock();
  }
}

}  // namespace sluice::proxy
