// etcd auth (users, roles limited to a prefix) and TLS to etcd (server certificates, client
// certificates), against real etcd processes, through the Registrar, Discovery and the CLI.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "etcd_cluster.h"
#include "etcd_process.h"
#include "gmock/gmock.h"
#include "greeter_backend.h"
#include "gtest/gtest.h"
#include "helloworld.grpc.pb.h"
#include "process.h"
#include "proxy_process.h"
#include "sluice/discovery/discovery.h"
#include "sluice/etcd/etcd_client.h"
#include "sluice/registry/registrar.h"

namespace sluice {
namespace {

using ::sluice::testing::BuiltBinary;
using ::sluice::testing::ChildProcess;
using ::sluice::testing::EtcdCluster;
using ::sluice::testing::EtcdClusterTls;
using ::sluice::testing::EtcdProcess;
using ::sluice::testing::MakeTempDir;
using ::sluice::testing::RemoveTree;
using ::sluice::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::Not;

struct RunResult {
  int code = -1;
  std::string output;
};

// Runs a program to completion; its stdout and stderr together in `output`.
RunResult RunProgram(std::vector<std::string> argv, std::map<std::string, std::string> env = {},
                     absl::Duration timeout = absl::Seconds(30)) {
  static int counter = 0;
  const std::string log =
      absl::StrCat(::testing::TempDir(), "/etcd-security-run-", getpid(), "-", counter++, ".log");
  RunResult result;
  auto child = ChildProcess::Start(std::move(argv), std::move(env), log);
  if (!child.ok()) {
    result.output = std::string(child.status().message());
    return result;
  }
  auto code = child->Wait(timeout);
  if (!code.ok()) child->Kill();
  result.code = code.ok() ? *code : -1;
  result.output = child->ReadLog();
  return result;
}

void Etcdctl(const std::string& endpoint, std::vector<std::string> args) {
  std::vector<std::string> argv = {"etcdctl", "--endpoints", endpoint};
  argv.insert(argv.end(), args.begin(), args.end());
  RunResult result = RunProgram(argv, {{"ETCDCTL_API", "3"}});
  ASSERT_EQ(result.code, 0) << absl::StrJoin(args, " ") << ": " << result.output;
}

// --- etcd auth ---------------------------------------------------------------------------------

// One etcd with auth on: root, and user "svc" whose role may only read and write services/.
class EtcdAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(etcd_.Start().ok());
    Etcdctl(etcd_.endpoint(), {"user", "add", "root:rootpw"});
    Etcdctl(etcd_.endpoint(), {"role", "add", "services-rw"});
    Etcdctl(etcd_.endpoint(),
            {"role", "grant-permission", "services-rw", "--prefix=true", "readwrite", "services/"});
    Etcdctl(etcd_.endpoint(), {"user", "add", "svc:svcpw"});
    Etcdctl(etcd_.endpoint(), {"user", "grant-role", "svc", "services-rw"});
    Etcdctl(etcd_.endpoint(), {"auth", "enable"});
  }

  registry::RegistrarOptions RegistrarFor(const std::string& address, const std::string& password,
                                          const std::string& prefix = "services/authx") {
    registry::RegistrarOptions options;
    options.etcd.endpoints = {etcd_.endpoint()};
    options.etcd.username = "svc";
    options.etcd.password = password;
    options.prefix = prefix;
    options.endpoint.address = address;
    options.ttl_seconds = 5;
    return options;
  }

  std::unique_ptr<discovery::Discovery> DiscoveryWith(const std::string& password) {
    discovery::DiscoveryOptions options;
    options.etcd_username = "svc";
    options.etcd_password = password;
    auto created = discovery::CreateDiscovery(
        absl::StrCat("etcd://", etcd_.endpoint(), "/services/authx"), options);
    EXPECT_TRUE(created.ok()) << created.status();
    if (!created.ok()) return nullptr;
    (*created)->Start(nullptr);
    return std::move(*created);
  }

  EtcdProcess etcd_;
};

TEST_F(EtcdAuthTest, RegistrarAndDiscoveryWorkWithAUserLimitedToServices) {
  auto registrar = registry::Registrar::Start(RegistrarFor("127.0.0.11:7001", "svcpw"));
  ASSERT_TRUE(registrar.ok()) << registrar.status();
  ASSERT_TRUE((*registrar)->WaitUntilRegistered(absl::Seconds(10))) << (*registrar)->LastError();
  EXPECT_TRUE((*registrar)->LastError().ok());

  auto discovery = DiscoveryWith("svcpw");
  ASSERT_NE(discovery, nullptr);
  ASSERT_TRUE(WaitFor([&] { return discovery->Current().Find("127.0.0.11:7001") != nullptr; },
                      absl::Seconds(10)))
      << discovery->LastError();
  // The watch works too: a second backend appears, the first one leaves (its lease is revoked
  // by a user who may write only services/).
  auto second = registry::Registrar::Start(RegistrarFor("127.0.0.12:7001", "svcpw"));
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(WaitFor([&] { return discovery->Current().Find("127.0.0.12:7001") != nullptr; },
                      absl::Seconds(10)));
  EXPECT_TRUE((*registrar)->Stop().ok());
  EXPECT_TRUE(WaitFor([&] { return discovery->Current().Find("127.0.0.11:7001") == nullptr; },
                      absl::Seconds(10)));
  EXPECT_TRUE(discovery->LastError().ok()) << discovery->LastError();
}

TEST_F(EtcdAuthTest, AWrongPasswordOrAForbiddenPrefixFailsWithAClearError) {
  auto registrar = registry::Registrar::Start(RegistrarFor("127.0.0.11:7002", "wrong"));
  ASSERT_TRUE(registrar.ok()) << registrar.status();
  EXPECT_FALSE((*registrar)->WaitUntilRegistered(absl::Seconds(2)));
  absl::Status error = (*registrar)->LastError();
  EXPECT_EQ(error.code(), absl::StatusCode::kUnauthenticated) << error;
  EXPECT_THAT(error.message(), HasSubstr("etcd refused to authenticate user 'svc'"));
  EXPECT_THAT(error.message(), HasSubstr("authentication failed"));
  EXPECT_THAT(error.message(), HasSubstr("check the etcd user name and password"));

  auto discovery = DiscoveryWith("wrong");
  ASSERT_NE(discovery, nullptr);
  ASSERT_TRUE(WaitFor([&] { return !discovery->LastError().ok(); }, absl::Seconds(10)));
  EXPECT_FALSE(discovery->HasReported());
  EXPECT_EQ(discovery->LastError().code(), absl::StatusCode::kUnauthenticated)
      << discovery->LastError();
  EXPECT_THAT(discovery->LastError().message(), HasSubstr("authentication failed"));

  // The right password, but a prefix the user's role does not cover.
  auto outside =
      registry::Registrar::Start(RegistrarFor("127.0.0.11:7003", "svcpw", "private/authx"));
  ASSERT_TRUE(outside.ok());
  EXPECT_FALSE((*outside)->WaitUntilRegistered(absl::Seconds(2)));
  EXPECT_EQ((*outside)->LastError().code(), absl::StatusCode::kPermissionDenied)
      << (*outside)->LastError();
  EXPECT_THAT((*outside)->LastError().message(), HasSubstr("permission denied"));
}

TEST_F(EtcdAuthTest, CliRegisterAndLsTakeEtcdUserAndPassword) {
  const std::string sluice = BuiltBinary("bin/sluice");
  const std::string log = absl::StrCat(::testing::TempDir(), "/sluice-register-auth.log");
  // The password from the environment: it never shows in the process list.
  auto reg =
      ChildProcess::Start({sluice, "register", "--etcd", etcd_.endpoint(), "--etcd-user", "svc",
                           "--service", "authx", "--addr", "127.0.0.11:7004", "--ttl", "5"},
                          {{"SLUICE_ETCD_PASSWORD", "svcpw"}}, log);
  ASSERT_TRUE(reg.ok());
  RunResult ls;
  EXPECT_TRUE(WaitFor(
      [&] {
        ls = RunProgram(
            {sluice, "ls", "--etcd", etcd_.endpoint(), "--etcd-user", "svc:svcpw", "authx"});
        return ls.code == 0 && absl::StrContains(ls.output, "127.0.0.11:7004");
      },
      absl::Seconds(10)))
      << ls.output << "\nregister log:\n"
      << reg->ReadLog();
  EXPECT_EQ(reg->Stop(), 0) << reg->ReadLog();

  RunResult wrong_ls = RunProgram(
      {sluice, "ls", "--etcd", etcd_.endpoint(), "--etcd-user", "svc", "--etcd-password", "nope"});
  EXPECT_EQ(wrong_ls.code, 1) << wrong_ls.output;
  EXPECT_THAT(wrong_ls.output, HasSubstr("etcd refused to authenticate user 'svc'"));

  RunResult wrong_register =
      RunProgram({sluice, "register", "--etcd", etcd_.endpoint(), "--etcd-user", "svc:nope",
                  "--service", "authx", "--addr", "127.0.0.11:7005"});
  EXPECT_EQ(wrong_register.code, 1) << wrong_register.output;
  EXPECT_THAT(wrong_register.output, HasSubstr("check the etcd user name and password"));

  RunResult no_password =
      RunProgram({sluice, "ls", "--etcd", etcd_.endpoint(), "--etcd-user", "svc"});
  EXPECT_EQ(no_password.code, 2) << no_password.output;
  EXPECT_THAT(no_password.output, HasSubstr("SLUICE_ETCD_PASSWORD"));
}

// `sluice proxy` reaches an etcd with auth on through --etcd-user/--etcd-password, as register
// and ls do; without them etcd refuses its watch and it finds no backend.
TEST_F(EtcdAuthTest, TheProxyTakesEtcdUserAndPassword) {
  auto backend = testing::GreeterBackend::Start("127.0.0.11");
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto registrar = registry::Registrar::Start(RegistrarFor((*backend)->address(), "svcpw"));
  ASSERT_TRUE(registrar.ok()) << registrar.status();
  ASSERT_TRUE((*registrar)->WaitUntilRegistered(absl::Seconds(10))) << (*registrar)->LastError();
  const std::string target = absl::StrCat("etcd://", etcd_.endpoint(), "/services/authx");

  auto proxy =
      testing::ProxyProcess::Start(target, {"--etcd-user", "svc", "--etcd-password", "svcpw"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto stub = Greeter::NewStub((*proxy)->Channel());
  HelloReply reply;
  grpc::Status status = testing::SayHelloUntilAnswered(*stub, &reply);
  ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << (*proxy)->process().ReadLog();
  EXPECT_THAT(reply.message(), HasSubstr((*backend)->address()));

  auto anonymous = testing::ProxyProcess::Start(target);
  ASSERT_TRUE(anonymous.ok()) << anonymous.status();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ((*anonymous)->Get("/ready").first, 503);
  EXPECT_THAT((*anonymous)->Get("/backends").second, Not(HasSubstr((*backend)->address())));

  RunResult half = RunProgram(
      {BuiltBinary("bin/sluice"), "proxy", "--target", target, "--etcd-password", "svcpw"});
  EXPECT_EQ(half.code, 2) << half.output;
  EXPECT_THAT(half.output, HasSubstr("--etcd-password given without --etcd-user"));
}

// etcd's simple tokens live in each member's memory; one issued before the leader died must
// still work (or be replaced) on the member the client fails over to.
TEST(EtcdAuthClusterTest, AuthenticatedRegistrationAndDiscoverySurviveALeaderKill) {
  EtcdCluster cluster(3);
  absl::Status started = cluster.Start();
  ASSERT_TRUE(started.ok()) << started;
  const std::string any = cluster.endpoints_csv();
  Etcdctl(any, {"user", "add", "root:rootpw"});
  Etcdctl(any, {"role", "add", "services-rw"});
  Etcdctl(any,
          {"role", "grant-permission", "services-rw", "--prefix=true", "readwrite", "services/"});
  Etcdctl(any, {"user", "add", "svc:svcpw"});
  Etcdctl(any, {"user", "grant-role", "svc", "services-rw"});
  Etcdctl(any, {"auth", "enable"});

  auto leader = cluster.Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  std::vector<std::string> members = {cluster.endpoint(*leader)};  // the leader first
  for (int i = 0; i < cluster.size(); ++i) {
    if (i != *leader) members.push_back(cluster.endpoint(i));
  }
  auto registrar_for = [&](const std::string& address) {
    registry::RegistrarOptions options;
    options.etcd.endpoints = members;
    options.etcd.username = "svc";
    options.etcd.password = "svcpw";
    options.prefix = "services/authcluster";
    options.endpoint.address = address;
    options.ttl_seconds = 3;
    auto registrar = registry::Registrar::Start(options);
    EXPECT_TRUE(registrar.ok()) << registrar.status();
    return registrar.ok() ? std::move(*registrar) : nullptr;
  };
  auto first = registrar_for("127.0.0.11:7201");
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(first->WaitUntilRegistered(absl::Seconds(10))) << first->LastError();
  const int64_t lease = first->lease_id();

  discovery::DiscoveryOptions discovery_options;
  discovery_options.etcd_username = "svc";
  discovery_options.etcd_password = "svcpw";
  auto discovery = discovery::CreateDiscovery(
      absl::StrCat("etcd://", absl::StrJoin(members, ","), "/services/authcluster"),
      discovery_options);
  ASSERT_TRUE(discovery.ok()) << discovery.status();
  (*discovery)->Start(nullptr);
  ASSERT_TRUE(WaitFor([&] { return (*discovery)->Current().size() == 1; }, absl::Seconds(10)));

  cluster.KillMember(*leader);
  ASSERT_TRUE(cluster.Leader(absl::Seconds(15)).ok());
  std::this_thread::sleep_for(std::chrono::seconds(9));  // three TTLs
  EXPECT_TRUE(first->registered()) << first->LastError();
  EXPECT_EQ(first->lease_id(), lease) << "the registration had to start over";
  EXPECT_EQ((*discovery)->Current().size(), 1u);

  auto second = registrar_for("127.0.0.12:7201");
  ASSERT_NE(second, nullptr);
  EXPECT_TRUE(WaitFor([&] { return (*discovery)->Current().Find("127.0.0.12:7201") != nullptr; },
                      absl::Seconds(10)))
      << (*discovery)->LastError() << " / " << second->LastError();
  EXPECT_TRUE(first->Stop().ok());
  EXPECT_TRUE(WaitFor([&] { return (*discovery)->Current().Find("127.0.0.11:7201") == nullptr; },
                      absl::Seconds(10)));
}

// --- TLS to etcd -------------------------------------------------------------------------------

// A CA, a server certificate for IP 127.0.0.1, a client certificate, and a second CA that
// signed none of them; made with the openssl command.
class TestCertificates {
 public:
  TestCertificates() : dir_(MakeTempDir("etcd-certs")) {}
  ~TestCertificates() { RemoveTree(dir_); }

  absl::Status Make() {
    if (absl::Status s = MakeCa("ca"); !s.ok()) return s;
    if (absl::Status s = MakeCa("other-ca"); !s.ok()) return s;
    if (absl::Status s = MakeLeaf("server", "etcd-test-server",
                                  "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
        !s.ok()) {
      return s;
    }
    return MakeLeaf("client", "sluice-test-client", "extendedKeyUsage=clientAuth\n");
  }

  std::string path(const std::string& name) const { return absl::StrCat(dir_, "/", name); }

 private:
  absl::Status Openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    RunResult result = RunProgram(std::move(args));
    if (result.code != 0) {
      return absl::InternalError(absl::StrCat("openssl failed: ", result.output));
    }
    return absl::OkStatus();
  }

  absl::Status MakeCa(const std::string& name) {
    return Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", path(name + ".key"), "-out", path(name + ".crt"), "-days",
                    "2", "-subj", "/CN=sluice-test-" + name});
  }

  absl::Status MakeLeaf(const std::string& name, const std::string& cn, const std::string& ext) {
    if (absl::Status s = Openssl(
            {"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", path(name + ".key"), "-out", path(name + ".csr"), "-subj", "/CN=" + cn});
        !s.ok()) {
      return s;
    }
    {
      FILE* file = std::fopen(path(name + ".ext").c_str(), "w");
      if (file == nullptr) return absl::InternalError("cannot write the extensions file");
      std::fputs(ext.c_str(), file);
      std::fclose(file);
    }
    return Openssl({"x509", "-req", "-in", path(name + ".csr"), "-CA", path("ca.crt"), "-CAkey",
                    path("ca.key"), "-CAcreateserial", "-out", path(name + ".crt"), "-days", "2",
                    "-extfile", path(name + ".ext")});
  }

  const std::string dir_;
};

class EtcdTlsTest : public ::testing::TestWithParam<bool> {
 protected:
  bool client_cert_auth() const { return GetParam(); }

  void SetUp() override {
    absl::Status made = certs_.Make();
    ASSERT_TRUE(made.ok()) << made;
    EtcdClusterTls tls;
    tls.ca_file = certs_.path("ca.crt");
    tls.cert_file = certs_.path("server.crt");
    tls.key_file = certs_.path("server.key");
    tls.client_cert_auth = client_cert_auth();
    tls.probe_cert_file = certs_.path("client.crt");
    tls.probe_key_file = certs_.path("client.key");
    cluster_ = std::make_unique<EtcdCluster>(1, tls);
    absl::Status started = cluster_->Start();
    ASSERT_TRUE(started.ok()) << started;
  }

  // What a correctly configured client gives: the CA, and the client certificate when needed.
  etcd::EtcdTlsOptions GoodTls() const {
    etcd::EtcdTlsOptions tls;
    tls.ca_file = certs_.path("ca.crt");
    if (client_cert_auth()) {
      tls.cert_file = certs_.path("client.crt");
      tls.key_file = certs_.path("client.key");
    }
    return tls;
  }

  absl::Status GetWith(const etcd::EtcdTlsOptions& tls) {
    etcd::EtcdClientOptions options;
    options.endpoints = cluster_->endpoints();
    options.tls = tls;
    auto client = etcd::EtcdClient::Create(options);
    if (!client.ok()) return client.status();
    return (*client)->Get("services/tls").status();
  }

  TestCertificates certs_;
  std::unique_ptr<EtcdCluster> cluster_;
};

TEST_P(EtcdTlsTest, RegistrationAndDiscoveryWorkOverTls) {
  registry::RegistrarOptions options;
  options.etcd.endpoints = cluster_->endpoints();
  options.etcd.tls = GoodTls();
  options.prefix = "services/tlsx";
  options.endpoint.address = "127.0.0.11:7101";
  options.ttl_seconds = 5;
  auto registrar = registry::Registrar::Start(options);
  ASSERT_TRUE(registrar.ok()) << registrar.status();
  ASSERT_TRUE((*registrar)->WaitUntilRegistered(absl::Seconds(10))) << (*registrar)->LastError();

  discovery::DiscoveryOptions discovery_options;
  discovery_options.etcd_tls = GoodTls();
  auto discovery = discovery::CreateDiscovery(
      absl::StrCat("etcd://", cluster_->endpoints_csv(), "/services/tlsx"), discovery_options);
  ASSERT_TRUE(discovery.ok()) << discovery.status();
  (*discovery)->Start(nullptr);
  ASSERT_TRUE(WaitFor([&] { return (*discovery)->Current().Find("127.0.0.11:7101") != nullptr; },
                      absl::Seconds(10)))
      << (*discovery)->LastError();
  // The watch over TLS follows a deregistration.
  EXPECT_TRUE((*registrar)->Stop().ok());
  EXPECT_TRUE(WaitFor([&] { return (*discovery)->Current().empty(); }, absl::Seconds(10)));

  // And the CLI, with etcdctl's flag names and an https:// member.
  const std::string sluice = BuiltBinary("bin/sluice");
  std::vector<std::string> tls_flags = {"--etcd", "https://" + cluster_->endpoint(0),
                                        "--etcd-cacert", certs_.path("ca.crt")};
  if (client_cert_auth()) {
    tls_flags.insert(tls_flags.end(), {"--etcd-cert", certs_.path("client.crt"), "--etcd-key",
                                       certs_.path("client.key")});
  }
  std::vector<std::string> reg_argv = {sluice,   "register",        "--service", "tlsx",
                                       "--addr", "127.0.0.12:7101", "--ttl",     "5"};
  reg_argv.insert(reg_argv.end(), tls_flags.begin(), tls_flags.end());
  auto reg = ChildProcess::Start(reg_argv, {},
                                 absl::StrCat(::testing::TempDir(), "/sluice-register-tls.log"));
  ASSERT_TRUE(reg.ok());
  EXPECT_TRUE(WaitFor([&] { return (*discovery)->Current().Find("127.0.0.12:7101") != nullptr; },
                      absl::Seconds(10)))
      << reg->ReadLog();
  std::vector<std::string> ls_argv = {sluice, "ls", "tlsx"};
  ls_argv.insert(ls_argv.end(), tls_flags.begin(), tls_flags.end());
  RunResult ls = RunProgram(ls_argv);
  EXPECT_EQ(ls.code, 0) << ls.output;
  EXPECT_THAT(ls.output, HasSubstr("127.0.0.12:7101"));

  // The proxy takes the same flags but --etcd: its members are in the target.
  auto proxy = testing::ProxyProcess::Start(
      absl::StrCat("etcd://", cluster_->endpoints_csv(), "/services/tlsx"),
      std::vector<std::string>(tls_flags.begin() + 2, tls_flags.end()));
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_TRUE(WaitFor(
      [&] { return absl::StrContains((*proxy)->Get("/backends").second, "127.0.0.12:7101"); },
      absl::Seconds(10)))
      << (*proxy)->process().ReadLog();
  EXPECT_EQ(reg->Stop(), 0) << reg->ReadLog();
}

TEST_P(EtcdTlsTest, AClientThatCannotVerifyOrIsNotTrustedGetsAClearError) {
  ASSERT_TRUE(GetWith(GoodTls()).ok()) << GetWith(GoodTls());

  // TLS, but without the CA: the system roots do not know the test CA.
  etcd::EtcdTlsOptions no_ca = GoodTls();
  no_ca.ca_file.clear();
  no_ca.enabled = true;
  absl::Status status = GetWith(no_ca);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr("not signed by a CA the system trusts")) << status;
  std::printf("[tls] without the CA: %s\n", status.ToString().c_str());

  // TLS with a CA that did not sign the server's certificate.
  etcd::EtcdTlsOptions other_ca = GoodTls();
  other_ca.ca_file = certs_.path("other-ca.crt");
  status = GetWith(other_ca);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr("other-ca.crt")) << status;

  // No TLS at all against a TLS member.
  status = GetWith(etcd::EtcdTlsOptions{});
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr("if the members serve TLS")) << status;
  std::printf("[tls] plain TCP to a TLS member: %s\n", status.ToString().c_str());

  if (client_cert_auth()) {
    // The right CA but no client certificate: the member refuses us.
    etcd::EtcdTlsOptions no_cert = GoodTls();
    no_cert.cert_file.clear();
    no_cert.key_file.clear();
    status = GetWith(no_cert);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
    EXPECT_THAT(status.message(), HasSubstr("require client certificates")) << status;
    std::printf("[tls] without a client certificate: %s\n", status.ToString().c_str());
  }

  // Unreadable files are refused up front, naming the file.
  etcd::EtcdTlsOptions missing = GoodTls();
  missing.ca_file = certs_.path("missing.crt");
  status = GetWith(missing);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("missing.crt"));
  etcd::EtcdTlsOptions half = GoodTls();
  half.cert_file = certs_.path("client.crt");
  half.key_file.clear();
  status = GetWith(half);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

INSTANTIATE_TEST_SUITE_P(ServerOnlyAndMutual, EtcdTlsTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("ClientCertAuth")
                                             : std::string("ServerCertOnly");
                         });

}  // namespace
}  // namespace sluice
