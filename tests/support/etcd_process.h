#pragma once

#include <string>

#include "absl/status/status.h"
#include "process.h"

namespace sluice::testing {

// A real single-member etcd on free loopback ports with a temporary data dir, for tests.
// Stop/Kill/Start keep the same ports and data, so a test can take etcd away and bring it back.
class EtcdProcess {
 public:
  EtcdProcess();
  ~EtcdProcess();  // kills etcd and removes the data dir

  // Starts etcd and waits until it answers /health; an error carries the tail of its log (and
  // is printed to stderr). A first start whose port was taken meanwhile moves to fresh ports.
  absl::Status Start();
  void Stop();  // SIGTERM and wait
  void Kill();  // SIGKILL
  bool running() { return process_.running(); }

  int client_port() const { return client_port_; }
  // "127.0.0.1:PORT", for EtcdClientOptions.endpoints and etcd:// targets.
  std::string endpoint() const;
  const std::string& data_dir() const { return data_dir_; }

 private:
  absl::Status StartOnce();

  bool started_once_ = false;
  int client_port_;
  int peer_port_;
  std::string data_dir_;
  ChildProcess process_;
};

// GETs http://127.0.0.1:port/health and returns true on {"health":"true"}.
bool EtcdHealthy(int client_port);

}  // namespace sluice::testing
