// The gRPC test service through `sluice proxy`: streams, large messages, deadlines,
// cancellation, flow control, and malformed requests.
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

using grpc::testing::StreamingOutputCallRequest;
using grpc::testing::StreamingOutputCallResponse;
using grpc::testing::TestService;

// ---- The gRPC test service through the proxy ----

class ProxyStreamingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto backend = TestServiceBackend::Start("127.0.0.11");
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
    auto proxy = ProxyProcess::Start(backend_->address(), {"--workers", "2"});
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = std::move(*proxy);
    stub_ = TestService::NewStub(proxy_->Channel());
  }

  std::unique_ptr<TestServiceBackend> backend_;
  std::unique_ptr<ProxyProcess> proxy_;
  std::unique_ptr<TestService::Stub> stub_;
};

TEST_F(ProxyStreamingTest, ServerStreamsTenThousandMessages) {
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(60)));
  StreamingOutputCallRequest request;
  for (int i = 0; i < 10000; ++i) request.add_response_parameters()->set_size(100 + i % 50);
  auto reader = stub_->StreamingOutputCall(&context, request);
  StreamingOutputCallResponse response;
  int received = 0;
  while (reader->Read(&response)) {
    ASSERT_EQ(response.payload().body().size(), static_cast<size_t>(100 + received % 50));
    ++received;
  }
  grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(received, 10000);
}

TEST_F(ProxyStreamingTest, ClientStreamsAndEmptyStream) {
  for (int messages : {0, 500}) {
    grpc::ClientContext context;
    context.set_deadline(In(absl::Seconds(30)));
    grpc::testing::StreamingInputCallResponse response;
    auto writer = stub_->StreamingInputCall(&context, &response);
    grpc::testing::StreamingInputCallRequest request;
    int64_t total = 0;
    for (int i = 0; i < messages; ++i) {
      request.mutable_payload()->set_body(std::string(1000 + i, 'c'));
      total += 1000 + i;
      ASSERT_TRUE(writer->Write(request));
    }
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.aggregated_payload_size(), total);
  }
}

TEST_F(ProxyStreamingTest, BidiPingPong) {
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(30)));
  auto stream = stub_->FullDuplexCall(&context);
  for (int i = 0; i < 200; ++i) {
    StreamingOutputCallRequest request;
    request.add_response_parameters()->set_size(10 + i);
    request.mutable_payload()->set_body(std::string(i, 'p'));
    ASSERT_TRUE(stream->Write(request));
    StreamingOutputCallResponse response;
    ASSERT_TRUE(stream->Read(&response));
    ASSERT_EQ(response.payload().body().size(), static_cast<size_t>(10 + i));
  }
  stream->WritesDone();
  StreamingOutputCallResponse extra;
  EXPECT_FALSE(stream->Read(&extra));
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(ProxyStreamingTest, EmptyBidiStreamAndTimeoutOnSleepingServer) {
  {  // empty_stream
    grpc::ClientContext context;
    context.set_deadline(In(absl::Seconds(30)));
    auto stream = stub_->FullDuplexCall(&context);
    stream->WritesDone();
    StreamingOutputCallResponse response;
    EXPECT_FALSE(stream->Read(&response));
    EXPECT_TRUE(stream->Finish().ok());
  }
  {  // timeout_on_sleeping_server
    grpc::ClientContext context;
    context.set_deadline(In(absl::Milliseconds(1)));
    auto stream = stub_->FullDuplexCall(&context);
    StreamingOutputCallRequest request;
    request.mutable_payload()->set_body(std::string(27182, 'z'));
    stream->Write(request);
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
}

TEST_F(ProxyStreamingTest, FourMebibyteMessagesBothWays) {
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext context;
    context.set_deadline(In(absl::Seconds(30)));
    grpc::testing::SimpleRequest request;
    request.set_response_size(4 << 20);
    request.mutable_payload()->set_body(std::string(4 << 20, 'q'));
    grpc::testing::SimpleResponse response;
    grpc::Status status = stub_->UnaryCall(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.payload().body().size(), static_cast<size_t>(4 << 20));
    EXPECT_EQ(response.username(), std::to_string(4 << 20));
  }
}

TEST_F(ProxyStreamingTest, StatusMessageMetadataAndUnimplementedPassThrough) {
  {
    grpc::ClientContext context;
    grpc::testing::SimpleRequest request;
    request.mutable_response_status()->set_code(5);
    request.mutable_response_status()->set_message(
        "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n");
    grpc::testing::SimpleResponse response;
    grpc::Status status = stub_->UnaryCall(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(status.error_message(), request.response_status().message());
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("x-grpc-test-echo-initial", "test_initial_metadata_value");
    context.AddMetadata("x-grpc-test-echo-trailing-bin",
                        std::string("\x0a\x0b\x0a\x0b\x0a\x0b", 6));
    grpc::testing::SimpleRequest request;
    request.set_response_size(10);
    grpc::testing::SimpleResponse response;
    ASSERT_TRUE(stub_->UnaryCall(&context, request, &response).ok());
    auto initial = context.GetServerInitialMetadata().find("x-grpc-test-echo-initial");
    ASSERT_NE(initial, context.GetServerInitialMetadata().end());
    EXPECT_EQ(std::string(initial->second.data(), initial->second.size()),
              "test_initial_metadata_value");
    auto trailing = context.GetServerTrailingMetadata().find("x-grpc-test-echo-trailing-bin");
    ASSERT_NE(trailing, context.GetServerTrailingMetadata().end());
    EXPECT_EQ(std::string(trailing->second.data(), trailing->second.size()),
              std::string("\x0a\x0b\x0a\x0b\x0a\x0b", 6));
  }
  {
    grpc::ClientContext context;
    grpc::testing::Empty request, response;
    EXPECT_EQ(stub_->UnimplementedCall(&context, request, &response).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
}

TEST_F(ProxyStreamingTest, SlowReaderKeepsProxyBuffersBounded) {
  constexpr int kMessages = 800;  // 50 MiB: far more than every window on the way together
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(60)));
  StreamingOutputCallRequest request;
  for (int i = 0; i < kMessages; ++i) request.add_response_parameters()->set_size(64 << 10);
  auto reader = stub_->StreamingOutputCall(&context, request);
  StreamingOutputCallResponse response;
  ASSERT_TRUE(reader->Read(&response));
  // The client stops reading. The backend must be held back, and the proxy must not hoard.
  double max_buffered = 0;
  for (int i = 0; i < 20; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    max_buffered = std::max(max_buffered, proxy_->Metric("sluice_proxy_buffered_bytes"));
  }
  EXPECT_LE(max_buffered, 4 << 20);  // per-stream window is 1 MiB per direction
  EXPECT_LT(backend_->messages_sent(), kMessages / 2);
  int received = 1;
  while (reader->Read(&response)) ++received;
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(received, kMessages);
  EXPECT_TRUE(WaitFor([&] { return proxy_->Metric("sluice_proxy_buffered_bytes") == 0; },
                      absl::Seconds(5)));
}

TEST_F(ProxyStreamingTest, SlowBackendReaderKeepsProxyBuffersBounded) {
  constexpr int kMessages = 800;  // 50 MiB sent while the backend does not read for 2 s
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(60)));
  grpc::testing::StreamingInputCallResponse response;
  auto writer = stub_->StreamingInputCall(&context, &response);
  std::atomic<int> written{0};
  std::thread sender([&] {
    grpc::testing::StreamingInputCallRequest request;
    for (int i = 0; i < kMessages; ++i) {
      request.mutable_payload()->set_body((i == 0 ? "slow:" : "") + std::string(64 << 10, 'w'));
      if (!writer->Write(request)) return;
      ++written;
    }
    writer->WritesDone();
  });
  double max_buffered = 0;
  for (int i = 0; i < 15; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    max_buffered = std::max(max_buffered, proxy_->Metric("sluice_proxy_buffered_bytes"));
  }
  // The client is held back too: it could not push everything into the proxy.
  EXPECT_LT(written.load(), kMessages / 2);
  sender.join();
  grpc::Status status = writer->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.aggregated_payload_size(), kMessages * (64 << 10) + 5);
  // Window (1 MiB) plus the request bytes kept for a retry (256 KiB), with room to spare.
  EXPECT_LE(max_buffered, 4 << 20);
  EXPECT_GT(max_buffered, 0);
}

TEST_F(ProxyStreamingTest, ClientCancelReachesBackend) {
  for (int round = 0; round < 2; ++round) {
    const int64_t before = backend_->cancellations();
    grpc::ClientContext context;
    auto stream = stub_->FullDuplexCall(&context);
    StreamingOutputCallRequest request;
    request.add_response_parameters()->set_size(10);
    ASSERT_TRUE(stream->Write(request));
    StreamingOutputCallResponse response;
    if (round == 1) {
      ASSERT_TRUE(stream->Read(&response));  // cancel_after_first_response
    }
    context.TryCancel();
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
    if (round == 1) {
      // The backend certainly had the call (it answered): it must see the cancellation.
      EXPECT_TRUE(WaitFor([&] { return backend_->cancellations() > before; }, absl::Seconds(10)));
    }
  }
}

TEST_F(ProxyStreamingTest, BackendCancelReachesClient) {
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(30)));
  auto stream = stub_->FullDuplexCall(&context);
  StreamingOutputCallRequest request;
  request.add_response_parameters()->set_size(10);
  ASSERT_TRUE(stream->Write(request));
  StreamingOutputCallResponse response;
  ASSERT_TRUE(stream->Read(&response));  // the response has started
  StreamingOutputCallRequest cancel;
  cancel.mutable_payload()->set_body("server-cancel");
  stream->Write(cancel);
  EXPECT_FALSE(stream->Read(&response));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

std::vector<std::pair<std::string, std::string>> GrpcHeaders(const std::string& path) {
  return {{":method", "POST"},
          {":scheme", "http"},
          {":path", path},
          {":authority", "proxy"},
          {"content-type", "application/grpc"},
          {"te", "trailers"}};
}

TEST_F(ProxyStreamingTest, GrpcTimeoutEndsCallWithDeadlineExceededAndCancelsBackend) {
  // A raw client, so the deadline is the proxy's doing (gRPC's own client would cancel itself).
  auto headers = GrpcHeaders("/grpc.testing.TestService/StreamingOutputCall");
  headers.push_back({"grpc-timeout", "300m"});
  StreamingOutputCallRequest request;
  auto* params = request.add_response_parameters();
  params->set_size(1);
  params->set_interval_us(20'000'000);  // the backend "sleeps" 20 s
  const int64_t before = backend_->cancellations();
  const absl::Time start = absl::Now();
  auto response = RawHttp2Request(proxy_->port(), headers, GrpcFrame(request.SerializeAsString()),
                                  absl::Seconds(15));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(response->closed);
  EXPECT_EQ(response->Header("grpc-status"), "4");
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_TRUE(WaitFor([&] { return backend_->cancellations() > before; }, absl::Seconds(10)));
}

TEST(ProxyDeadlineTest, GrpcTimeoutExpiresInTheProxyWhenTheBackendIsSilent) {
  BlackHole hole("127.0.0.12");
  auto proxy = ProxyProcess::Start(hole.address());
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto headers = GrpcHeaders("/grpc.testing.TestService/EmptyCall");
  headers.push_back({"grpc-timeout", "400m"});
  const absl::Time start = absl::Now();
  auto response = RawHttp2Request((*proxy)->port(), headers, GrpcFrame(""), absl::Seconds(15));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(response->closed);
  EXPECT_EQ(response->Header("grpc-status"), "4");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(350));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ((*proxy)->Metric("sluice_proxy_deadline_exceeded_total"), 1);
  // The same through gRPC's own client: DEADLINE_EXCEEDED, and the proxy stays healthy.
  auto stub = TestService::NewStub((*proxy)->Channel());
  grpc::ClientContext context;
  context.set_deadline(In(absl::Milliseconds(300)));
  grpc::testing::Empty empty;
  EXPECT_EQ(stub->EmptyCall(&context, empty, &empty).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ((*proxy)->Get("/healthz").first, 200);
}

TEST_F(ProxyStreamingTest, BadInputGetsErrorsAndOtherClientsKeepWorking) {
  // A good client holds its own connection throughout.
  grpc::testing::Empty empty;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->EmptyCall(&context, empty, &empty).ok());
  }
  // Bytes that are not HTTP/2: GOAWAY(PROTOCOL_ERROR), then the connection closes.
  {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(proxy_->port());
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    timeval timeout{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    const std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\nthis is not http/2 at all";
    ASSERT_EQ(send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(garbage.size()));
    std::string received;
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) received.append(buf, n);
    EXPECT_EQ(n, 0) << "the proxy closes the connection";
    close(fd);
    bool goaway_protocol_error = false;
    for (size_t off = 0; off + 9 <= received.size();) {
      const size_t length = (static_cast<uint8_t>(received[off]) << 16) |
                            (static_cast<uint8_t>(received[off + 1]) << 8) |
                            static_cast<uint8_t>(received[off + 2]);
      const uint8_t type = received[off + 3];
      if (type == 0x7 && off + 9 + 8 <= received.size()) {
        const uint8_t* p = reinterpret_cast<const uint8_t*>(received.data()) + off + 9 + 4;
        const uint32_t code = (p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
        goaway_protocol_error = code == 0x1;
      }
      off += 9 + length;
    }
    EXPECT_TRUE(goaway_protocol_error) << "got " << received.size() << " bytes";
  }
  // Missing :path: the stream is reset (PROTOCOL_ERROR) or refused with an HTTP error.
  {
    auto headers = GrpcHeaders("/x");
    headers.erase(headers.begin() + 2);
    auto response = RawHttp2Request(proxy_->port(), headers, "", absl::Seconds(10));
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_TRUE(response->reset || response->Header(":status") == "400");
  }
  // Not gRPC: 415 with a gRPC status, never reaching the backend.
  const int64_t calls_before = backend_->calls();
  {
    auto headers = GrpcHeaders("/grpc.testing.TestService/EmptyCall");
    headers[4].second = "application/json";
    auto response = RawHttp2Request(proxy_->port(), headers, "{}", absl::Seconds(10));
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->Header(":status"), "415");
    EXPECT_EQ(response->Header("grpc-status"), "13");
  }
  {
    auto headers = GrpcHeaders("/grpc.testing.TestService/EmptyCall");
    headers[0].second = "GET";
    auto response = RawHttp2Request(proxy_->port(), headers, "", absl::Seconds(10));
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->Header(":status"), "405");
  }
  // Oversized headers (100 KiB of metadata): that stream is reset, not the connection.
  {
    auto headers = GrpcHeaders("/grpc.testing.TestService/EmptyCall");
    headers.push_back({"x-huge", std::string(100 << 10, 'h')});
    auto response = RawHttp2Request(proxy_->port(), headers, GrpcFrame(""), absl::Seconds(10));
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_TRUE(response->reset);
  }
  EXPECT_EQ(backend_->calls(), calls_before);
  // A valid raw request works, and so does the good client on its old connection.
  {
    auto response =
        RawHttp2Request(proxy_->port(), GrpcHeaders("/grpc.testing.TestService/EmptyCall"),
                        GrpcFrame(""), absl::Seconds(10));
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->Header("grpc-status"), "0");
  }
  for (int i = 0; i < 5; ++i) {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->EmptyCall(&context, empty, &empty).ok());
  }
  EXPECT_GE(proxy_->Metric("sluice_proxy_protocol_errors_total"), 1);
  EXPECT_GE(proxy_->Metric("sluice_proxy_rejected_requests_total"), 2);
  EXPECT_TRUE(absl::StrContains(proxy_->process().ReadLog(), "closing client connection"));
}

}  // namespace
}  // namespace sluice::testing
