#include "greeter_backend.h"

#include <grpcpp/health_check_service_interface.h>

#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "process.h"

namespace sluice::testing {

class GreeterBackend::Service final : public Greeter::CallbackService {
 public:
  Service(std::shared_ptr<std::atomic<int64_t>> calls) : calls_(std::move(calls)) {}
  void set_identity(std::string identity) { identity_ = std::move(identity); }
  void set_delay(absl::Duration delay) { delay_nanos_ = absl::ToInt64Nanoseconds(delay); }
  void set_failure(grpc::StatusCode code) { failure_ = static_cast<int>(code); }

  grpc::ServerUnaryReactor* SayHello(grpc::CallbackServerContext* context,
                                     const HelloRequest* request, HelloReply* reply) override {
    calls_->fetch_add(1);
    reply->set_message(absl::StrCat("Hello, ", request->name(), "!, I am ", identity_));
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    int64_t delay = delay_nanos_.load();
    grpc::Status status = grpc::Status::OK;
    if (int failure = failure_.load(); failure != 0) {
      status = grpc::Status(static_cast<grpc::StatusCode>(failure), "injected failure");
    }
    if (delay <= 0) {
      reactor->Finish(status);
    } else {
      std::thread([reactor, delay, status] {
        std::this_thread::sleep_for(std::chrono::nanoseconds(delay));
        reactor->Finish(status);
      }).detach();
    }
    return reactor;
  }

 private:
  std::shared_ptr<std::atomic<int64_t>> calls_;
  std::string identity_;
  std::atomic<int64_t> delay_nanos_{0};
  std::atomic<int> failure_{0};
};

absl::StatusOr<std::unique_ptr<GreeterBackend>> GreeterBackend::Start(const std::string& ip,
                                                                      int port,
                                                                      absl::Duration delay) {
  std::unique_ptr<GreeterBackend> backend(new GreeterBackend());
  backend->service_ = std::make_unique<Service>(backend->calls_);
  backend->service_->set_delay(delay);
  // gRPC's own grpc.health.v1 service in every server of the process (a global switch).
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // Two servers must never share one ip:port silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int bound = 0;
  builder.AddListeningPort(absl::StrCat(ip, ":", port), grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(backend->service_.get());
  backend->server_ = builder.BuildAndStart();
  if (backend->server_ == nullptr || bound == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", ip, ":", port));
  }
  backend->address_ = absl::StrCat(ip, ":", bound);
  backend->service_->set_identity(backend->address_);
  return backend;
}

GreeterBackend::~GreeterBackend() { Shutdown(absl::Seconds(1)); }

void GreeterBackend::set_delay(absl::Duration delay) { service_->set_delay(delay); }
void GreeterBackend::set_failure(grpc::StatusCode code) { service_->set_failure(code); }
void GreeterBackend::set_serving(bool serving) {
  server_->GetHealthCheckService()->SetServingStatus(serving);
}

void GreeterBackend::Shutdown(absl::Duration grace) {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(grace));
  server_->Wait();
  server_.reset();
}

grpc::Status SayHelloUntilAnswered(Greeter::Stub& stub, HelloReply* reply, absl::Duration timeout) {
  HelloRequest request;
  request.set_name("ready?");
  grpc::Status status;
  WaitFor(
      [&] {
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
        status = stub.SayHello(&context, request, reply);
        return status.ok();
      },
      timeout);
  return status;
}

}  // namespace sluice::testing
