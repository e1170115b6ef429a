#include "sluice/proxy/admin_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "sluice/core/address.h"

namespace sluice::proxy {

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(const std::string& listen,
                                                                const Router* router,
                                                                ProxyMetrics* metrics) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--admin: expected IP:PORT, got '", listen, "'"));
  }
  const std::string host = listen.substr(0, colon);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    port = -1;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (port < 0 || port > 65535 || inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--admin: expected IPv4:PORT such as 127.0.0.1:9901, got '", listen, "'"));
  }
  addr.sin_port = htons(port);
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 64) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen, " (admin): ", strerror(err)));
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::unique_ptr<AdminServer> server(new AdminServer(router, metrics));
  server->listen_fd_ = fd;
  server->port_ = ntohs(addr.sin_port);
  server->thread_ = std::thread([s = server.get()] { s->Serve(); });
  return server;
}

AdminServer::~AdminServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

void AdminServer::Serve() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    timeval timeout{2, 0};  // a stuck scraper must not hold the admin thread
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    ServeOne(fd);
    close(fd);
  }
}

void AdminServer::ServeOne(int fd) const {
  std::string request;
  char buf[4096];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 16384) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    request.append(buf, n);
  }
  int status = 400;
  std::string body = "bad request\n";
  const size_t line_end = request.find("\r\n");
  if (line_end != std::string::npos) {
    const std::string line = request.substr(0, line_end);
    const size_t sp1 = line.find(' ');
    const size_t sp2 = line.find(' ', sp1 + 1);
    if (sp1 != std::string::npos && sp2 != std::string::npos) {
      const std::string method = line.substr(0, sp1);
      std::string path = line.substr(sp1 + 1, sp2 - sp1 - 1);
      path = path.substr(0, path.find('?'));
      if (method != "GET" && method != "HEAD") {
        status = 405;
        body = "only GET\n";
      } else {
        std::tie(status, body) = Handle(path);
      }
    }
  }
  const char* reason = status == 200   ? "OK"
                       : status == 404 ? "Not Found"
                       : status == 503 ? "Service Unavailable"
                                       : "Error";
  const char* type =
      body.size() > 0 && body[0] == '[' ? "application/json" : "text/plain; version=0.0.4";
  std::string response =
      absl::StrCat("HTTP/1.1 ", status, " ", reason, "\r\nContent-Type: ", type,
                   "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
  size_t off = 0;
  while (off < response.size()) {
    const ssize_t n = send(fd, response.data() + off, response.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += n;
  }
}

std::pair<int, std::string> AdminServer::Handle(const std::string& path) const {
  if (path == "/healthz") return {200, "ok\n"};
  if (path == "/ready") {
    if (router_->Ready()) return {200, "ready\n"};
    std::string waiting;
    for (const auto& [service, balancer] : router_->routes()) {
      if (balancer->ReadyCount() == 0) absl::StrAppend(&waiting, " ", balancer->service_name());
    }
    return {503, absl::StrCat("not ready: no endpoint yet for", waiting, "\n")};
  }
  if (path == "/backends") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [service, balancer] : router_->routes()) {
      for (const auto& b : balancer->Backends()) {
        list.push_back({{"address", b.address},
                        {"route", service.empty() ? "default" : service},
                        {"state", b.state},
                        {"in_flight", b.in_flight},
                        {"calls", b.calls},
                        {"failures", b.failures},
                        {"weight", b.weight},
                        {"ejections", b.ejections}});
      }
    }
    return {200, list.dump(2) + "\n"};
  }
  if (path == "/metrics") return {200, metrics_->RenderPrometheus(router_->Backends())};
  return {404, "not found: try /healthz, /ready, /backends, /metrics\n"};
}

}  // namespace sluice::proxy
