// The proxy's event loop in this process, for what only an in-process proxy can show: a
// connection closed while another process shares its socket (a child between fork and exec) must
// leave the epoll set, or the loop is later woken with a pointer to a freed connection. Under
// AddressSanitizer (make check-asan) the old code fails here with heap-use-after-free.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "in_process_proxy.h"
#include "sluice/client/balancer.h"
#include "sluice/proxy/proxy.h"
#include "sluice/proxy/router.h"
#include "sluice/proxy/tls.h"

namespace sluice::proxy {
namespace {

constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

using testing::InProcessProxy;

int ConnectTo(int port) { return testing::ConnectLoopback(port); }

// Reads until `want` bytes arrived or `timeout_ms` passed; returns what came.
std::string ReadSome(int fd, size_t want, int timeout_ms) {
  std::string got;
  char buffer[4096];
  pollfd wait{fd, POLLIN, 0};
  while (got.size() < want && poll(&wait, 1, timeout_ms) > 0) {
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    got.append(buffer, static_cast<size_t>(n));
  }
  return got;
}

// A client that sent the preface and an empty SETTINGS frame gets the proxy's SETTINGS back.
bool Handshakes(int fd) {
  std::string hello(kPreface);
  hello.append(std::string("\0\0\0\x04\0\0\0\0\0", 9));
  if (send(fd, hello.data(), hello.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(hello.size())) {
    return false;
  }
  const std::string got = ReadSome(fd, 9, 5000);
  return got.size() >= 9 && got[3] == 0x4;
}

TEST(ProxyEventLoopTest, ConnectionClosedWhileAForkedChildSharesItsSocketLeavesEpoll) {
  ProxyOptions proxy_options;
  proxy_options.workers = 1;
  auto running = InProcessProxy::Start(proxy_options);
  ASSERT_TRUE(running.ok()) << running.status();
  Proxy& proxy = *running->proxy;

  for (int round = 0; round < 3; ++round) {
    const int fd = ConnectTo(proxy.port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(Handshakes(fd));
    // The child holds a copy of every descriptor, the proxy's side of this socket included,
    // until it exits; it only sleeps (async-signal-safe calls only after fork).
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      const timespec nap{2, 0};
      nanosleep(&nap, nullptr);
      _exit(0);
    }
    // Bytes that are not a frame: the proxy answers GOAWAY and closes its side.
    const std::string garbage(64, '\xff');
    send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL);
    std::string answer = ReadSome(fd, 1 << 20, 300);
    ASSERT_FALSE(answer.empty()) << "the proxy answers garbage with GOAWAY";
    // Our FIN makes the proxy's socket readable (EOF) while the child still shares it: an event
    // the loop must no longer be registered for. (shutdown, not close: the child shares our
    // descriptor too, and close would send nothing while it lives.)
    shutdown(fd, SHUT_RDWR);
    close(fd);
    // The loop keeps serving new clients meanwhile.
    for (int i = 0; i < 5; ++i) {
      const int other = ConnectTo(proxy.port());
      ASSERT_GE(other, 0);
      EXPECT_TRUE(Handshakes(other)) << "round " << round << " client " << i;
      close(other);
    }
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
  }
  proxy.Shutdown(absl::Seconds(1));
}

// A self-signed certificate with common name `cn` and its key, written to `cert` and `key`
// through temporary files renamed over them (as a certificate manager would).
void WriteSelfSigned(const std::string& cn, const std::string& cert, const std::string& key) {
  EVP_PKEY* pkey = EVP_EC_gen("P-256");
  X509* x509 = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(x509), 1);
  X509_gmtime_adj(X509_getm_notBefore(x509), 0);
  X509_gmtime_adj(X509_getm_notAfter(x509), 3600);
  X509_set_pubkey(x509, pkey);
  X509_NAME* name = X509_get_subject_name(x509);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x509, name);
  X509_sign(x509, pkey, EVP_sha256());
  FILE* out = fopen((key + ".tmp").c_str(), "w");
  PEM_write_PrivateKey(out, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  fclose(out);
  out = fopen((cert + ".tmp").c_str(), "w");
  PEM_write_X509(out, x509);
  fclose(out);
  rename((key + ".tmp").c_str(), key.c_str());
  rename((cert + ".tmp").c_str(), cert.c_str());
  X509_free(x509);
  EVP_PKEY_free(pkey);
}

// The common name of the certificate the proxy presents in a TLS handshake (ALPN h2), or "".
std::string PeerCommonName(SSL_CTX* client, int port) {
  const int fd = ConnectTo(port);
  if (fd < 0) return "";
  SSL* ssl = SSL_new(client);
  SSL_set_fd(ssl, fd);
  std::string cn;
  if (SSL_connect(ssl) == 1) {
    if (X509* peer = SSL_get1_peer_certificate(ssl)) {
      char buffer[256] = "";
      X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, buffer,
                                sizeof(buffer));
      cn = buffer;
      X509_free(peer);
    }
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  close(fd);
  return cn;
}

// Workers accept TLS connections on their threads while the reload thread swaps the context:
// under ThreadSanitizer this must be race-free, and every handshake must succeed on one of the
// certificates.
TEST(ProxyEventLoopTest, TlsReloadWhileWorkersAcceptHandshakes) {
  char dir_template[] = "/tmp/sluice-tls-reload-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string cert = dir + "/cert.pem";
  const std::string key = dir + "/key.pem";
  WriteSelfSigned("first", cert, key);

  ProxyOptions proxy_options;
  proxy_options.workers = 2;
  proxy_options.tls_cert_file = cert;
  proxy_options.tls_key_file = key;
  proxy_options.tls_reload_interval = absl::Milliseconds(10);
  auto running = InProcessProxy::Start(proxy_options);
  ASSERT_TRUE(running.ok()) << running.status();
  const int port = running->proxy->port();

  SSL_CTX* client = SSL_CTX_new(TLS_client_method());
  static const unsigned char kH2[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(client, kH2, sizeof(kH2));
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0};
  std::vector<std::set<std::string>> seen(2);
  std::vector<std::thread> clients;
  for (int c = 0; c < 2; ++c) {
    clients.emplace_back([&, c] {
      while (!stop.load()) {
        const std::string cn = PeerCommonName(client, port);
        if (cn.empty()) failed.fetch_add(1);
        seen[c].insert(cn);
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    WriteSelfSigned(i % 2 == 0 ? "second" : "first", cert, key);
    absl::SleepFor(absl::Milliseconds(50));
  }
  stop = true;
  for (auto& thread : clients) thread.join();
  SSL_CTX_free(client);

  EXPECT_EQ(failed.load(), 0);
  std::set<std::string> all = seen[0];
  all.insert(seen[1].begin(), seen[1].end());
  EXPECT_TRUE(all.count("first") == 1 && all.count("second") == 1);
  EXPECT_GT(running->proxy->metrics().tls_reloads_total.load(), 0u);
  running->proxy->Shutdown(absl::Seconds(1));
  std::remove(cert.c_str());
  std::remove(key.c_str());
  rmdir(dir.c_str());
}

TEST(ProxyListenerTest, AnAddressAnotherSocketHoldsIsRefusedWorkersShareTheirOwn) {
  ProxyOptions proxy_options;
  proxy_options.workers = 1;
  auto first = InProcessProxy::Start(proxy_options);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken = absl::StrCat("127.0.0.1:", first->proxy->port());
  // A second proxy on the first one's address: SO_REUSEPORT alone would let it in and have the
  // kernel split new connections between the two.
  ProxyOptions second_options;
  second_options.listen = taken;
  second_options.workers = 2;
  auto second = Proxy::Start(second_options, first->router.get());
  ASSERT_FALSE(second.ok()) << "a second proxy started on " << taken;
  EXPECT_TRUE(absl::StrContains(second.status().message(), taken)) << second.status();
  EXPECT_TRUE(absl::StrContains(second.status().message(), "already in use")) << second.status();
  // A free fixed address: the four workers of one proxy share it.
  const int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(probe, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t len = sizeof(address);
  getsockname(probe, reinterpret_cast<sockaddr*>(&address), &len);
  close(probe);
  ProxyOptions own_options;
  own_options.listen = absl::StrCat("127.0.0.1:", ntohs(address.sin_port));
  own_options.workers = 4;
  auto own = Proxy::Start(own_options, first->router.get());
  ASSERT_TRUE(own.ok()) << own.status();
  const int fd = ConnectTo((*own)->port());
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(Handshakes(fd));
  close(fd);
}

}  // namespace
}  // namespace sluice::proxy
