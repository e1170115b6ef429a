#include "proxy_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sluice::testing {
namespace {
constexpr int kMaxMessage = 16 << 20;
}  // namespace

absl::StatusOr<std::unique_ptr<ProxyProcess>> ProxyProcess::Start(const std::string& target,
                                                                  std::vector<std::string> extra) {
  auto proxy = std::unique_ptr<ProxyProcess>(new ProxyProcess());
  proxy->log_dir_ = MakeTempDir("proxy");
  for (int attempt = 1;; ++attempt) {
    // A proxy that lost a port race exits at once, and gets fresh ports.
    proxy->port_ = FreePort();
    proxy->admin_port_ = FreePort();
    std::vector<std::string> argv = {BuiltBinary("bin/sluice"),
                                     "proxy",
                                     "--listen",
                                     absl::StrCat("127.0.0.1:", proxy->port_),
                                     "--admin",
                                     absl::StrCat("127.0.0.1:", proxy->admin_port_)};
    if (!target.empty()) {
      argv.push_back("--target");
      argv.push_back(target);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto process = ChildProcess::Start(argv, {}, proxy->log_dir_ + "/proxy.log");
    if (!process.ok()) return process.status();
    proxy->process_ = std::move(*process);
    ProxyProcess* p = proxy.get();
    const bool up = WaitFor(
        [p] {
          return !p->process_.running() ||
                 (p->Get("/healthz").first == 200 && CanConnect("127.0.0.1", p->port_));
        },
        absl::Seconds(20));
    if (up && p->process_.running()) return proxy;
    const std::string log = p->process_.ReadLog();
    if (p->process_.running() || attempt == kPortRaceAttempts || !LostAPortRace(log)) {
      return absl::DeadlineExceededError("proxy did not start: " + log);
    }
  }
}

ProxyProcess::~ProxyProcess() {
  if (process_.running()) process_.Kill();
  if (!log_dir_.empty()) RemoveTree(log_dir_);
}

std::pair<int, std::string> ProxyProcess::Get(const std::string& path) const {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(admin_port_);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return {0, ""};
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: x\r\n\r\n");
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response;
  char buf[8192];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) response.append(buf, n);
  close(fd);
  int status = 0;
  // "HTTP/1.1 200 ...": a status line that does not parse counts as no answer.
  if (response.size() > 12 && !absl::SimpleAtoi(response.substr(9, 3), &status)) status = 0;
  const size_t body = response.find("\r\n\r\n");
  return {status, body == std::string::npos ? "" : response.substr(body + 4)};
}

bool ProxyProcess::WaitForReadyBackends(int count, absl::Duration timeout) const {
  const std::string wanted = absl::StrCat("\"ready\":", count);
  return WaitFor([&] { return absl::StrContains(Get("/api/dashboard").second, wanted); }, timeout);
}

double ProxyProcess::Metric(const std::string& name) const {
  const std::string text = Get("/metrics").second;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, name + " ")) {
      double value = -1;
      if (absl::SimpleAtod(line.substr(name.size() + 1), &value)) return value;
    }
  }
  return -1;
}

std::shared_ptr<grpc::Channel> ProxyProcess::Channel() const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessage);
  args.SetMaxSendMessageSize(kMaxMessage);
  args.SetInt("grpc.use_local_subchannel_pool", 1);  // a fresh connection per channel
  return grpc::CreateCustomChannel(address(), grpc::InsecureChannelCredentials(), args);
}

}  // namespace sluice::testing
