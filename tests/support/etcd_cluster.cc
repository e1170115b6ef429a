#include "etcd_cluster.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "etcdserverpb/rpc.grpc.pb.h"

namespace sluice::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

EtcdCluster::EtcdCluster(int size, EtcdClusterTls tls)
    : tls_(std::move(tls)), root_dir_(MakeTempDir("etcd-cluster")), members_(size) {
  std::vector<std::string> peers;
  for (int i = 0; i < size; ++i) {
    Member& member = members_[i];
    member.name = absl::StrCat("m", i);
    member.client_port = FreePort();
    member.peer_port = FreePort();
    member.data_dir = absl::StrCat(root_dir_, "/", member.name);
    peers.push_back(absl::StrCat(member.name, "=http://127.0.0.1:", member.peer_port));
  }
  initial_cluster_ = absl::StrJoin(peers, ",");
}

EtcdCluster::~EtcdCluster() {
  for (Member& member : members_) member.process.Kill();
  RemoveTree(root_dir_);
}

std::string EtcdCluster::endpoint(int index) const {
  return absl::StrCat("127.0.0.1:", members_[index].client_port);
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

std::string EtcdCluster::endpoints_csv() const { return absl::StrJoin(endpoints(), ","); }

bool EtcdCluster::running(int index) { return members_[index].process.running(); }

std::string EtcdCluster::LogTail(int index, size_t bytes) const {
  std::string log = ReadFile(members_[index].log_path);
  if (log.size() > bytes) log = log.substr(log.size() - bytes);
  return log;
}

absl::Status EtcdCluster::Spawn(int index) {
  Member& member = members_[index];
  if (member.process.running()) return absl::OkStatus();
  const bool tls = !tls_.cert_file.empty();
  const std::string client_url =
      absl::StrCat(tls ? "https" : "http", "://127.0.0.1:", member.client_port);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", member.peer_port);
  std::vector<std::string> argv = {
      "etcd", "--name", member.name, "--data-dir", member.data_dir, "--listen-client-urls",
      client_url, "--advertise-client-urls", client_url, "--listen-peer-urls", peer_url,
      "--initial-advertise-peer-urls", peer_url,
      // Ignored once the data dir holds a member: a restart rejoins the same cluster.
      "--initial-cluster", initial_cluster_, "--initial-cluster-state", "new",
      // One token for the whole cluster, unique to this fixture.
      "--initial-cluster-token", absl::StrCat("sluice-", members_[0].client_port), "--log-level",
      "warn", "--logger", "zap"};
  if (tls) {
    argv.insert(argv.end(), {"--cert-file", tls_.cert_file, "--key-file", tls_.key_file});
    if (tls_.client_cert_auth) {
      argv.insert(argv.end(), {"--client-cert-auth", "--trusted-ca-file", tls_.ca_file});
    }
  }
  // One log per start, so a restart does not erase what the killed process said.
  member.log_path = absl::StrCat(root_dir_, "/", member.name, "-", member.starts++, ".log");
  auto child = ChildProcess::Start(argv, {{"ETCD_UNSUPPORTED_ARCH", ""}}, member.log_path);
  if (!child.ok()) return child.status();
  member.process = std::move(*child);
  return absl::OkStatus();
}

absl::Status EtcdCluster::Start(absl::Duration timeout) {
  // All at once: a member of a new (or fully stopped) cluster waits for a quorum of its peers.
  std::vector<int> started;
  for (int i = 0; i < size(); ++i) {
    if (running(i)) continue;
    if (absl::Status status = Spawn(i); !status.ok()) return status;
    started.push_back(i);
  }
  return WaitReady(started, timeout);
}

absl::Status EtcdCluster::StartMember(int index, absl::Duration timeout) {
  if (absl::Status status = Spawn(index); !status.ok()) return status;
  return WaitReady({index}, timeout);
}

absl::Status EtcdCluster::WaitReady(const std::vector<int>& indexes, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (int index : indexes) {
    while (true) {
      if (!running(index)) {
        return absl::UnavailableError(absl::StrCat("etcd member ", members_[index].name,
                                                   " exited; log tail:\n", LogTail(index)));
      }
      absl::StatusOr<EtcdMemberStatus> status = MemberStatus(index);
      if (status.ok() && status->leader_id != 0) break;
      if (absl::Now() > deadline) {
        return absl::UnavailableError(
            absl::StrCat("etcd member ", members_[index].name, " on ", endpoint(index),
                         " has no leader after ", absl::FormatDuration(timeout), " (",
                         status.ok() ? "no leader" : status.status().ToString(), "); log tail:\n",
                         LogTail(index)));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return absl::OkStatus();
}

void EtcdCluster::KillMember(int index) { members_[index].process.Kill(); }

void EtcdCluster::StopMember(int index) { members_[index].process.Stop(absl::Seconds(10)); }

void EtcdCluster::StopAll() {
  // SIGTERM to all first, so the members shut down together instead of one by one.
  for (Member& member : members_) {
    if (member.process.running()) member.process.Signal(SIGTERM);
  }
  for (Member& member : members_) member.process.Stop(absl::Seconds(10));
}

absl::StatusOr<EtcdMemberStatus> EtcdCluster::MemberStatus(int index, absl::Duration timeout) {
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!tls_.cert_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadFile(tls_.ca_file);
    if (!tls_.probe_cert_file.empty()) {
      ssl.pem_cert_chain = ReadFile(tls_.probe_cert_file);
      ssl.pem_private_key = ReadFile(tls_.probe_key_file);
    }
    credentials = grpc::SslCredentials(ssl);
  }
  // A fresh channel each time: the member may have restarted since the last probe.
  auto channel = grpc::CreateChannel(endpoint(index), credentials);
  auto stub = etcdserverpb::Maintenance::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  etcdserverpb::StatusRequest request;
  etcdserverpb::StatusResponse response;
  grpc::Status status = stub->Status(&context, request, &response);
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("Status on ", endpoint(index), ": ", status.error_message()));
  }
  return EtcdMemberStatus{response.header().member_id(), response.leader(), response.raftterm()};
}

absl::StatusOr<int> EtcdCluster::Leader(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    for (int i = 0; i < size(); ++i) {
      if (!running(i)) continue;
      absl::StatusOr<EtcdMemberStatus> status = MemberStatus(i);
      if (!status.ok() || status->leader_id == 0) continue;
      if (status->member_id == status->leader_id) return i;
    }
    if (absl::Now() > deadline) {
      return absl::UnavailableError(absl::StrCat("no etcd leader among the running members after ",
                                                 absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace sluice::testing
