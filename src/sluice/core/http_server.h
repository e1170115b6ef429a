#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace sluice {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// A minimal HTTP/1.1 server for probes, scrapers and a status page: GET and HEAD only, one
// request per connection, served one at a time by one thread (not for traffic).
class HttpServer {
 public:
  // Answers GET `path` (the query string removed).
  using Handler = std::function<HttpResponse(const std::string& path)>;

  // `listen` is "IPv4:PORT"; port 0 picks a free port. `what` names the server in errors
  // ("--admin", "--metrics-port").
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& listen,
                                                           const std::string& what,
                                                           Handler handler);
  ~HttpServer();

  int port() const { return port_; }

 private:
  explicit HttpServer(Handler handler) : handler_(std::move(handler)) {}
  void Serve();
  void ServeOne(int fd) const;

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace sluice
