#include "proxy_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace sluice::testing {

std::chrono::system_clock::time_point In(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(d);
}

std::string Replier(const std::string& reply) {
  const size_t at = reply.rfind("I am ");
  return at == std::string::npos ? "" : reply.substr(at + 5);
}

grpc::Status SayHello(Greeter::Stub& stub, const std::string& name, HelloReply* reply,
                      absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(In(timeout));
  HelloRequest request;
  request.set_name(name);
  return stub.SayHello(&context, request, reply);
}


constexpr int kMaxMessage = 16 << 20;

class TestServiceBackend::Service final : public grpc::testing::TestService::Service {
 public:
  Service(std::shared_ptr<std::atomic<int64_t>> sent,
          std::shared_ptr<std::atomic<int64_t>> cancelled,
          std::shared_ptr<std::atomic<int64_t>> calls)
      : sent_(std::move(sent)), cancelled_(std::move(cancelled)), calls_(std::move(calls)) {}

  grpc::Status EmptyCall(grpc::ServerContext*, const grpc::testing::Empty*,
                         grpc::testing::Empty*) override {
    ++*calls_;
    return grpc::Status::OK;
  }

  grpc::Status UnaryCall(grpc::ServerContext* context, const grpc::testing::SimpleRequest* request,
                         grpc::testing::SimpleResponse* response) override {
    ++*calls_;
    EchoMetadata(context);
    if (request->has_response_status() && request->response_status().code() != 0) {
      return grpc::Status(static_cast<grpc::StatusCode>(request->response_status().code()),
                          request->response_status().message());
    }
    response->mutable_payload()->set_body(std::string(request->response_size(), 'r'));
    response->set_username(std::to_string(request->payload().body().size()));
    return grpc::Status::OK;
  }

  grpc::Status StreamingOutputCall(
      grpc::ServerContext* context, const grpc::testing::StreamingOutputCallRequest* request,
      grpc::ServerWriter<grpc::testing::StreamingOutputCallResponse>* writer) override {
    ++*calls_;
    grpc::testing::StreamingOutputCallResponse response;
    for (const auto& params : request->response_parameters()) {
      if (!Sleep(context, absl::Microseconds(params.interval_us()))) {
        ++*cancelled_;
        return grpc::Status::CANCELLED;
      }
      response.mutable_payload()->set_body(std::string(params.size(), 's'));
      if (!writer->Write(response)) {
        if (context->IsCancelled()) ++*cancelled_;
        return grpc::Status::CANCELLED;
      }
      ++*sent_;
    }
    return grpc::Status::OK;
  }

  grpc::Status StreamingInputCall(
      grpc::ServerContext*, grpc::ServerReader<grpc::testing::StreamingInputCallRequest>* reader,
      grpc::testing::StreamingInputCallResponse* response) override {
    ++*calls_;
    grpc::testing::StreamingInputCallRequest request;
    int64_t total = 0;
    bool first = true;
    while (reader->Read(&request)) {
      // A first message starting with "slow:" makes a slow reader: 2 s before reading on.
      if (first && request.payload().body().rfind("slow:", 0) == 0) {
        absl::SleepFor(absl::Seconds(2));
      }
      first = false;
      total += request.payload().body().size();
    }
    response->set_aggregated_payload_size(static_cast<int32_t>(total));
    return grpc::Status::OK;
  }

  grpc::Status FullDuplexCall(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::testing::StreamingOutputCallResponse,
                               grpc::testing::StreamingOutputCallRequest>* stream) override {
    ++*calls_;
    EchoMetadata(context);
    grpc::testing::StreamingOutputCallRequest request;
    while (stream->Read(&request)) {
      if (request.payload().body() == "server-cancel") {
        context->TryCancel();  // RST_STREAM(CANCEL) towards the caller
        ++*cancelled_;
        return grpc::Status::CANCELLED;
      }
      if (request.has_response_status() && request.response_status().code() != 0) {
        return grpc::Status(static_cast<grpc::StatusCode>(request.response_status().code()),
                            request.response_status().message());
      }
      for (const auto& params : request.response_parameters()) {
        if (!Sleep(context, absl::Microseconds(params.interval_us()))) break;
        grpc::testing::StreamingOutputCallResponse response;
        response.mutable_payload()->set_body(std::string(params.size(), 'd'));
        if (!stream->Write(response)) break;
        ++*sent_;
      }
    }
    if (context->IsCancelled()) {
      ++*cancelled_;
      return grpc::Status::CANCELLED;
    }
    return grpc::Status::OK;
  }

 private:
  static void EchoMetadata(grpc::ServerContext* context) {
    const auto& md = context->client_metadata();
    if (auto it = md.find("x-grpc-test-echo-initial"); it != md.end()) {
      context->AddInitialMetadata("x-grpc-test-echo-initial",
                                  std::string(it->second.data(), it->second.size()));
    }
    if (auto it = md.find("x-grpc-test-echo-trailing-bin"); it != md.end()) {
      context->AddTrailingMetadata("x-grpc-test-echo-trailing-bin",
                                   std::string(it->second.data(), it->second.size()));
    }
  }
  // Sleeps, waking to notice cancellation; false if the call was cancelled.
  static bool Sleep(grpc::ServerContext* context, absl::Duration d) {
    const absl::Time end = absl::Now() + d;
    while (absl::Now() < end) {
      if (context->IsCancelled()) return false;
      absl::SleepFor(std::min(absl::Milliseconds(5), end - absl::Now()));
    }
    return !context->IsCancelled();
  }

  std::shared_ptr<std::atomic<int64_t>> sent_, cancelled_, calls_;
};

absl::StatusOr<std::unique_ptr<TestServiceBackend>> TestServiceBackend::Start(
    const std::string& ip, int max_concurrent_streams,
    std::shared_ptr<grpc::ServerCredentials> credentials) {
  auto backend = std::unique_ptr<TestServiceBackend>(new TestServiceBackend());
  backend->service_ =
      std::make_unique<Service>(backend->sent_, backend->cancelled_, backend->calls_);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(ip + ":0", credentials ? credentials : grpc::InsecureServerCredentials(),
                           &port);
  // No SO_REUSEPORT: another process can never share (and silently split) this address.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(backend->service_.get());
  builder.SetMaxReceiveMessageSize(kMaxMessage);
  builder.SetMaxSendMessageSize(kMaxMessage);
  if (max_concurrent_streams > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, max_concurrent_streams);
  }
  backend->server_ = builder.BuildAndStart();
  if (backend->server_ == nullptr || port == 0) {
    return absl::UnavailableError("cannot start the test service on " + ip);
  }
  backend->address_ = absl::StrCat(ip, ":", port);
  return backend;
}

TestServiceBackend::~TestServiceBackend() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

BlackHole::BlackHole(const std::string& ip) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  listen(fd_, 16);
  socklen_t len = sizeof(addr);
  getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  address_ = absl::StrCat(ip, ":", ntohs(addr.sin_port));
}

BlackHole::~BlackHole() { close(fd_); }

}  // namespace sluice::testing
