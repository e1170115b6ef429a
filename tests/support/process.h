#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sluice::testing {

// A child process started by a test: real binaries (etcd, greeter_server, sluice), output
// captured in a file. The destructor kills it (SIGKILL) if it still runs.
class ChildProcess {
 public:
  // argv[0] is the program (a path, or a name looked up in PATH). `env` adds to the
  // environment. stdout and stderr go to `log_path` (truncated) when non-empty.
  static absl::StatusOr<ChildProcess> Start(std::vector<std::string> argv,
                                            std::map<std::string, std::string> env = {},
                                            std::string log_path = "");
  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int signo);
  // Waits for exit; returns the exit code (128+signal if killed), or DeadlineExceeded.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // SIGTERM, then SIGKILL after `grace`; returns the exit code.
  int Stop(absl::Duration grace = absl::Seconds(5));
  void Kill();  // SIGKILL and reap
  const std::string& log_path() const { return log_path_; }
  std::string ReadLog() const;

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::string log_path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();
// A child given FreePort() ports may find one taken by the time it binds it (ctest runs tests
// side by side): whether its output says so ("already in use", any case), and how many
// times in all a start may try fresh ports.
bool LostAPortRace(const std::string& output);
constexpr int kPortRaceAttempts = 3;
// Whether something accepts TCP connections on host:port.
bool CanConnect(const std::string& host, int port);
// A fresh temporary directory (removed by RemoveTree).
std::string MakeTempDir(const std::string& tag);
void RemoveTree(const std::string& path);
// Polls `condition` every 5 ms until it is true or `timeout` passes; returns the last value.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout);

// How much slower than a plain build this one runs: 4 under sanitizers, else 1;
// SLUICE_TIMING_SCALE in the environment overrides it. Tests that bound a latency (100 ms to
// see a registration) multiply the bound by it; what they assert stays the same.
double TimingScale();
// `bound` x TimingScale().
absl::Duration Scaled(absl::Duration bound);

// Path of a binary built by this project (from the SLUICE_BUILD_DIR compile definition).
std::string BuiltBinary(const std::string& relative_path);

}  // namespace sluice::testing
