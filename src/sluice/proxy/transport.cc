#include "sluice/proxy/transport.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "sluice/core/address.h"

namespace sluice::proxy {

Transport::~Transport() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (fd_ >= 0) close(fd_);
}

void Transport::StartServerTls(const TlsContext& context) {
  ssl_ = context.NewSsl();
  SSL_set_fd(ssl_, fd_);
  SSL_set_accept_state(ssl_);
}

void Transport::StartClientTls(const TlsContext& context, const std::string& address) {
  ssl_ = context.NewSsl();
  SSL_set_fd(ssl_, fd_);
  SSL_set_connect_state(ssl_);
  absl::StatusOr<HostPort> hp = ParseHostPort(address);
  if (!hp.ok()) return;
  // The certificate must name the address discovery gave: its IP, or its host name (+SNI).
  if (IsIpLiteral(hp->host)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), hp->host.c_str());
  } else {
    SSL_set1_host(ssl_, hp->host.c_str());
    SSL_set_tlsext_host_name(ssl_, hp->host.c_str());
  }
}

Transport::Handshake Transport::ContinueHandshake() {
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) return Handshake::kDone;
  const int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ) return Handshake::kWantRead;
  if (err == SSL_ERROR_WANT_WRITE) return Handshake::kWantWrite;
  handshake_error_ = ERR_get_error();
  return Handshake::kFailed;
}

bool Transport::NegotiatedH2() const {
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  return alpn_len == 2 && memcmp(alpn, "h2", 2) == 0;
}

std::string Transport::HandshakeFailure(bool verifies_clients,
                                        bool* client_certificate_refused) const {
  char reason[256] = "closed";
  if (handshake_error_ != 0) ERR_error_string_n(handshake_error_, reason, sizeof(reason));
  *client_certificate_refused = false;
  if (!verifies_clients) return reason;
  // mTLS: say plainly when it was the client's certificate that was refused.
  const long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) {
    *client_certificate_refused = true;
    return absl::StrCat("client certificate refused: ", X509_verify_cert_error_string(verify), " (",
                        reason, ")");
  }
  if (ERR_GET_REASON(handshake_error_) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    *client_certificate_refused = true;
    return absl::StrCat("client sent no certificate (", reason, ")");
  }
  return reason;
}

ssize_t Transport::Read(uint8_t* buf, size_t len) {
  if (ssl_ == nullptr) {
    const ssize_t n = read(fd_, buf, len);
    if (n >= 0) return n;
    saved_errno_ = errno;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? kWouldBlock : kIoError;
  }
  ERR_clear_error();
  const int n = SSL_read(ssl_, buf, static_cast<int>(len));
  if (n > 0) return n;
  saved_errno_ = errno;
  const int err = SSL_get_error(ssl_, n);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return kWouldBlock;
  return err == SSL_ERROR_ZERO_RETURN ? 0 : kIoError;
}

ssize_t Transport::Write(const char* data, size_t len) {
  if (ssl_ == nullptr) {
    const ssize_t n = send(fd_, data, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    saved_errno_ = errno;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? kWouldBlock : kIoError;
  }
  ERR_clear_error();
  const int n = SSL_write(ssl_, data, static_cast<int>(std::min<size_t>(len, 1 << 30)));
  if (n > 0) return n;
  saved_errno_ = errno;
  const int err = SSL_get_error(ssl_, n);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return kWouldBlock;
  return kIoError;
}

std::string Transport::IoFailure(const char* operation, std::string* tls_reason) const {
  if (const unsigned long e = ssl_ != nullptr ? ERR_get_error() : 0; e != 0) {
    char reason[256];
    ERR_error_string_n(e, reason, sizeof(reason));
    *tls_reason = reason;
    return absl::StrCat("TLS: ", reason);
  }
  return absl::StrCat(operation, ": ", strerror(saved_errno_));
}

int Transport::ConnectError() const {
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
  return err;
}

}  // namespace sluice::proxy
