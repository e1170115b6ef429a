#pragma once

#include <openssl/types.h>
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "sluice/proxy/tls.h"

namespace sluice::proxy {

// One connection's socket, plain or through TLS: the handshake, reads and writes. Knows nothing
// of HTTP/2. Owns the descriptor and the SSL object.
class Transport {
 public:
  explicit Transport(int fd) : fd_(fd) {}
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  int fd() const { return fd_; }
  bool tls() const { return ssl_ != nullptr; }

  // TLS as the server (client connections) or as the client towards `address` (host:port),
  // whose certificate must name its IP or host name (sent as SNI too).
  void StartServerTls(const TlsContext& context);
  void StartClientTls(const TlsContext& context, const std::string& address);

  enum class Handshake { kDone, kWantRead, kWantWrite, kFailed };
  Handshake ContinueHandshake();
  // After kDone: whether the peer agreed to ALPN h2.
  bool NegotiatedH2() const;
  // After kFailed: why, in words; `client_certificate_refused` is set when mTLS refused the
  // client's certificate (or it sent none), which `verifies_clients` asks to tell apart.
  std::string HandshakeFailure(bool verifies_clients, bool* client_certificate_refused) const;

  // Bytes moved, 0 at EOF (Read), or one of these.
  static constexpr ssize_t kWouldBlock = -1;
  static constexpr ssize_t kIoError = -2;
  ssize_t Read(uint8_t* buf, size_t len);
  ssize_t Write(const char* data, size_t len);
  // After kIoError: why, in words ("read: ..." or "TLS: ..."); `tls_reason` gets OpenSSL's part.
  std::string IoFailure(const char* operation, std::string* tls_reason) const;

  // A non-blocking connect's outcome: 0 or the errno it failed with.
  int ConnectError() const;

 private:
  int fd_;
  SSL* ssl_ = nullptr;
  mutable unsigned long handshake_error_ = 0;
  int saved_errno_ = 0;
};

}  // namespace sluice::proxy
