#include "sluice/proxy/backend_pool.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "sluice/core/address.h"

namespace sluice::proxy {

BackendPool::~BackendPool() { Clear(); }

void BackendPool::Clear() {
  pools_.clear();
  owned_.clear();
}

const TlsContext* BackendPool::TlsFor(const client::Balancer& balancer) const {
  const ProxyOptions& options = *env_->options;
  if (options.route_backend_tls.empty()) return options.backend_tls_context;
  auto it = options.route_backend_tls.find(&balancer);
  return it == options.route_backend_tls.end() ? options.backend_tls_context : it->second;
}

namespace {

// The route's readiness (Router gives every proxy route one); null for a balancer made otherwise.
BackendReadiness* ReadinessOf(const client::Balancer& balancer) {
  return dynamic_cast<BackendReadiness*>(balancer.options().transport_watcher.get());
}

}  // namespace

const std::string& BackendPool::PoolKey(const std::string& address, const TlsContext* tls,
                                        std::string* scratch) const {
  // Routes with their own TLS settings keep their own connections to a backend they share.
  if (tls == env_->options->backend_tls_context) return address;  // no allocation: the usual case
  *scratch = absl::StrCat(address, " tls@", reinterpret_cast<uintptr_t>(tls));
  return *scratch;
}

BackendSession* BackendPool::For(const std::string& address, const client::Balancer& balancer) {
  const ProxyOptions& options = *env_->options;
  const TlsContext* tls = TlsFor(balancer);
  std::string scratch;
  const std::string& pool_key = PoolKey(address, tls, &scratch);
  std::vector<BackendSession*>& pool = pools_[pool_key];
  BackendSession* best = nullptr;
  size_t usable = 0;
  for (BackendSession* conn : pool) {
    if (!conn->accepts_streams()) continue;
    ++usable;
    const size_t capacity =
        std::min(conn->remote_max_streams(), options.streams_per_upstream_connection);
    if (conn->stream_count() < capacity) return conn;
    if (best == nullptr || conn->stream_count() < best->stream_count()) best = conn;
  }
  if (usable < static_cast<size_t>(options.max_upstream_connections) || best == nullptr) {
    if (BackendSession* fresh = Connect(address, tls, pool_key, ReadinessOf(balancer))) {
      return fresh;
    }
  }
  // Every connection is full: nghttp2 queues the stream until the backend allows it.
  return best;
}

void BackendPool::Probe(const std::string& address, const client::Balancer& balancer,
                        BackendReadiness* readiness) {
  const TlsContext* tls = TlsFor(balancer);
  std::string scratch;
  const std::string& pool_key = PoolKey(address, tls, &scratch);
  for (BackendSession* conn : pools_[pool_key]) {
    // A confirmed connection answers at once; one still connecting answers when it knows.
    if (conn->accepts_streams()) {
      conn->TellReadiness(readiness);
      return;
    }
  }
  Connect(address, tls, pool_key, readiness);
}

BackendSession* BackendPool::Connect(const std::string& address, const TlsContext* tls,
                                     const std::string& pool_key, BackendReadiness* readiness) {
  BackendSession* session = Open(address, tls, pool_key);
  if (session != nullptr) {
    session->TellReadiness(readiness);
  } else if (readiness != nullptr) {
    readiness->OnConnectFailed(address);
  }
  return session;
}

BackendSession* BackendPool::Open(const std::string& address, const TlsContext* tls,
                                  const std::string& pool_key) {
  absl::StatusOr<HostPort> hp = ParseHostPort(address);
  if (!hp.ok()) return nullptr;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  if (IsIpLiteral(hp->host)) hints.ai_flags |= AI_NUMERICHOST;
  addrinfo* result = nullptr;
  const std::string port = absl::StrCat(hp->port);
  // Discovery hands out IP addresses; a name (rare) resolves here, on the loop thread.
  if (getaddrinfo(hp->host.c_str(), port.c_str(), &hints, &result) != 0 || result == nullptr) {
    return nullptr;
  }
  const int fd = socket(result->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(result);
    return nullptr;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  const int rc = connect(fd, result->ai_addr, result->ai_addrlen);
  const int err = errno;
  freeaddrinfo(result);
  if (rc != 0 && err != EINPROGRESS) {
    close(fd);
    env_->metrics->upstream_connects_failed.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  auto session = std::make_unique<BackendSession>(env_, fd, address, tls, rc == 0);
  BackendSession* raw = session.get();
  pools_[pool_key].push_back(raw);
  owned_.emplace(raw, std::make_pair(std::move(session), pool_key));
  return raw;
}

void BackendPool::CloseIdle(absl::Duration idle) {
  for (auto& [conn, entry] : owned_) entry.first->CloseIfIdle(idle);
}

bool BackendPool::Destroy(Connection* conn) {
  auto it = owned_.find(conn);
  if (it == owned_.end()) return false;
  std::vector<BackendSession*>& pool = pools_[it->second.second];
  pool.erase(std::remove(pool.begin(), pool.end(), it->second.first.get()), pool.end());
  owned_.erase(it);
  return true;
}

}  // namespace sluice::proxy
