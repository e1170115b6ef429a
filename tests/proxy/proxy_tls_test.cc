// `sluice proxy` with TLS to clients and to backends: ALPN, client certificates, reloads and
// per-route backend TLS.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "etcd_process.h"
#include "greeter_backend.h"
#include "helloworld.grpc.pb.h"
#include "process.h"
#include "proxy_fixture.h"
#include "raw_h2_client.h"
#include "sluice/registry/registrar.h"

namespace sluice::testing {
namespace {

using grpc::testing::TestService;

TEST(ProxyTlsTest, TlsToClientsAndToBackendsWithAlpnH2) {
  const std::string dir = MakeTempDir("tls");
  auto openssl = ChildProcess::Start(
      {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
       "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.11",
       "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem"},
      {}, dir + "/openssl.log");
  ASSERT_TRUE(openssl.ok());
  auto made = openssl->Wait(absl::Seconds(30));
  ASSERT_TRUE(made.ok() && *made == 0) << openssl->ReadLog();
  auto backend = GreeterBackend::Start("127.0.0.11");
  ASSERT_TRUE(backend.ok());
  auto proxy = ProxyProcess::Start(
      (*backend)->address(), {"--tls-cert", dir + "/cert.pem", "--tls-key", dir + "/key.pem"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();

  std::ifstream cert_file(dir + "/cert.pem");
  std::stringstream cert;
  cert << cert_file.rdbuf();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = cert.str();
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  auto stub = Greeter::NewStub(
      grpc::CreateCustomChannel((*proxy)->address(), grpc::SslCredentials(ssl), args));
  for (int i = 0; i < 20; ++i) {
    HelloReply reply;
    grpc::Status status = SayHello(*stub, "tls", &reply);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(Replier(reply.message()), (*backend)->address());
  }
  // A plaintext HTTP/2 client on the TLS port fails its handshake; TLS clients carry on.
  auto plain = Greeter::NewStub((*proxy)->Channel());
  HelloReply reply;
  EXPECT_FALSE(SayHello(*plain, "plain", &reply, absl::Seconds(2)).ok());
  EXPECT_TRUE(SayHello(*stub, "tls-again", &reply).ok());
  EXPECT_TRUE(absl::StrContains((*proxy)->process().ReadLog(), "TLS handshake with client"));

  // TLS towards backends too: verified against the CA, ALPN h2.
  std::ifstream key_file(dir + "/key.pem");
  std::stringstream key;
  key << key_file.rdbuf();
  grpc::SslServerCredentialsOptions server_ssl;
  server_ssl.pem_key_cert_pairs.push_back({key.str(), cert.str()});
  auto tls_backend =
      TestServiceBackend::Start("127.0.0.11", 0, grpc::SslServerCredentials(server_ssl));
  ASSERT_TRUE(tls_backend.ok());
  auto to_tls =
      ProxyProcess::Start((*tls_backend)->address(), {"--backend-tls-ca", dir + "/cert.pem"});
  ASSERT_TRUE(to_tls.ok()) << to_tls.status();
  auto test_stub = TestService::NewStub((*to_tls)->Channel());
  for (int i = 0; i < 5; ++i) {
    grpc::ClientContext context;
    grpc::testing::SimpleRequest request;
    request.set_response_size(100000);
    grpc::testing::SimpleResponse response;
    grpc::Status status = test_stub->UnaryCall(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.payload().body().size(), 100000u);
  }
  EXPECT_EQ((*tls_backend)->calls(), 5);
  // A backend whose certificate does not name its address is refused: the call fails.
  auto wrong = TestServiceBackend::Start("127.0.0.12", 0, grpc::SslServerCredentials(server_ssl));
  ASSERT_TRUE(wrong.ok());
  auto to_wrong = ProxyProcess::Start((*wrong)->address(), {"--backend-tls-ca", dir + "/cert.pem"});
  ASSERT_TRUE(to_wrong.ok()) << to_wrong.status();
  {
    auto wrong_stub = TestService::NewStub((*to_wrong)->Channel());
    grpc::ClientContext context;
    context.set_deadline(In(absl::Seconds(10)));
    grpc::testing::Empty empty;
    EXPECT_EQ(wrong_stub->EmptyCall(&context, empty, &empty).error_code(),
              grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ((*wrong)->calls(), 0);
    EXPECT_TRUE(absl::StrContains((*to_wrong)->process().ReadLog(), "TLS handshake with backend"));
  }

  // A key that does not exist is refused at start.
  auto bad = ChildProcess::Start({BuiltBinary("bin/sluice"), "proxy", "--target", "127.0.0.11:1",
                                  "--tls-cert", dir + "/cert.pem", "--tls-key", dir + "/none.pem"},
                                 {}, dir + "/bad.log");
  ASSERT_TRUE(bad.ok());
  auto code = bad->Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 2);
  EXPECT_TRUE(absl::StrContains(bad->ReadLog(), "none.pem")) << bad->ReadLog();
  RemoveTree(dir);
}

// ---- mTLS and certificate reload: certificates made with the openssl command ----

std::string ReadWholeFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Writes `text` to a temporary file beside `path` and renames it over `path`, as a certificate
// manager would.
void ReplaceFile(const std::string& path, const std::string& text) {
  {
    std::ofstream out(path + ".tmp");
    out << text;
  }
  ASSERT_EQ(rename((path + ".tmp").c_str(), path.c_str()), 0);
}

absl::Status RunOpenssl(const std::string& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "openssl");
  auto child = ChildProcess::Start(args, {}, dir + "/openssl.log");
  if (!child.ok()) return child.status();
  auto code = child->Wait(absl::Seconds(30));
  if (!code.ok()) return code.status();
  if (*code != 0) return absl::InternalError("openssl failed: " + child->ReadLog());
  return absl::OkStatus();
}

// dir/<name>.pem and dir/<name>.key: a certificate with common name `name` (EC P-256, valid for
// localhost and 127.0.0.x), signed by dir/<ca>.pem; an empty `ca` makes a self-signed CA.
absl::Status MakeCertificate(const std::string& dir, const std::string& name,
                             const std::string& ca = "") {
  std::vector<std::string> args = {"req",
                                   "-x509",
                                   "-newkey",
                                   "ec",
                                   "-pkeyopt",
                                   "ec_paramgen_curve:prime256v1",
                                   "-nodes",
                                   "-days",
                                   "1",
                                   "-subj",
                                   "/CN=" + name,
                                   "-keyout",
                                   dir + "/" + name + ".key",
                                   "-out",
                                   dir + "/" + name + ".pem"};
  if (!ca.empty()) {
    args.insert(args.end(),
                {"-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.11,IP:127.0.0.12",
                 "-addext", "basicConstraints=critical,CA:FALSE", "-CA", dir + "/" + ca + ".pem",
                 "-CAkey", dir + "/" + ca + ".key"});
  }
  return RunOpenssl(dir, args);
}

// MakeCertificate for each {name, ca}, in order (a CA before what it signs).
absl::Status MakeCertificates(const std::string& dir,
                              const std::vector<std::pair<std::string, std::string>>& names) {
  for (const auto& [name, ca] : names) {
    if (absl::Status made = MakeCertificate(dir, name, ca); !made.ok()) {
      return absl::Status(made.code(), absl::StrCat(name, ": ", made.message()));
    }
  }
  return absl::OkStatus();
}

// Server credentials for a backend that presents dir/<name>.pem and requires a client
// certificate signed by dir/<client_ca>.pem.
std::shared_ptr<grpc::ServerCredentials> MutualTlsServerCredentials(const std::string& dir,
                                                                    const std::string& name,
                                                                    const std::string& client_ca) {
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = ReadWholeFile(dir + "/" + client_ca + ".pem");
  ssl.pem_key_cert_pairs.push_back(
      {ReadWholeFile(dir + "/" + name + ".key"), ReadWholeFile(dir + "/" + name + ".pem")});
  return grpc::SslServerCredentials(ssl);
}

// A TLS channel to the proxy trusting dir/<ca>.pem; with `client`, it presents dir/<client>.pem.
// Its own subchannel pool: a new channel is a new connection.
std::shared_ptr<grpc::Channel> TlsChannel(const std::string& address, const std::string& dir,
                                          const std::string& ca, const std::string& client = "") {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadWholeFile(dir + "/" + ca + ".pem");
  if (!client.empty()) {
    ssl.pem_private_key = ReadWholeFile(dir + "/" + client + ".key");
    ssl.pem_cert_chain = ReadWholeFile(dir + "/" + client + ".pem");
  }
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args);
}

// One SayHello; on success, the common name of the certificate the proxy presented.
absl::StatusOr<std::string> HelloAndPeerName(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = Greeter::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(5)));
  HelloRequest request;
  request.set_name("tls");
  HelloReply reply;
  grpc::Status status = stub->SayHello(&context, request, &reply);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat(status.error_code(), ": ", status.error_message()));
  }
  auto names = context.auth_context()->FindPropertyValues("x509_common_name");
  if (names.empty()) return absl::NotFoundError("no peer common name");
  return std::string(names[0].data(), names[0].size());
}

int RunProxyCommand(const std::string& dir, std::vector<std::string> args, std::string* log) {
  args.insert(args.begin(), {BuiltBinary("bin/sluice"), "proxy"});
  auto child = ChildProcess::Start(args, {}, dir + "/usage.log");
  if (!child.ok()) return -1;
  auto code = child->Wait(absl::Seconds(20));
  *log = child->ReadLog();
  return code.ok() ? *code : -1;
}

TEST(ProxyTlsTest, TlsClientsThatHangUpDoNotStopTheProxy) {
  // OpenSSL writes with write(): a client gone while the proxy writes must not raise SIGPIPE.
  const std::string dir = MakeTempDir("tls-hangup");
  ASSERT_TRUE(MakeCertificate(dir, "server-ca").ok());
  ASSERT_TRUE(MakeCertificate(dir, "server", "server-ca").ok());
  auto backend = GreeterBackend::Start("127.0.0.11");
  ASSERT_TRUE(backend.ok());
  auto proxy = ProxyProcess::Start(
      (*backend)->address(), {"--tls-cert", dir + "/server.pem", "--tls-key", dir + "/server.key"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  for (int i = 0; i < 10; ++i) {
    // Each channel is one connection, closed when the channel goes.
    ASSERT_TRUE(HelloAndPeerName(TlsChannel((*proxy)->address(), dir, "server-ca")).ok())
        << i << " " << (*proxy)->process().ReadLog();
  }
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_TRUE((*proxy)->process().running());
  EXPECT_EQ((*proxy)->Get("/healthz").first, 200);
  RemoveTree(dir);
}

TEST(ProxyTlsTest, ClientCertificateRequiredAndVerifiedAgainstTlsClientCa) {
  const std::string dir = MakeTempDir("mtls");
  const absl::Status made = MakeCertificates(dir, {{"server-ca", ""},
                                                   {"server", "server-ca"},
                                                   {"clients-ca", ""},
                                                   {"good-client", "clients-ca"},
                                                   {"other-ca", ""},
                                                   {"stranger", "other-ca"}});
  ASSERT_TRUE(made.ok()) << made;
  auto backend = GreeterBackend::Start("127.0.0.11");
  ASSERT_TRUE(backend.ok());
  auto proxy = ProxyProcess::Start(
      (*backend)->address(), {"--tls-cert", dir + "/server.pem", "--tls-key", dir + "/server.key",
                              "--tls-client-ca", dir + "/clients-ca.pem"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const std::string address = (*proxy)->address();

  auto good = TlsChannel(address, dir, "server-ca", "good-client");
  for (int i = 0; i < 5; ++i) {
    auto name = HelloAndPeerName(good);
    ASSERT_TRUE(name.ok()) << name.status();
    EXPECT_EQ(*name, "server");
  }
  EXPECT_EQ((*backend)->calls(), 5);
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_client_certificate_rejections_total"), 0);

  // No client certificate: the handshake fails, no call reaches the backend.
  auto anonymous = HelloAndPeerName(TlsChannel(address, dir, "server-ca"));
  EXPECT_FALSE(anonymous.ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        return absl::StrContains((*proxy)->process().ReadLog(), "client sent no certificate");
      },
      absl::Seconds(5)))
      << (*proxy)->process().ReadLog();
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_client_certificate_rejections_total"), 1);

  // A certificate from another CA: refused too, and the log says why.
  auto stranger = HelloAndPeerName(TlsChannel(address, dir, "server-ca", "stranger"));
  EXPECT_FALSE(stranger.ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        return absl::StrContains((*proxy)->process().ReadLog(), "client certificate refused");
      },
      absl::Seconds(5)))
      << (*proxy)->process().ReadLog();
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_client_certificate_rejections_total"), 2);
  EXPECT_EQ((*backend)->calls(), 5);

  // The good client is unaffected, on its open connection and on a new one.
  EXPECT_TRUE(HelloAndPeerName(good).ok());
  EXPECT_TRUE(HelloAndPeerName(TlsChannel(address, dir, "server-ca", "good-client")).ok());
  EXPECT_EQ((*backend)->calls(), 7);

  // mTLS without TLS is a usage error naming the flag.
  std::string log;
  EXPECT_EQ(
      RunProxyCommand(dir, {"--target", "127.0.0.11:1", "--tls-client-ca", dir + "/clients-ca.pem"},
                      &log),
      2);
  EXPECT_TRUE(absl::StrContains(log, "--tls-client-ca")) << log;
  // A client CA file that is not PEM is refused at start, naming it.
  EXPECT_EQ(
      RunProxyCommand(dir,
                      {"--target", "127.0.0.11:1", "--tls-cert", dir + "/server.pem", "--tls-key",
                       dir + "/server.key", "--tls-client-ca", dir + "/openssl.log"},
                      &log),
      2);
  EXPECT_TRUE(absl::StrContains(log, "--tls-client-ca " + dir + "/openssl.log")) << log;
  RemoveTree(dir);
}

TEST(ProxyTlsTest, PresentsClientCertificateToBackendsThatRequireOne) {
  const std::string dir = MakeTempDir("backend-mtls");
  const absl::Status made = MakeCertificates(dir, {{"server-ca", ""},
                                                   {"backend", "server-ca"},
                                                   {"clients-ca", ""},
                                                   {"proxy-client", "clients-ca"},
                                                   {"other-ca", ""},
                                                   {"stranger", "other-ca"}});
  ASSERT_TRUE(made.ok()) << made;
  auto backend = TestServiceBackend::Start(
      "127.0.0.11", 0, MutualTlsServerCredentials(dir, "backend", "clients-ca"));
  ASSERT_TRUE(backend.ok());
  auto empty_call = [](ProxyProcess& proxy) {
    auto stub = TestService::NewStub(proxy.Channel());
    grpc::ClientContext context;
    context.set_deadline(In(absl::Seconds(5)));
    grpc::testing::Empty empty;
    return stub->EmptyCall(&context, empty, &empty);
  };

  // With the client certificate the backend's CA signed: calls go through.
  auto with_cert =
      ProxyProcess::Start((*backend)->address(), {"--backend-tls-ca", dir + "/server-ca.pem",
                                                  "--backend-tls-cert", dir + "/proxy-client.pem",
                                                  "--backend-tls-key", dir + "/proxy-client.key"});
  ASSERT_TRUE(with_cert.ok()) << with_cert.status();
  for (int i = 0; i < 5; ++i) {
    grpc::Status status = empty_call(**with_cert);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ((*backend)->calls(), 5);

  // Without one the backend refuses the connection: the call fails, the backend sees nothing.
  // A call waits up to --pick-wait for a backend the pool can reach; shorter than the call's
  // deadline here, so the call ends UNAVAILABLE (the backend's refusal) rather than at its
  // deadline.
  auto without_cert = ProxyProcess::Start(
      (*backend)->address(), {"--backend-tls-ca", dir + "/server-ca.pem", "--pick-wait", "1s"});
  ASSERT_TRUE(without_cert.ok()) << without_cert.status();
  EXPECT_EQ(empty_call(**without_cert).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ((*backend)->calls(), 5);
  EXPECT_TRUE(absl::StrContains((*without_cert)->process().ReadLog(), "closed the TLS connection"))
      << (*without_cert)->process().ReadLog();

  // A certificate from a CA the backend does not trust is refused; once the files are replaced
  // with a good one, new backend connections present it (reload towards backends).
  const std::string cert = dir + "/presented.pem";
  const std::string key = dir + "/presented.key";
  ReplaceFile(cert, ReadWholeFile(dir + "/stranger.pem"));
  ReplaceFile(key, ReadWholeFile(dir + "/stranger.key"));
  auto reloading = ProxyProcess::Start(
      (*backend)->address(), {"--backend-tls-ca", dir + "/server-ca.pem", "--backend-tls-cert",
                              cert, "--backend-tls-key", key, "--pick-wait", "1s"});
  ASSERT_TRUE(reloading.ok()) << reloading.status();
  EXPECT_EQ(empty_call(**reloading).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ((*backend)->calls(), 5);
  ReplaceFile(key, ReadWholeFile(dir + "/proxy-client.key"));
  ReplaceFile(cert, ReadWholeFile(dir + "/proxy-client.pem"));
  EXPECT_TRUE(WaitFor([&] { return empty_call(**reloading).ok(); }, absl::Seconds(5)))
      << (*reloading)->process().ReadLog();
  EXPECT_EQ((*reloading)->Metric("sluice_proxy_tls_reloads_total"), 1);
  EXPECT_EQ((*reloading)->Metric("sluice_proxy_tls_reload_failures_total"), 0);

  // Half a key pair is a usage error naming the flags.
  std::string log;
  EXPECT_EQ(RunProxyCommand(dir,
                            {"--target", "127.0.0.11:1", "--backend-tls-ca", dir + "/server-ca.pem",
                             "--backend-tls-cert", cert},
                            &log),
            2);
  EXPECT_TRUE(absl::StrContains(log, "--backend-tls-key")) << log;
  // A client certificate without the CA to verify backends with is one too.
  EXPECT_EQ(
      RunProxyCommand(
          dir, {"--target", "127.0.0.11:1", "--backend-tls-cert", cert, "--backend-tls-key", key},
          &log),
      2);
  EXPECT_TRUE(absl::StrContains(log, "needs --backend-tls-ca")) << log;
  RemoveTree(dir);
}

TEST(ProxyTlsTest, ReloadsChangedCertificateForNewConnectionsAndRefusesBadFiles) {
  const std::string dir = MakeTempDir("tls-reload");
  const absl::Status made = MakeCertificates(dir, {{"server-ca", ""},
                                                   {"server-one", "server-ca"},
                                                   {"server-two", "server-ca"},
                                                   {"server-three", "server-ca"}});
  ASSERT_TRUE(made.ok()) << made;
  const std::string cert = dir + "/cert.pem";
  const std::string key = dir + "/key.pem";
  ReplaceFile(cert, ReadWholeFile(dir + "/server-one.pem"));
  ReplaceFile(key, ReadWholeFile(dir + "/server-one.key"));
  auto backend = GreeterBackend::Start("127.0.0.11");
  ASSERT_TRUE(backend.ok());
  auto proxy = ProxyProcess::Start((*backend)->address(), {"--tls-cert", cert, "--tls-key", key});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const std::string address = (*proxy)->address();
  auto new_connection_sees = [&](const std::string& name) {
    auto seen = HelloAndPeerName(TlsChannel(address, dir, "server-ca"));
    return seen.ok() && *seen == name;
  };

  auto open_before = TlsChannel(address, dir, "server-ca");
  ASSERT_EQ(HelloAndPeerName(open_before).value_or("failed"), "server-one");

  // A new certificate (key first, then the certificate, as a renewal writes them).
  ReplaceFile(key, ReadWholeFile(dir + "/server-two.key"));
  ReplaceFile(cert, ReadWholeFile(dir + "/server-two.pem"));
  EXPECT_TRUE(WaitFor([&] { return new_connection_sees("server-two"); }, absl::Seconds(3)))
      << (*proxy)->process().ReadLog();
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_tls_reloads_total"), 1);
  // The connection opened before keeps working, on the certificate it was made with.
  EXPECT_EQ(HelloAndPeerName(open_before).value_or("failed"), "server-one");

  // Garbage is refused: the current certificate stays, the failure is counted and logged.
  ReplaceFile(cert, "-----BEGIN CERTIFICATE-----\nnot a certificate\n");
  EXPECT_TRUE(
      WaitFor([&] { return (*proxy)->Metric("sluice_proxy_tls_reload_failures_total") == 1; },
              absl::Seconds(5)));
  EXPECT_TRUE(new_connection_sees("server-two"));
  const std::string log = (*proxy)->process().ReadLog();
  EXPECT_TRUE(absl::StrContains(log, "refused")) << log;
  EXPECT_TRUE(absl::StrContains(log, "--tls-cert " + cert + ": cannot load")) << log;

  // A good certificate whose key was not replaced does not match it: refused, naming both.
  ReplaceFile(cert, ReadWholeFile(dir + "/server-three.pem"));
  EXPECT_TRUE(
      WaitFor([&] { return (*proxy)->Metric("sluice_proxy_tls_reload_failures_total") == 2; },
              absl::Seconds(5)));
  EXPECT_TRUE(absl::StrContains((*proxy)->process().ReadLog(), "does not match"))
      << (*proxy)->process().ReadLog();
  EXPECT_TRUE(new_connection_sees("server-two"));

  // The matching key arrives: picked up.
  ReplaceFile(key, ReadWholeFile(dir + "/server-three.key"));
  EXPECT_TRUE(WaitFor([&] { return new_connection_sees("server-three"); }, absl::Seconds(3)))
      << (*proxy)->process().ReadLog();
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_tls_reloads_total"), 2);
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_tls_reload_failures_total"), 2);
  EXPECT_EQ(HelloAndPeerName(open_before).value_or("failed"), "server-one");
  RemoveTree(dir);
}

TEST(ProxyTlsTest, ConfigFileSetsBackendTlsPerRoute) {
  const std::string dir = MakeTempDir("route-tls");
  const absl::Status made = MakeCertificates(dir, {{"server-ca", ""},
                                                   {"backend", "server-ca"},
                                                   {"clients-ca", ""},
                                                   {"proxy-client", "clients-ca"}});
  ASSERT_TRUE(made.ok()) << made;
  // TestService needs mTLS; Greeter is plain although the flags say TLS towards backends.
  auto tests = TestServiceBackend::Start("127.0.0.11", 0,
                                         MutualTlsServerCredentials(dir, "backend", "clients-ca"));
  auto greeter = GreeterBackend::Start("127.0.0.12");
  ASSERT_TRUE(tests.ok() && greeter.ok());
  const std::string config = dir + "/routes.json";
  auto write_config = [&](const std::string& tls) {
    std::ofstream out(config);
    out << R"({"routes": [{"service": "grpc.testing.TestService", "target": ")"
        << (*tests)->address() << R"(",
                  "tls": )"
        << tls << R"(}],
 "default": {"target": ")"
        << (*greeter)->address() << R"(", "tls": false}})";
  };
  write_config(absl::StrCat(R"({"ca": ")", dir, R"(/server-ca.pem", "cert": ")", dir,
                            R"(/proxy-client.pem", "key": ")", dir, R"(/proxy-client.key"})"));
  auto proxy =
      ProxyProcess::Start("", {"--config", config, "--backend-tls-ca", dir + "/server-ca.pem"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto channel = (*proxy)->Channel();
  auto test_stub = TestService::NewStub(channel);
  auto greeter_stub = Greeter::NewStub(channel);
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext context;
    context.set_deadline(In(absl::Seconds(5)));
    grpc::testing::Empty empty;
    grpc::Status status = test_stub->EmptyCall(&context, empty, &empty);
    ASSERT_TRUE(status.ok()) << status.error_message() << (*proxy)->process().ReadLog();
    HelloReply reply;
    status = SayHello(*greeter_stub, "plain", &reply, absl::Seconds(5));
    ASSERT_TRUE(status.ok()) << status.error_message() << (*proxy)->process().ReadLog();
  }
  EXPECT_EQ((*tests)->calls(), 3);
  EXPECT_EQ((*greeter)->calls(), 3);

  // A route's TLS file that does not load is refused at start, naming the file and the route.
  write_config(absl::StrCat(R"({"ca": ")", dir, R"(/openssl.log"})"));
  std::string log;
  EXPECT_EQ(RunProxyCommand(dir, {"--config", config}, &log), 2);
  EXPECT_TRUE(absl::StrContains(log, "route for grpc.testing.TestService") ||
              absl::StrContains(log, "service grpc.testing.TestService"))
      << log;
  EXPECT_TRUE(absl::StrContains(log, dir + "/openssl.log: cannot load")) << log;
  // A bad "tls" value is refused with the route and the reason.
  write_config(R"({"cert": "x.pem"})");
  EXPECT_EQ(RunProxyCommand(dir, {"--config", config}, &log), 2);
  EXPECT_TRUE(absl::StrContains(log, "routes[0].tls: \"ca\" is missing")) << log;
  RemoveTree(dir);
}

}  // namespace
}  // namespace sluice::testing
