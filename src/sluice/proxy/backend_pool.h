#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "sluice/client/balancer.h"
#include "sluice/proxy/backend_readiness.h"
#include "sluice/proxy/backend_session.h"
#include "sluice/proxy/connection.h"

namespace sluice::proxy {

// One worker's connections to backends, per backend address (and per TLS context, for routes
// with their own backend TLS). A call's attempt gets the first connection with a free stream
// slot; another connection opens when all are full, up to max_upstream_connections.
class BackendPool {
 public:
  explicit BackendPool(ConnectionEnv* env) : env_(env) {}
  ~BackendPool();
  BackendPool(const BackendPool&) = delete;
  BackendPool& operator=(const BackendPool&) = delete;

  // A connection to `address` for calls of the route of `balancer`; null: cannot connect.
  BackendSession* For(const std::string& address, const client::Balancer& balancer);
  // A BackendReadiness probe of `address` for `balancer`'s route: reports a confirmed
  // connection at once, or opens one whose outcome `readiness` hears.
  void Probe(const std::string& address, const client::Balancer& balancer,
             BackendReadiness* readiness);
  // Connections no call used for `idle` are closed (backends that left discovery among them).
  void CloseIdle(absl::Duration idle);
  // Deletes `conn` if it is one of the pool's (after its OnClosed); false otherwise.
  bool Destroy(Connection* conn);
  void Clear();

 private:
  // TLS towards the backends of a route (null: plain HTTP/2).
  const TlsContext* TlsFor(const client::Balancer& balancer) const;
  // The key of the connections to `address` for `balancer`'s route; `scratch` holds it when it
  // is not `address` itself.
  const std::string& PoolKey(const std::string& address, const TlsContext* tls,
                             std::string* scratch) const;
  // A new connection; null (and `readiness` told) when the connect fails at once.
  BackendSession* Connect(const std::string& address, const TlsContext* tls,
                          const std::string& pool_key, BackendReadiness* readiness);
  BackendSession* Open(const std::string& address, const TlsContext* tls,
                       const std::string& pool_key);

  ConnectionEnv* const env_;
  std::unordered_map<std::string, std::vector<BackendSession*>> pools_;
  // Every connection, with the key of its pool.
  std::unordered_map<Connection*, std::pair<std::unique_ptr<BackendSession>, std::string>> owned_;
};

}  // namespace sluice::proxy
