#pragma once

#include <grpcpp/support/status.h>
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sluice/balancer/retry_state.h"
#include "sluice/client/balancer.h"
#include "sluice/proxy/access_log.h"
#include "sluice/proxy/byte_queue.h"
#include "sluice/proxy/event_loop.h"
#include "sluice/proxy/grpc_util.h"
#include "sluice/proxy/header_block.h"
#include "sluice/proxy/metrics.h"
#include "sluice/proxy/proxy.h"

namespace sluice::proxy {

class Call;

// The client's end of a call: its stream on a client connection (ClientSession; a fake in
// tests). The call never sees a socket, only these operations on its stream.
class ClientSide {
 public:
  // Response headers; with `body`, DATA follows through Call::PlanResponseBody/TakeResponseBody.
  virtual void SubmitResponse(int32_t stream, const HeaderBlock& headers, bool body) = 0;
  // Trailers after the body; false if they could not be queued.
  virtual bool SubmitTrailers(int32_t stream, const HeaderBlock& trailers) = 0;
  // The body has bytes again: flush, and resume it first when it was deferred.
  virtual void ResumeBody(int32_t stream, bool was_deferred) = 0;
  // Gives `bytes` of request flow-control credit back to the client.
  virtual void Consume(int32_t stream, size_t bytes) = 0;
  virtual void Reset(int32_t stream, uint32_t error_code) = 0;
  virtual const std::string& peer() const = 0;

 protected:
  ~ClientSide() = default;
};

// A backend connection as one call's attempt uses it (BackendSession; a fake in tests).
class BackendSide {
 public:
  // Opens a stream for `call` with its request headers (grpc-timeout replaced by `timeout`
  // unless empty); with `body`, DATA follows through Call::PlanRequestBody/TakeRequestBody. The
  // stream id, or a negative nghttp2 error code.
  virtual int32_t SubmitRequest(Call* call, const HeaderBlock& headers, absl::string_view timeout,
                                bool body) = 0;
  virtual void ResumeBody(int32_t stream, bool was_deferred) = 0;
  // Gives `bytes` of response flow-control credit back to the backend.
  virtual void Consume(int32_t stream, size_t bytes) = 0;
  // The call leaves the stream: reset with `error_code`, or with NO_ERROR only end it if our
  // half is still open (it would hold one of the connection's stream slots otherwise).
  virtual void Detach(int32_t stream, uint32_t error_code) = 0;
  virtual const std::string& address() const = 0;

 protected:
  ~BackendSide() = default;
};

// What a call needs from its worker: time and timers, routes, backend connections, waiting for
// an endpoint, and the end of the call.
class CallHost {
 public:
  virtual absl::Time Now() const = 0;
  virtual TimerId Schedule(absl::Time at, TimerKind kind, Call* call) = 0;
  virtual void Cancel(TimerId id) = 0;
  virtual const ProxyOptions& options() const = 0;
  virtual ProxyMetrics& metrics() = 0;
  // The route's balancer for a request path; null: no route.
  virtual client::Balancer* RouteFor(absl::string_view path) = 0;
  // A connection to `backend` for the route of `balancer`; null: cannot connect.
  virtual BackendSide* BackendFor(const client::Backend& backend,
                                  const client::Balancer& balancer) = 0;
  virtual BackendMetrics* MetricsFor(const std::string& address) = 0;
  // Picks from `balancer` off this thread, waiting for an endpoint until `until` (without
  // `wait_for_ready`, only while some endpoint is still connecting); the result comes back
  // through Call::OnPicked on this thread (unless the call is gone by then).
  virtual void WaitForPick(Call* call, client::Balancer& balancer, absl::Time until,
                           std::optional<uint64_t> hash_key, const client::Backend* avoid,
                           bool wait_for_ready) = 0;
  // Calls Call::StartAttempt on the next loop pass.
  virtual void RetrySoon(Call* call) = 0;
  // The client's stream is closed and the call is over: the host frees or recycles it.
  virtual void Release(Call* call) = 0;

 protected:
  ~CallHost() = default;
};

// Where a call is in its life.
enum class CallPhase : uint8_t {
  kReceivingHeaders,  // the client's request headers are arriving
  kPicking,           // waiting for an endpoint, or for a retry's turn
  kAttempting,        // an attempt is open on a backend
  kFinished,          // the outcome is decided; the response may still be draining to the client
  kReleased,          // the client's stream is closed; the call belongs to its host again
};
// The current attempt, while the call is kAttempting.
enum class AttemptState : uint8_t { kNone, kAwaitingResponse, kAnswered };
// What the client has been sent.
enum class ResponseState : uint8_t { kNotStarted, kStreaming, kEnded };
// Whether the client has sent all of its request.
enum class RequestState : uint8_t { kReceiving, kComplete };
// Whether the request bytes sent are kept so another attempt can resend them all.
enum class RetryCopy : uint8_t { kKept, kReleased };
// A body nghttp2 is reading from the call: kDeferred when it found nothing to send and waits
// for ResumeBody.
enum class BodyFeed : uint8_t { kFlowing, kDeferred };
// Whether the call's attempts feed the balancer (calls in flight, latency, outlier detection).
// A health Watch (a client's library checking the proxy) is a stream that lives as long as the
// client: counted, it would look like a call stuck on one backend.
enum class LoadAccounting : uint8_t { kCounted, kNotCounted };

// One gRPC call through the proxy: a client stream and, while an attempt is open, a backend
// stream. A state machine fed by both sessions and by its host's timers; it owns the request
// and response bytes in between and their flow-control credit, and decides retries. It knows
// no sockets, so it is tested with fake sides and a fake clock (tests/proxy/call_test.cc).
class Call {
 public:
  // The most request header bytes a call accepts (names and values, 32 bytes more per field as
  // HTTP/2 counts them).
  static constexpr size_t kMaxRequestHeaderBytes = 64 << 10;

  Call() = default;
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  // A new call on `client`'s stream `stream` (or a recycled one: every state is reset, the
  // buffers keep some capacity).
  void Begin(CallHost* host, uint64_t id, ClientSide* client, int32_t stream);
  // Empties the buffers for reuse; a large message's capacity is not kept.
  void Recycle();
  uint64_t id() const { return id_; }
  CallPhase phase() const { return phase_; }
  AttemptState attempt_state() const { return attempt_; }
  ResponseState response_state() const { return response_; }
  RetryCopy retry_copy() const { return retry_copy_; }
  // Attempts started, transparent ones included.
  int attempts() const { return retry_ ? retry_->attempts() : 0; }
  const std::string& path() const { return path_; }
  int32_t client_stream() const { return client_stream_; }
  // Bytes held for this call (request and response), as counted in ProxyMetrics.
  int64_t buffered_bytes() const { return accounted_bytes_; }
  // The call as the access log tells it, at its release (`now` on the host's clock).
  AccessRecord ToAccessRecord(absl::Time now) const;

  // From the client's session.
  // A request header; false when the headers are too large (the stream is reset). Inline: it
  // runs for every header of every call.
  bool OnRequestHeader(absl::string_view name, absl::string_view value) {
    if (IsHopByHopHeader(name)) return true;
    request_header_bytes_ += name.size() + value.size() + 32;
    if (request_header_bytes_ > kMaxRequestHeaderBytes) return false;
    request_headers_.Add(name, value);
    return true;
  }
  void OnRequestHeadersDone(bool end_stream);
  void OnRequestData(const uint8_t* data, size_t len);
  void OnRequestEnd();
  // The client's stream is gone (done, reset, or its connection closed).
  void OnClientStreamClosed();
  // Whether the call's current streams are these (a queued frame of an earlier attempt is not).
  bool OwnsClientStream(const ClientSide* side, int32_t stream) const {
    return client_ == side && client_stream_ == stream;
  }
  bool OwnsBackendStream(const BackendSide* side, int32_t stream) const {
    return backend_side_ == side && backend_stream_ == stream;
  }

  // A response DATA frame in two steps, so its bytes can go from the call's buffer straight
  // into the connection's output (nghttp2's NO_COPY): Plan says how many bytes the frame takes
  // (at most `length`) and sets EOF (submitting trailers) when they are the last, or returns
  // NGHTTP2_ERR_DEFERRED when there are none yet; Take hands exactly those bytes to `sink` and
  // returns their flow-control credit to the backend.
  ssize_t PlanResponseBody(size_t length, uint32_t* flags);
  void TakeResponseBody(size_t n, absl::FunctionRef<void(const char*, size_t)> sink);

  // From the backend's session, for the current attempt's stream.
  void OnResponseHeadersBegin() { resp_pending_.clear(); }
  void OnResponseHeader(absl::string_view name, absl::string_view value) {
    if (!IsHopByHopHeader(name)) resp_pending_.Add(name, value);
  }
  void OnResponseHeadersDone(bool end_stream);
  void OnResponseTrailers();
  void OnResponseData(const uint8_t* data, size_t len);
  void OnResponseEnd();
  // The backend stream closed; `unconsumed` response bytes' credit must go back to the backend
  // connection (the stream's own credit no longer matters).
  void OnBackendStreamClosed(uint32_t error_code, uint64_t* unconsumed);
  // The backend connection closed under the attempt; `never_connected`: it never opened.
  void OnBackendConnectionLost(bool never_connected);
  // The same two steps for request DATA towards the backend (credit goes back to the client).
  ssize_t PlanRequestBody(size_t length, uint32_t* flags);
  void TakeRequestBody(size_t n, absl::FunctionRef<void(const char*, size_t)> sink);

  // From the host.
  void OnTimer(TimerKind kind);
  void OnPicked(absl::StatusOr<std::shared_ptr<client::Backend>> picked);
  void StartAttempt();
  bool WaitingForPick() const { return phase_ == CallPhase::kPicking; }

 private:
  // Request handling (call.cc).
  void OnRequestHeadersComplete();
  void AttachToBackend(std::shared_ptr<client::Backend> backend);
  void FinishAttempt(grpc::StatusCode code);
  // Ends an attempt that failed before the client saw a response: tries another backend if
  // the call's RetryState allows, or fails the call.
  void RetryOrFail(grpc::StatusCode code, const std::string& message, AttemptEnd end);
  // The retry half of RetryOrFail: true if another attempt is scheduled.
  bool TryRetry(grpc::StatusCode code, const std::string& message, AttemptEnd end);
  // Feeds a backend's ORCA load report (its trailer's value) into its stats.
  void RecordLoadReport(absl::string_view base64_value);
  void OnAttemptTimeout();
  void OnDeadline();
  // Ends the call towards the client with a gRPC status (trailers-only if nothing was sent).
  void RespondError(grpc::StatusCode code, const std::string& message, bool keep_buffered_response);
  void RespondHttpError(int http_status, grpc::StatusCode code, const std::string& message);
  void Finish();  // the outcome is decided: no further attempt starts
  void CancelTimers();
  void CancelTimer(TimerId* timer) {
    if (*timer == kNoTimer) return;
    host_->Cancel(*timer);
    *timer = kNoTimer;
  }

  // Bytes and flow-control credit (call_flow.cc).
  void DetachBackend(uint32_t rst);
  void DropRequest();
  void ReleaseRetryCopy();
  // Frees what the backend's session already took (no retry can want it any more).
  void DropSentRequest();
  void ResumeResponse();
  void ResumeRequest();
  void Account();

  CallHost* host_ = nullptr;
  ProxyMetrics* metrics_ = nullptr;  // the host's, kept: every Account() updates it
  uint64_t id_ = 0;
  CallPhase phase_ = CallPhase::kReleased;
  AttemptState attempt_ = AttemptState::kNone;
  ResponseState response_ = ResponseState::kNotStarted;
  RequestState request_ = RequestState::kReceiving;
  RetryCopy retry_copy_ = RetryCopy::kKept;
  BodyFeed request_feed_ = BodyFeed::kFlowing;
  BodyFeed response_feed_ = BodyFeed::kFlowing;

  ClientSide* client_ = nullptr;
  int32_t client_stream_ = 0;
  BackendSide* backend_side_ = nullptr;
  int32_t backend_stream_ = 0;

  absl::Time begun_;                                      // the host's clock, at Begin
  grpc::StatusCode outcome_ = grpc::StatusCode::UNKNOWN;  // the status the client got
  uint64_t resp_bytes_ = 0;                               // response bytes from backends

  // The request as received; the route and what it decides.
  HeaderBlock request_headers_;
  size_t request_header_bytes_ = 0;
  std::string path_;
  absl::Time deadline_ = absl::InfiniteFuture();
  bool idempotent_ = false;
  LoadAccounting accounting_ = LoadAccounting::kCounted;
  std::optional<uint64_t> hash_key_;  // ring_hash's key, from --hash-header
  client::Balancer* balancer_ = nullptr;

  // Request bytes: req_buf_ holds stream offsets [req_base_, req_base_ + size). While the
  // retry copy is kept, req_base_ stays 0 so another attempt can resend everything.
  ByteQueue req_buf_;
  uint64_t req_base_ = 0;
  uint64_t req_sent_ = 0;      // stream offset the current attempt has sent up to
  uint64_t req_received_ = 0;  // bytes received from the client
  uint64_t req_consumed_ = 0;  // bytes whose flow-control credit went back to the client

  // Response bytes from the backend, not yet handed to the client's session.
  ByteQueue resp_buf_;
  uint64_t resp_unconsumed_ = 0;  // received from the backend, credit not yet returned
  HeaderBlock resp_pending_;      // the header block being received
  HeaderBlock resp_trailers_;
  int64_t accounted_bytes_ = 0;

  // Attempts.
  std::shared_ptr<client::Backend> backend_;
  std::shared_ptr<client::Backend> previous_backend_;
  BackendMetrics* backend_metrics_ = nullptr;
  absl::Time attempt_start_;
  // Whether a failed attempt goes again (the library's policy and the route's budget, which
  // counts this call from its route until its end); set once the route is known.
  std::optional<RetryState> retry_;

  TimerId deadline_timer_ = kNoTimer;
  TimerId attempt_timer_ = kNoTimer;
  TimerId retry_timer_ = kNoTimer;
};

}  // namespace sluice::proxy
