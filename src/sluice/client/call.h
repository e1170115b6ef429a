#pragma once

// Call helpers for generated stubs: every call is balanced on its own, counted in its backend's
// stats, and retried as the Balancer's retry options allow. Users keep their .proto and their
// generated code; only the place a stub's channel comes from changes.
//
//   HelloReply reply;
//   grpc::Status status = sluice::client::UnaryCall(
//       balancer, &Greeter::Stub::SayHello, {.method = "/Greeter/SayHello"}, request, &reply);

#include <grpcpp/grpcpp.h>

#include <memory>
#include <type_traits>

#include "sluice/balancer/retry_state.h"
#include "sluice/client/balancer.h"

namespace sluice::client {

// Blocking unary call. `method` is the generated blocking stub method.
template <typename Stub, typename Request, typename Response>
grpc::Status UnaryCall(Balancer& balancer,
                       grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                    Response*),
                       const CallOptions& options, const Request& request, Response* response) {
  return balancer.Call(options, [&](const Backend& backend, grpc::ClientContext* context) {
    response->Clear();
    return (backend.StubFor<Stub>().*method)(context, request, response);
  });
}

// Callback (non-blocking) unary call with the generated callback API. `start` issues the call
// on a stub, e.g.
//   [](Greeter::Stub& stub, grpc::ClientContext* c, const HelloRequest* q, HelloReply* r,
//      std::function<void(grpc::Status)> f) { stub.async()->SayHello(c, q, r, std::move(f)); }
// `request` and `response` must stay alive until `done` runs; `done` runs on a gRPC thread
// (or on the caller's thread if the call fails before it starts).
template <typename Stub, typename Request, typename Response, typename Start>
void UnaryCallAsync(Balancer& balancer, CallOptions options, const Request* request,
                    Response* response, Start start, std::function<void(grpc::Status)> done) {
  if constexpr (std::is_empty_v<Start> && std::is_default_constructible_v<Start>) {
    // A captureless `start` (the usual lambda) is made again where it is used, so the attempt
    // captures two pointers only and fits in std::function's own storage: no allocation.
    balancer.CallAsync(
        std::move(options),
        [request, response](const Backend& backend, grpc::ClientContext* context,
                            std::function<void(grpc::Status)> finished) {
          response->Clear();
          Start{}(backend.StubFor<Stub>(), context, request, response, std::move(finished));
        },
        std::move(done));
  } else {
    balancer.CallAsync(
        std::move(options),
        [request, response, start](const Backend& backend, grpc::ClientContext* context,
                                   std::function<void(grpc::Status)> finished) {
          response->Clear();
          start(backend.StubFor<Stub>(), context, request, response, std::move(finished));
        },
        std::move(done));
  }
}

// A stream (any of the three streaming kinds) balanced once when it opens. Keep the
// StreamCall for the stream's life and call Finish with its final status; destroying it
// without Finish counts the stream as cancelled.
class StreamCall {
 public:
  static absl::StatusOr<StreamCall> Open(Balancer& balancer, const CallOptions& options);
  StreamCall(StreamCall&&) = default;
  StreamCall& operator=(StreamCall&&) = default;
  ~StreamCall();

  const std::shared_ptr<grpc::Channel>& channel() const { return backend_->channel(); }
  grpc::ClientContext* context() const { return context_.get(); }
  const std::string& address() const { return backend_->address(); }
  void Finish(const grpc::Status& status);

 private:
  StreamCall(Balancer* balancer, std::shared_ptr<Backend> backend,
             std::unique_ptr<grpc::ClientContext> context, std::unique_ptr<RetryState> retry,
             absl::Time started)
      : balancer_(balancer),
        backend_(std::move(backend)),
        context_(std::move(context)),
        retry_(std::move(retry)),
        started_(started) {}

  Balancer* balancer_ = nullptr;
  std::shared_ptr<Backend> backend_;
  std::unique_ptr<grpc::ClientContext> context_;
  // Counts the stream in the budget; a unique_ptr keeps StreamCall movable.
  std::unique_ptr<RetryState> retry_;
  absl::Time started_;
  bool finished_ = false;
};

}  // namespace sluice::client
