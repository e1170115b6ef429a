#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "sluice/core/log.h"
#include "sluice/discovery/sources.h"

namespace sluice::discovery {
namespace {

class DnsDiscovery final : public Discovery {
 public:
  DnsDiscovery(std::string host, uint16_t port, DiscoveryOptions options, DnsResolver resolver)
      : host_(std::move(host)),
        port_(port),
        options_(std::move(options)),
        resolver_(std::move(resolver)) {}
  ~DnsDiscovery() override { Stop(); }

  void Start(EndpointSetCallback callback) override {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (started_) {
      LogWarning("dns discovery of '", host_, "': Start() called twice; ignored");
      return;
    }
    started_ = true;
    SetCallback(std::move(callback));
    thread_ = std::thread([this] { Run(); });
  }

  void Stop() override {
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    // Only the caller that finds the thread joinable joins it; later calls are no-ops.
    std::thread thread;
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      thread = std::move(thread_);
    }
    if (thread.joinable()) thread.join();
    ClearCallback();
  }

 private:
  void Run() {
    std::string last_error;
    while (true) {
      absl::StatusOr<std::vector<std::string>> ips = resolver_(host_);
      {
        std::lock_guard<std::mutex> lock(state_mu_);
        if (stopping_) return;
      }
      if (ips.ok()) {
        if (!last_error.empty()) LogInfo("dns discovery of '", host_, "': resolves again");
        last_error.clear();
        std::vector<Endpoint> endpoints;
        for (const std::string& ip : *ips) {
          Endpoint endpoint;
          endpoint.address = ip.find(':') == std::string::npos ? absl::StrCat(ip, ":", port_)
                                                               : absl::StrCat("[", ip, "]:", port_);
          endpoints.push_back(std::move(endpoint));
        }
        Publish(EndpointSet(std::move(endpoints)));
      } else {
        std::string message(ips.status().message());
        // Warn when the failure starts or changes, not on every refresh of a lasting one.
        if (message != last_error) {
          LogWarning("dns discovery of '", host_, "' failed: ", message, "; keeping the last ",
                     Current().size(), " endpoint(s) and retrying every ",
                     absl::FormatDuration(options_.dns_refresh_interval));
        }
        last_error = std::move(message);
        ReportError(ips.status());
      }
      std::unique_lock<std::mutex> lock(state_mu_);
      if (wake_.wait_for(lock, absl::ToChronoNanoseconds(options_.dns_refresh_interval),
                         [this] { return stopping_; })) {
        return;
      }
    }
  }

  const std::string host_;
  const uint16_t port_;
  const DiscoveryOptions options_;
  const DnsResolver resolver_;

  std::mutex state_mu_;
  std::condition_variable wake_;
  bool started_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::vector<std::string>> ResolveWithGetaddrinfo(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  // One entry per address instead of one per socket type. No AI_ADDRCONFIG: it hides every
  // address on a host whose only interface is loopback.
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &result);
  if (rc != 0) {
    std::string message = absl::StrCat(
        "cannot resolve '", host, "': ", rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    if (rc == EAI_NONAME || rc == EAI_NODATA) return absl::NotFoundError(message);
    return absl::UnavailableError(message);
  }
  std::vector<std::string> ips;
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* addr = nullptr;
    if (ai->ai_family == AF_INET) {
      addr = &reinterpret_cast<const sockaddr_in*>(ai->ai_addr)->sin_addr;
    } else if (ai->ai_family == AF_INET6) {
      addr = &reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_addr;
    } else {
      continue;
    }
    if (inet_ntop(ai->ai_family, addr, text, sizeof(text)) == nullptr) continue;
    if (std::find(ips.begin(), ips.end(), text) == ips.end()) ips.emplace_back(text);
  }
  freeaddrinfo(result);
  return ips;
}

std::unique_ptr<Discovery> NewDnsDiscovery(std::string host, uint16_t port,
                                           DiscoveryOptions options, DnsResolver resolver) {
  if (!resolver) resolver = ResolveWithGetaddrinfo;
  return std::make_unique<DnsDiscovery>(std::move(host), port, std::move(options),
                                        std::move(resolver));
}

}  // namespace sluice::discovery
