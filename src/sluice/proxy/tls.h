#pragma once

#include <openssl/types.h>

#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::proxy {

// The listener's TLS files (PEM); client_ca non-empty: clients must present a certificate it
// signed (mTLS).
struct ServerTlsFiles {
  std::string cert;
  std::string key;
  std::string client_ca;
};

// TLS towards backends (PEM): their certificates are verified against `ca`; cert and key, when
// given, are the client certificate presented to backends that require one.
struct BackendTlsFiles {
  std::string ca;
  std::string cert;
  std::string key;
  // How errors name these files: empty: the --backend-tls-* flags; else this prefix (a config
  // file's route) and the field ("ca", "cert", "key").
  std::string origin;
};

// New SSL_CTXs (caller owns one reference); errors name the flag, the file and the reason.
absl::StatusOr<SSL_CTX*> MakeServerTlsContext(const ServerTlsFiles& files);
absl::StatusOr<SSL_CTX*> MakeBackendTlsContext(const BackendTlsFiles& files);

// The current SSL_CTX of one side, shared by the workers. A reload replaces it while workers
// accept and connect on other threads, so every read and the swap happen under a mutex; an SSL
// object holds its own reference to the context it was made from, so open connections keep
// theirs after a swap.
class TlsContext {
 public:
  explicit TlsContext(SSL_CTX* ctx);  // takes ownership of one reference
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A new SSL object on the current context. Any thread.
  SSL* NewSsl() const;
  // Makes `ctx` (ownership of one reference taken) the context for new connections. Any thread.
  void Replace(SSL_CTX* ctx);

 private:
  mutable std::mutex mu_;
  SSL_CTX* ctx_;
};

// Notices when a set of files changed (inode, size or modification time), polled from one
// control thread. A change is reported once the files have stayed the same for one more poll, so
// a certificate and its key written one after the other, or a file still being written, are
// read together and whole.
class TlsFileWatcher {
 public:
  explicit TlsFileWatcher(std::vector<std::string> files);
  // True when the files differ from what was last reported (or seen at construction) and have
  // not changed since the previous poll.
  bool Poll();

 private:
  std::string Signature() const;

  std::vector<std::string> files_;
  std::string reported_;  // the state last loaded, or tried and refused
  std::string pending_;   // a new state seen once, waiting to settle
};

}  // namespace sluice::proxy
