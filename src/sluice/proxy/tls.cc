#include "sluice/proxy/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/stat.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace sluice::proxy {

namespace {

constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};

// ALPN: gRPC speaks HTTP/2 only, so a client that cannot do h2 is refused in the handshake.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpnH2, sizeof(kAlpnH2), in, inlen) !=
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

SSL_CTX* NewContext(const SSL_METHOD* method) {
  SSL_CTX* ctx = SSL_CTX_new(method);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // The proxy retries a blocked write with a longer buffer, and accepts partial writes.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return ctx;
}

// Loads a certificate chain and its private key into `ctx`; the flags name them in errors.
absl::Status LoadKeyPair(SSL_CTX* ctx, const std::string& cert, const std::string& key,
                         const char* cert_flag, const char* key_flag) {
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(cert_flag, " ", cert, ": cannot load: ", OpenSslError()));
  }
  // OpenSSL reports a key that does not match the certificate already here ("key values
  // mismatch"), so the message names both files.
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(key_flag, " ", key, ": cannot load, or does not match the certificate ", cert,
                     ": ", OpenSslError()));
  }
  return absl::OkStatus();
}

absl::StatusOr<SSL_CTX*> OrFree(SSL_CTX* ctx, absl::Status status) {
  if (status.ok()) return ctx;
  SSL_CTX_free(ctx);
  return status;
}

}  // namespace

absl::StatusOr<SSL_CTX*> MakeServerTlsContext(const ServerTlsFiles& files) {
  if (files.cert.empty() || files.key.empty()) {
    return absl::InvalidArgumentError("TLS needs both --tls-cert and --tls-key");
  }
  SSL_CTX* ctx = NewContext(TLS_server_method());
  absl::Status loaded = LoadKeyPair(ctx, files.cert, files.key, "--tls-cert", "--tls-key");
  if (!loaded.ok()) return OrFree(ctx, loaded);
  if (!files.client_ca.empty()) {
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.client_ca.c_str());
    if (names == nullptr ||
        SSL_CTX_load_verify_locations(ctx, files.client_ca.c_str(), nullptr) != 1) {
      if (names != nullptr) sk_X509_NAME_pop_free(names, X509_NAME_free);
      return OrFree(ctx, absl::InvalidArgumentError(
                             absl::StrCat("--tls-client-ca ", files.client_ca,
                                          ": cannot load a PEM CA certificate: ", OpenSslError())));
    }
    SSL_CTX_set_client_CA_list(ctx, names);  // told to clients, so they pick a matching cert
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    // Session resumption with verified peers needs a session id context.
    static const unsigned char kSessionContext[] = "sluice-proxy";
    SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext) - 1);
  }
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
  return ctx;
}

absl::StatusOr<SSL_CTX*> MakeBackendTlsContext(const BackendTlsFiles& files) {
  const std::string ca_name = files.origin.empty() ? "--backend-tls-ca" : files.origin + " \"ca\"";
  const std::string cert_name =
      files.origin.empty() ? "--backend-tls-cert" : files.origin + " \"cert\"";
  const std::string key_name =
      files.origin.empty() ? "--backend-tls-key" : files.origin + " \"key\"";
  if (files.cert.empty() != files.key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("a client certificate for backends needs both ",
                                                   cert_name, " and ", key_name));
  }
  SSL_CTX* ctx = NewContext(TLS_client_method());
  if (SSL_CTX_load_verify_locations(ctx, files.ca.c_str(), nullptr) != 1) {
    return OrFree(ctx, absl::InvalidArgumentError(absl::StrCat(ca_name, " ", files.ca,
                                                               ": cannot load: ", OpenSslError())));
  }
  if (!files.cert.empty()) {
    absl::Status loaded =
        LoadKeyPair(ctx, files.cert, files.key, cert_name.c_str(), key_name.c_str());
    if (!loaded.ok()) return OrFree(ctx, loaded);
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_alpn_protos(ctx, kAlpnH2, sizeof(kAlpnH2));
  return ctx;
}

TlsContext::TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

SSL* TlsContext::NewSsl() const {
  std::lock_guard<std::mutex> lock(mu_);
  return SSL_new(ctx_);  // takes its own reference to ctx_
}

void TlsContext::Replace(SSL_CTX* ctx) {
  SSL_CTX* old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    old = std::exchange(ctx_, ctx);
  }
  SSL_CTX_free(old);  // connections made from it keep it alive until they close
}

TlsFileWatcher::TlsFileWatcher(std::vector<std::string> files)
    : files_(std::move(files)), reported_(Signature()) {}

std::string TlsFileWatcher::Signature() const {
  std::string signature;
  for (const std::string& file : files_) {
    struct stat st {};
    if (stat(file.c_str(), &st) != 0) {
      absl::StrAppend(&signature, "missing;");
      continue;
    }
    absl::StrAppend(&signature, st.st_dev, ":", st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec,
                    ".", st.st_mtim.tv_nsec, ";");
  }
  return signature;
}

bool TlsFileWatcher::Poll() {
  const std::string now = Signature();
  if (now == reported_) {
    pending_.clear();
    return false;
  }
  if (now != pending_) {
    pending_ = now;  // still changing, perhaps: look again next time
    return false;
  }
  reported_ = now;
  pending_.clear();
  return true;
}

}  // namespace sluice::proxy
