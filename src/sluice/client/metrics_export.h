#pragma once

// The client library's metrics as Prometheus text, for a program to serve on its own HTTP
// endpoint: per endpoint, calls and their outcomes by gRPC status code, a latency histogram,
// calls in flight, failures as the balancer counts them, ejections and state.
//
//   sluice::client::MetricsExport metrics(*balancer);
//   auto server = metrics.Serve("127.0.0.1:9464");   // GET /metrics
//   grpc::Status status = sluice::client::UnaryCall(metrics, *balancer, &Greeter::Stub::SayHello,
//                                                   options, request, &reply);

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "sluice/client/balancer.h"
#include "sluice/client/call.h"
#include "sluice/core/call_metrics.h"
#include "sluice/core/http_server.h"

namespace sluice::client {

class MetricsExport {
 public:
  // `balancer` must outlive this object.
  explicit MetricsExport(const Balancer& balancer) : balancer_(balancer) {}

  // Wraps an attempt so that each one is counted for the endpoint it went to, by its status
  // and latency. The balancer's own in-flight, failure and ejection figures need no wrapping.
  Balancer::Attempt Instrument(Balancer::Attempt attempt);
  Balancer::AsyncAttempt InstrumentAsync(Balancer::AsyncAttempt attempt);

  // Counts one finished attempt on `address`.
  void Record(const std::string& address, grpc::StatusCode code, absl::Duration latency);

  // Prometheus text exposition format 0.0.4.
  std::string RenderPrometheus() const;

  // Serves GET /metrics (and / with a pointer to it) on "IP:PORT" until the server is
  // destroyed; it must not outlive this object.
  absl::StatusOr<std::unique_ptr<HttpServer>> Serve(const std::string& listen) const;

 private:
  CallMetrics& For(const std::string& address);

  const Balancer& balancer_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<CallMetrics>> endpoints_;
};

// UnaryCall (call.h) with each attempt counted in `metrics`.
template <typename Stub, typename Request, typename Response>
grpc::Status UnaryCall(MetricsExport& metrics, Balancer& balancer,
                       grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                    Response*),
                       const CallOptions& options, const Request& request, Response* response) {
  return balancer.Call(
      options, metrics.Instrument([&](const Backend& backend, grpc::ClientContext* context) {
        response->Clear();
        return (backend.StubFor<Stub>().*method)(context, request, response);
      }));
}

}  // namespace sluice::client
