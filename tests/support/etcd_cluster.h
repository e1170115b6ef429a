#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "process.h"

namespace sluice::testing {

// Server-side TLS for an EtcdCluster: the members serve client connections over TLS with
// `cert_file`/`key_file`; with `client_cert_auth` they also require a client certificate signed
// by `ca_file`. `probe_cert_file`/`probe_key_file` are what the fixture itself presents then.
struct EtcdClusterTls {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  bool client_cert_auth = false;
  std::string probe_cert_file;
  std::string probe_key_file;
};

// Status of one member, from etcd's Maintenance.Status RPC.
struct EtcdMemberStatus {
  uint64_t member_id = 0;
  uint64_t leader_id = 0;  // 0 while the member knows no leader
  uint64_t raft_term = 0;
};

// A real etcd cluster of `size` members on free loopback ports (127.0.0.1), each with its own
// temporary data dir, for tests. Members can be killed, stopped and started again; the data
// dirs (and so the cluster's state, leases included) survive until the fixture is destroyed.
class EtcdCluster {
 public:
  explicit EtcdCluster(int size = 3, EtcdClusterTls tls = {});
  ~EtcdCluster();  // kills every member and removes the data dirs
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  // Starts every member that is not running and waits until each answers Status with a leader
  // known; an error carries the tail of the failing member's log.
  absl::Status Start(absl::Duration timeout = absl::Seconds(30));
  // Starts one member (after Kill/Stop) and waits until it answers with a leader known.
  absl::Status StartMember(int index, absl::Duration timeout = absl::Seconds(30));
  void KillMember(int index);  // SIGKILL
  void StopMember(int index);  // SIGTERM and wait
  void StopAll();
  bool running(int index);

  // The member that is the leader now, asking the running members; waits until one is known.
  absl::StatusOr<int> Leader(absl::Duration timeout = absl::Seconds(10));
  absl::StatusOr<EtcdMemberStatus> MemberStatus(int index,
                                                absl::Duration timeout = absl::Seconds(1));

  int size() const { return static_cast<int>(members_.size()); }
  // "127.0.0.1:PORT" of each member, for EtcdClientOptions.endpoints and etcd:// targets.
  std::string endpoint(int index) const;
  std::vector<std::string> endpoints() const;
  std::string endpoints_csv() const;  // comma-separated
  const std::string& log_path(int index) const { return members_[index].log_path; }
  std::string LogTail(int index, size_t bytes = 2000) const;

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    std::string data_dir;
    std::string log_path;
    int starts = 0;
    ChildProcess process;
  };

  absl::Status Spawn(int index);
  absl::Status WaitReady(const std::vector<int>& indexes, absl::Duration timeout);

  const EtcdClusterTls tls_;
  const std::string root_dir_;
  std::string initial_cluster_;
  std::vector<Member> members_;
};

}  // namespace sluice::testing
