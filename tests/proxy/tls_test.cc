#include "sluice/proxy/tls.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"

namespace sluice::proxy {
namespace {

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/sluice_tls_test_" + std::to_string(getpid()) + "_" + name;
}

void Write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

TEST(TlsFileWatcherTest, ReportsAChangeOnceItHasSettled) {
  const std::string cert = TempPath("cert.pem");
  const std::string key = TempPath("key.pem");
  Write(cert, "one");
  Write(key, "one");
  TlsFileWatcher watcher({cert, key});
  EXPECT_FALSE(watcher.Poll());  // nothing changed since construction

  Write(key, "two, longer");
  EXPECT_FALSE(watcher.Poll());  // seen once: perhaps the certificate follows
  Write(cert, "two, longer");
  EXPECT_FALSE(watcher.Poll());  // changed again: wait once more
  EXPECT_TRUE(watcher.Poll());   // settled: report it
  EXPECT_FALSE(watcher.Poll());  // and only once

  // A file that disappears and comes back unchanged in size is still a change (new inode).
  std::remove(cert.c_str());
  EXPECT_FALSE(watcher.Poll());
  EXPECT_TRUE(watcher.Poll());
  Write(cert, "two, longer");
  EXPECT_FALSE(watcher.Poll());
  EXPECT_TRUE(watcher.Poll());
  std::remove(cert.c_str());
  std::remove(key.c_str());
}

TEST(TlsContextTest, LoadErrorsNameTheFlagAndTheFile) {
  const std::string missing = TempPath("missing.pem");
  const std::string garbage = TempPath("garbage.pem");
  Write(garbage, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n");
  auto server = MakeServerTlsContext({missing, missing, ""});
  ASSERT_FALSE(server.ok());
  EXPECT_TRUE(absl::StrContains(server.status().message(), "--tls-cert " + missing))
      << server.status();
  server = MakeServerTlsContext({garbage, garbage, ""});
  ASSERT_FALSE(server.ok());
  EXPECT_TRUE(absl::StrContains(server.status().message(), "--tls-cert " + garbage))
      << server.status();
  EXPECT_FALSE(MakeServerTlsContext({"", missing, ""}).ok());
  auto backend = MakeBackendTlsContext({garbage, "", ""});
  ASSERT_FALSE(backend.ok());
  EXPECT_TRUE(absl::StrContains(backend.status().message(), "--backend-tls-ca " + garbage))
      << backend.status();
  backend = MakeBackendTlsContext({garbage, garbage, ""});  // half a key pair
  ASSERT_FALSE(backend.ok());
  EXPECT_TRUE(absl::StrContains(backend.status().message(), "--backend-tls-key"));
  std::remove(garbage.c_str());
}

// Workers make SSL objects while the reload thread swaps the context: no race (run under TSan),
// and an SSL object keeps the context it was made from.
TEST(TlsContextTest, ReplaceWhileOtherThreadsMakeConnections) {
  SSL_CTX* first = SSL_CTX_new(TLS_server_method());
  TlsContext context(first);
  SSL* before = context.NewSsl();
  ASSERT_EQ(SSL_get_SSL_CTX(before), first);

  std::atomic<bool> stop{false};
  std::atomic<int> made{0};
  std::vector<std::thread> workers;
  for (int i = 0; i < 3; ++i) {
    workers.emplace_back([&] {
      while (!stop.load()) {
        SSL* ssl = context.NewSsl();
        ASSERT_NE(ssl, nullptr);
        SSL_free(ssl);
        made.fetch_add(1);
      }
    });
  }
  SSL_CTX* last = nullptr;
  // Keep swapping until the workers have made enough connections meanwhile.
  for (int i = 0; i < 200 || made.load() < 100; ++i) {
    last = SSL_CTX_new(TLS_server_method());
    context.Replace(last);
  }
  stop = true;
  for (auto& worker : workers) worker.join();

  SSL* after = context.NewSsl();
  EXPECT_EQ(SSL_get_SSL_CTX(after), last);
  EXPECT_EQ(SSL_get_SSL_CTX(before), first);  // still alive: the SSL holds a reference
  SSL_free(after);
  SSL_free(before);
}

}  // namespace
}  // namespace sluice::proxy
