#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/client/balancer.h"
#include "sluice/core/clock.h"
#include "sluice/proxy/metrics.h"
#include "sluice/proxy/router.h"
#include "sluice/proxy/tls.h"

namespace sluice::proxy {

class AccessLog;

struct ProxyOptions {
  // Where clients connect: "IP:PORT" (port 0: a free port, see Proxy::port()).
  std::string listen = "127.0.0.1:30051";
  // Event-loop threads; each has its own listener (SO_REUSEPORT) and backend connections.
  int workers = 1;
  // Client connections open at once, all workers together; more are accepted and closed at
  // once (counted in sluice_proxy_connections_refused_total). 0: no cap but the open-files
  // limit.
  int64_t max_connections = 0;
  // SETTINGS_MAX_CONCURRENT_STREAMS announced to each client.
  uint32_t max_concurrent_streams = 1000;
  // Flow-control window per stream, both sides: the most message bytes the proxy holds for one
  // direction of one call before the sender must wait.
  uint32_t stream_window = 1 << 20;
  // Flow-control window per connection, both sides.
  uint32_t connection_window = 16 << 20;
  // Request bytes kept until the backend answers, so a refused attempt can go elsewhere; a call
  // that sent more is not retried.
  size_t retry_buffer_limit = 256 << 10;
  // Streams per backend connection before another connection is opened (also capped by the
  // backend's SETTINGS_MAX_CONCURRENT_STREAMS), and connections per backend per worker.
  uint32_t streams_per_upstream_connection = 100;
  int max_upstream_connections = 4;
  // For ring_hash: the request header whose value is hashed to pick the backend (a user id, a
  // session); calls without it are picked at random. Empty: no hash.
  std::string hash_header;
  // With no endpoint pickable (none discovered yet, or all gone, failing or ejected), a call
  // waits for one until its deadline, at most this long.
  absl::Duration pick_wait = absl::Seconds(5);
  // A client connection older than this gets GOAWAY, and is closed `max_connection_age_grace`
  // later; infinite: never.
  absl::Duration max_connection_age = absl::InfiniteDuration();
  absl::Duration max_connection_age_grace = absl::Seconds(30);
  // Graceful shutdown waits at most this long for calls in flight.
  absl::Duration drain_timeout = absl::Seconds(30);
  // Bytes queued for one socket before the proxy stops pulling frames for it.
  size_t write_buffer_limit = 256 << 10;
  // TLS towards clients (ALPN h2): PEM certificate chain and private key files; empty: plain
  // HTTP/2. With tls_client_ca_file, a client must present a certificate that CA signed (mTLS).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // TLS towards backends (ALPN h2), verifying their certificates against this PEM CA bundle;
  // empty: plain HTTP/2. The cert and key, when given, are presented to backends (mTLS).
  std::string backend_tls_ca_file;
  std::string backend_tls_cert_file;
  std::string backend_tls_key_file;
  // How often the TLS files are checked for changes; a changed set is loaded once it has stayed
  // the same for one more check, for new connections only.
  absl::Duration tls_reload_interval = absl::Milliseconds(500);
  // --access-log: a JSON line per call to this file ("-": standard output; empty: no log), for
  // this share of the calls.
  std::string access_log;
  double access_log_sample = 1;
  // Seeds the workers' random choices (access-log sampling); 0: a random seed.
  uint64_t random_seed = 0;
  // The workers' clock (timers, deadlines, connection age); a test may pass its own.
  Clock* clock = &SystemClock::Instance();
  // Set by Proxy::Start from access_log (owned by the proxy); null: no access log.
  AccessLog* access_log_sink = nullptr;
  // Set by Proxy::Start from the files above (owned by the proxy); null: no TLS on that side.
  const TlsContext* tls_context = nullptr;
  const TlsContext* backend_tls_context = nullptr;
  // Routes whose config sets "tls": their backends' context (null: plain HTTP/2). Other routes
  // use backend_tls_context.
  std::unordered_map<const client::Balancer*, const TlsContext*> route_backend_tls;
};

class Worker;

// `sluice proxy`'s data plane: forwards every gRPC call (an HTTP/2 stream) to a backend picked
// by its route's balancer, stream by stream. Threads: Start and Shutdown from one control thread;
// the workers run their own loops.
class Proxy {
 public:
  // Binds the listeners and starts the workers. `router` (whose balancers learn each backend's
  // transport from the workers' connections, BackendReadiness) must outlive the proxy. With TLS,
  // SIGPIPE is ignored process-wide.
  static absl::StatusOr<std::unique_ptr<Proxy>> Start(ProxyOptions options, const Router* router);
  ~Proxy();  // Shutdown(absl::ZeroDuration()) if still running

  // The port clients connect to.
  int port() const { return port_; }
  ProxyMetrics& metrics() { return metrics_; }

  // Stops accepting, sends GOAWAY on every client connection, lets calls in flight finish for at
  // most `timeout`, then closes everything and joins the workers.
  void Shutdown(absl::Duration timeout);

 private:
  explicit Proxy(ProxyOptions options);

  ProxyOptions options_;
  ProxyMetrics metrics_;
  std::unique_ptr<AccessLog> access_log_;  // outlives the workers
  int port_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  bool stopped_ = false;
  const Router* router_ = nullptr;
  // Lets the routes' BackendReadiness probe backends through the workers (until Shutdown).
  void StartProbing();
  void StopProbing();

  // One TLS context (the listener's, the backends', a route's backends'), its files and how to
  // make it from them.
  struct TlsSide {
    std::string name;
    TlsFileWatcher watcher;
    std::function<absl::StatusOr<SSL_CTX*>()> make;
    std::unique_ptr<TlsContext> context;
  };
  std::vector<TlsSide> tls_sides_;
  // Reloads a side's context when its files change, on its own thread (never a worker's): new
  // connections get the new context, open ones keep theirs.
  void WatchTlsFiles();
  std::thread tls_watch_thread_;
  std::mutex tls_watch_mu_;
  std::condition_variable tls_watch_cv_;
  bool tls_watch_stop_ = false;
};

}  // namespace sluice::proxy
