#include "sluice/proxy/proxy.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "absl/strings/str_cat.h"
#include "sluice/core/address.h"
#include "sluice/core/clock.h"
#include "sluice/core/log.h"
#include "sluice/proxy/worker.h"

namespace sluice::proxy {

namespace {

// ALPN: gRPC speaks HTTP/2 only, so a client that cannot do h2 is refused in the handshake.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  static const unsigned char kH2[] = {2, 'h', '2'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kH2, sizeof(kH2), in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

std::string OpenSslError() {
  char reason[256] = "unknown error";
  if (unsigned long e = ERR_get_error()) ERR_error_string_n(e, reason, sizeof(reason));
  ERR_clear_error();
  return reason;
}

absl::StatusOr<SSL_CTX*> MakeServerTlsContext(const std::string& cert, const std::string& key) {
  if (cert.empty() || key.empty()) {
    return absl::InvalidArgumentError("TLS needs both --tls-cert and --tls-key");
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // The proxy retries a blocked write with a longer buffer, and accepts partial writes.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-cert ", cert, ": cannot load: ", OpenSslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key ", key, ": cannot load or does not match: ", OpenSslError()));
  }
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
  return ctx;
}

absl::StatusOr<SSL_CTX*> MakeBackendTlsContext(const std::string& ca_file) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(
        absl::StrCat("--backend-tls-ca ", ca_file, ": cannot load: ", OpenSslError()));
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  static const unsigned char kH2[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx, kH2, sizeof(kH2));
  return ctx;
}

}  // namespace

Proxy::Proxy(ProxyOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Proxy>> Proxy::Start(ProxyOptions options, const Router* router) {
  absl::StatusOr<HostPort> listen = ParseHostPort(options.listen);
  if (!listen.ok()) {
    // Port 0 is allowed here (tests), which ParseHostPort refuses.
    const size_t colon = options.listen.rfind(':');
    if (colon == std::string::npos || options.listen.substr(colon + 1) != "0") {
      return absl::InvalidArgumentError(absl::StrCat("--listen: ", listen.status().message()));
    }
    std::string host = options.listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    listen = HostPort{host, 0};
  }
  if (!IsIpLiteral(listen->host)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen: '", listen->host, "' is not an IP address"));
  }
  if (options.workers < 1) return absl::InvalidArgumentError("--workers must be at least 1");
  std::unique_ptr<Proxy> proxy(new Proxy(options));
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    absl::StatusOr<SSL_CTX*> tls =
        MakeServerTlsContext(options.tls_cert_file, options.tls_key_file);
    if (!tls.ok()) return tls.status();
    proxy->tls_context_ = *tls;
    proxy->options_.tls_context = *tls;
  }
  if (!options.backend_tls_ca_file.empty()) {
    absl::StatusOr<SSL_CTX*> tls = MakeBackendTlsContext(options.backend_tls_ca_file);
    if (!tls.ok()) return tls.status();
    proxy->backend_tls_context_ = *tls;
    proxy->options_.backend_tls_context = *tls;
  }
  int port = listen->port;
  for (int i = 0; i < options.workers; ++i) {
    auto worker = std::make_unique<Worker>(i, proxy->options_, router, &proxy->metrics_);
    absl::StatusOr<int> bound = worker->Listen(listen->host, port);
    if (!bound.ok()) return bound.status();
    port = *bound;  // every worker listens on the first one's port (SO_REUSEPORT)
    proxy->workers_.push_back(std::move(worker));
  }
  proxy->port_ = port;
  for (auto& worker : proxy->workers_) {
    proxy->threads_.emplace_back([w = worker.get()] { w->Run(); });
  }
  LogInfo("sluice proxy: listening on ", listen->host, ":", port, " with ", options.workers,
          " worker(s)");
  return proxy;
}

void Proxy::Shutdown(absl::Duration timeout) {
  if (stopped_) return;
  stopped_ = true;
  const absl::Time deadline = SystemClock::Instance().Now() + timeout;
  for (auto& worker : workers_) worker->BeginShutdown(deadline);
  for (auto& thread : threads_) thread.join();
  threads_.clear();
}

Proxy::~Proxy() {
  Shutdown(absl::ZeroDuration());
  workers_.clear();  // their connections hold SSL objects of the context
  if (tls_context_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(tls_context_));
  if (backend_tls_context_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(backend_tls_context_));
}

}  // namespace sluice::proxy
