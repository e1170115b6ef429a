#include "etcd_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sluice::testing {

EtcdProcess::EtcdProcess()
    : client_port_(FreePort()), peer_port_(FreePort()), data_dir_(MakeTempDir("etcd")) {}

EtcdProcess::~EtcdProcess() {
  process_.Kill();
  RemoveTree(data_dir_);
}

std::string EtcdProcess::endpoint() const { return absl::StrCat("127.0.0.1:", client_port_); }

absl::Status EtcdProcess::Start() {
  for (int attempt = 1;; ++attempt) {
    absl::Status status = StartOnce();
    if (status.ok()) {
      started_once_ = true;
      return status;
    }
    // A first start that lost its port moves to fresh ones; a restart keeps its ports, which
    // clients know.
    if (started_once_ || !LostAPortRace(std::string(status.message())) ||
        attempt == kPortRaceAttempts) {
      std::fprintf(stderr, "EtcdProcess::Start: %s\n", std::string(status.message()).c_str());
      return status;
    }
    client_port_ = FreePort();
    peer_port_ = FreePort();
    RemoveTree(data_dir_ + "/data");
  }
}

absl::Status EtcdProcess::StartOnce() {
  std::string client_url = absl::StrCat("http://127.0.0.1:", client_port_);
  std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port_);
  auto child = ChildProcess::Start({"etcd",
                                    "--name",
                                    "sluice-test",
                                    "--data-dir",
                                    data_dir_ + "/data",
                                    "--listen-client-urls",
                                    client_url,
                                    "--advertise-client-urls",
                                    client_url,
                                    "--listen-peer-urls",
                                    peer_url,
                                    "--initial-advertise-peer-urls",
                                    peer_url,
                                    "--initial-cluster",
                                    absl::StrCat("sluice-test=", peer_url),
                                    "--initial-cluster-state",
                                    "new",
                                    "--log-level",
                                    "warn",
                                    "--logger",
                                    "zap"},
                                   {{"ETCD_UNSUPPORTED_ARCH", ""}}, data_dir_ + "/etcd.log");
  if (!child.ok()) return child.status();
  process_ = std::move(*child);
  bool healthy =
      WaitFor([&] { return !process_.running() || EtcdHealthy(client_port_); }, absl::Seconds(20));
  if (!healthy || !process_.running()) {
    std::string log = process_.ReadLog();
    if (log.size() > 2000) log = log.substr(log.size() - 2000);
    process_.Kill();
    return absl::UnavailableError(
        absl::StrCat("etcd did not become healthy on port ", client_port_, "; log tail:\n", log));
  }
  return absl::OkStatus();
}

void EtcdProcess::Stop() { process_.Stop(absl::Seconds(10)); }

void EtcdProcess::Kill() { process_.Kill(); }

bool EtcdHealthy(int client_port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(client_port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool healthy = false;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    std::string request = absl::StrCat("GET /health HTTP/1.1\r\nHost: 127.0.0.1:", client_port,
                                       "\r\nConnection: close\r\n\r\n");
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      std::string response;
      char buf[1024];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, static_cast<size_t>(n));
      healthy = response.find("\"health\":\"true\"") != std::string::npos;
    }
  }
  close(fd);
  return healthy;
}

}  // namespace sluice::testing
