// A call's lifecycle: the request's validation and route, attempts on backends, retries, and
// the answer the client gets. The bytes in between and their credit are in call_flow.cc.
#include "sluice/proxy/call.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "sluice/balancer/hash.h"
#include "sluice/core/log.h"
#include "sluice/health/load_report.h"
#include "sluice/proxy/grpc_util.h"
#include "sluice/proxy/router.h"

namespace sluice::proxy {
namespace {

// The gRPC status a backend's headers carry; UNKNOWN when absent or malformed.
grpc::StatusCode StatusOf(const HeaderBlock& headers) {
  const std::optional<absl::string_view> value = headers.Find("grpc-status");
  int code = 0;
  if (!value || !absl::SimpleAtoi(*value, &code) || code < 0 || code > 16) {
    return grpc::StatusCode::UNKNOWN;
  }
  return static_cast<grpc::StatusCode>(code);
}

// gRPC's health-check stream, as clients checking the proxy itself send it.
constexpr absl::string_view kHealthWatchMethod = "/grpc.health.v1.Health/Watch";

}  // namespace

void Call::Begin(CallHost* host, uint64_t id, ClientSide* client, int32_t stream) {
  host_ = host;
  metrics_ = &host->metrics();
  id_ = id;
  begun_ = host->Now();
  outcome_ = grpc::StatusCode::UNKNOWN;
  resp_bytes_ = 0;
  phase_ = CallPhase::kReceivingHeaders;
  attempt_ = AttemptState::kNone;
  response_ = ResponseState::kNotStarted;
  request_ = RequestState::kReceiving;
  retry_copy_ = RetryCopy::kKept;
  request_feed_ = BodyFeed::kFlowing;
  response_feed_ = BodyFeed::kFlowing;
  client_ = client;
  client_stream_ = stream;
  backend_side_ = nullptr;
  backend_stream_ = 0;
  request_headers_.clear();
  request_header_bytes_ = 0;
  path_.clear();
  deadline_ = absl::InfiniteFuture();
  idempotent_ = false;
  accounting_ = LoadAccounting::kCounted;
  hash_key_.reset();
  balancer_ = nullptr;
  req_buf_.Clear();
  req_base_ = req_sent_ = req_received_ = req_consumed_ = 0;
  resp_buf_.Clear();
  resp_unconsumed_ = 0;
  resp_pending_.clear();
  resp_trailers_.clear();
  accounted_bytes_ = 0;
  backend_.reset();
  previous_backend_.reset();
  backend_metrics_ = nullptr;
  retry_.reset();
  deadline_timer_ = attempt_timer_ = retry_timer_ = kNoTimer;
}

void Call::OnRequestHeadersDone(bool end_stream) {
  if (end_stream) request_ = RequestState::kComplete;
  phase_ = CallPhase::kPicking;
  OnRequestHeadersComplete();
}

void Call::OnRequestHeadersComplete() {
  ProxyMetrics& metrics = host_->metrics();
  const HeaderBlock& h = request_headers_;
  const std::optional<absl::string_view> method = h.Find(":method");
  const std::optional<absl::string_view> path = h.Find(":path");
  const std::optional<absl::string_view> content_type = h.Find("content-type");
  if (!path || path->empty() || (*path)[0] != '/') {
    metrics.rejected_requests_total.fetch_add(1, std::memory_order_relaxed);
    LogWarning("sluice proxy: request without a valid :path from ", client_->peer());
    RespondHttpError(400, grpc::StatusCode::INTERNAL, "missing or invalid :path");
    return;
  }
  path_.assign(path->data(), path->size());
  if (!method || *method != "POST") {
    metrics.rejected_requests_total.fetch_add(1, std::memory_order_relaxed);
    LogWarning("sluice proxy: non-POST request (", method ? *method : "none", ") for ", *path,
               " from ", client_->peer());
    RespondHttpError(405, grpc::StatusCode::INTERNAL,
                     absl::StrCat("gRPC requires POST, got ", method ? *method : "none"));
    return;
  }
  if (!content_type || !absl::StartsWith(*content_type, "application/grpc")) {
    metrics.rejected_requests_total.fetch_add(1, std::memory_order_relaxed);
    LogWarning("sluice proxy: non-gRPC content-type '", content_type ? *content_type : "", "' for ",
               *path, " from ", client_->peer());
    RespondHttpError(
        415, grpc::StatusCode::INTERNAL,
        absl::StrCat("invalid gRPC content-type '", content_type ? *content_type : "", "'"));
    return;
  }
  if (const std::optional<absl::string_view> timeout = h.Find("grpc-timeout")) {
    if (auto d = ParseGrpcTimeout(*timeout)) {
      deadline_ = host_->Now() + *d;
      deadline_timer_ = host_->Schedule(deadline_, TimerKind::kCallDeadline, this);
    }
  }
  balancer_ = host_->RouteFor(path_);
  if (balancer_ == nullptr) {
    metrics.rejected_requests_total.fetch_add(1, std::memory_order_relaxed);
    RespondError(grpc::StatusCode::UNIMPLEMENTED,
                 absl::StrCat("sluice proxy has no route for service '", ServiceOfPath(path_), "'"),
                 false);
    return;
  }
  idempotent_ = balancer_->IsIdempotent(path_);
  if (path_ == kHealthWatchMethod) accounting_ = LoadAccounting::kNotCounted;
  retry_.emplace(balancer_->retry_budget(), balancer_->options().retry, idempotent_, deadline_);
  const std::string& hash_header = host_->options().hash_header;
  if (!hash_header.empty()) {
    if (const std::optional<absl::string_view> key = h.Find(hash_header)) {
      hash_key_ = HashCallKey(*key);
    }
  }
  StartAttempt();
}

void Call::StartAttempt() {
  phase_ = CallPhase::kPicking;
  absl::StatusOr<std::shared_ptr<client::Backend>> picked =
      balancer_->Pick(deadline_, hash_key_, previous_backend_.get(), /*fail_fast=*/true);
  if (!picked.ok() && balancer_->ReadyCount() > 0) {
    // An endpoint became ready between the pick's snapshot and ReadyCount's (a backend's first
    // connection completing as the first call arrives): pick from the new one before deciding.
    picked = balancer_->Pick(deadline_, hash_key_, previous_backend_.get(), /*fail_fast=*/true);
  }
  if (!picked.ok()) {
    const absl::Time now = host_->Now();
    const absl::Duration pick_wait = host_->options().pick_wait;
    if (pick_wait > absl::ZeroDuration() && now < deadline_ && balancer_->ReadyCount() == 0) {
      // No endpoint is pickable (startup, or every backend left or failed a moment ago): as a
      // library caller does, wait for one off this thread, until the call's deadline or at most
      // pick_wait. A call with a deadline waits through refused connects (a backend restarting);
      // one without, as gRPC's calls without wait_for_ready, only while some backend is still
      // connecting.
      host_->WaitForPick(this, *balancer_, std::min(deadline_, now + pick_wait), hash_key_,
                         previous_backend_.get(), deadline_ != absl::InfiniteFuture());
      return;
    }
    RespondError(grpc::StatusCode::UNAVAILABLE, std::string(picked.status().message()), false);
    return;
  }
  AttachToBackend(std::move(*picked));
}

void Call::OnPicked(absl::StatusOr<std::shared_ptr<client::Backend>> picked) {
  if (phase_ != CallPhase::kPicking) return;
  if (!picked.ok()) {
    RespondError(grpc::StatusCode::UNAVAILABLE, std::string(picked.status().message()), false);
    return;
  }
  AttachToBackend(std::move(*picked));
}

void Call::AttachToBackend(std::shared_ptr<client::Backend> backend) {
  const absl::Time now = host_->Now();
  backend_ = std::move(backend);
  backend_metrics_ = host_->MetricsFor(backend_->address());
  attempt_start_ = now;
  phase_ = CallPhase::kAttempting;
  attempt_ = AttemptState::kAwaitingResponse;
  const absl::Time attempt_deadline = retry_->StartAttempt(now);
  if (accounting_ == LoadAccounting::kCounted) balancer_->OnCallStarted(*backend_);

  BackendSide* side = host_->BackendFor(*backend_, *balancer_);
  if (side == nullptr) {
    RetryOrFail(grpc::StatusCode::UNAVAILABLE,
                absl::StrCat("cannot connect to backend ", backend_->address()),
                AttemptEnd::kNeverReached);
    return;
  }
  std::string timeout;
  if (deadline_ != absl::InfiniteFuture()) {
    // The backend gets what is left of the call's time, which matters after a retry.
    const int64_t ms = std::max<int64_t>(
        1, absl::ToInt64Milliseconds(absl::Ceil(deadline_ - now, absl::Milliseconds(1))));
    timeout = ms < 100'000'000 ? absl::StrCat(ms, "m") : absl::StrCat(ms / 1000 + 1, "S");
  }
  const bool body = !(request_ == RequestState::kComplete && req_buf_.empty());
  const int32_t stream = side->SubmitRequest(this, request_headers_, timeout, body);
  if (stream < 0) {
    RetryOrFail(grpc::StatusCode::UNAVAILABLE,
                absl::StrCat("cannot open a stream to backend ", backend_->address(), ": ",
                             nghttp2_strerror(stream)),
                AttemptEnd::kNeverReached);
    return;
  }
  backend_side_ = side;
  backend_stream_ = stream;
  req_sent_ = req_base_;
  request_feed_ = BodyFeed::kFlowing;
  // A backend that accepts the stream but never answers (paused, wedged) shows no status code;
  // only a timer catches it. RetryState gives idempotent methods a sooner attempt deadline; calls
  // still fully buffered only: others cannot go elsewhere, so cutting them short would just fail
  // them.
  CancelTimer(&attempt_timer_);
  if (retry_copy_ == RetryCopy::kKept && attempt_deadline < deadline_) {
    attempt_timer_ = host_->Schedule(attempt_deadline, TimerKind::kAttemptTimeout, this);
  }
}

void Call::OnTimer(TimerKind kind) {
  switch (kind) {
    case TimerKind::kCallDeadline:
      deadline_timer_ = kNoTimer;
      OnDeadline();
      return;
    case TimerKind::kAttemptTimeout:
      attempt_timer_ = kNoTimer;
      OnAttemptTimeout();
      return;
    case TimerKind::kRetryPause:
      retry_timer_ = kNoTimer;
      if (phase_ == CallPhase::kPicking) StartAttempt();
      return;
    default:
      return;
  }
}

void Call::OnDeadline() {
  if (phase_ == CallPhase::kFinished || phase_ == CallPhase::kReleased) return;
  host_->metrics().deadline_exceeded_total.fetch_add(1, std::memory_order_relaxed);
  DetachBackend(NGHTTP2_CANCEL);
  FinishAttempt(grpc::StatusCode::DEADLINE_EXCEEDED);
  RespondError(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded (grpc-timeout)", false);
}

void Call::OnAttemptTimeout() {
  // Past the point of resending (more request bytes than the retry buffer keeps), the attempt
  // may use the call's whole deadline, as for non-idempotent methods.
  if (attempt_ != AttemptState::kAwaitingResponse || backend_side_ == nullptr ||
      retry_copy_ != RetryCopy::kKept) {
    return;
  }
  host_->metrics().attempt_timeouts_total.fetch_add(1, std::memory_order_relaxed);
  const std::string message =
      absl::StrCat("backend ", backend_->address(), " gave no answer within attempt timeout (",
                   absl::FormatDuration(balancer_->options().retry.attempt_timeout), "); ",
                   attempts(), " attempt(s) made");
  LogDebug("sluice proxy: ", path_, ": ", message);
  DetachBackend(NGHTTP2_CANCEL);
  // UNAVAILABLE, not DEADLINE_EXCEEDED: it counts as the backend's failure for outlier
  // detection, and the client's own deadline has not passed.
  RetryOrFail(grpc::StatusCode::UNAVAILABLE, message, AttemptEnd::kTimedOut);
}

void Call::FinishAttempt(grpc::StatusCode code) {
  if (attempt_ == AttemptState::kNone) return;
  attempt_ = AttemptState::kNone;
  outcome_ = code;
  CancelTimer(&attempt_timer_);
  const absl::Time now = host_->Now();
  const absl::Duration latency = now - attempt_start_;
  if (accounting_ == LoadAccounting::kCounted) {
    balancer_->OnCallFinished(*backend_, code, latency, now);
  }
  backend_metrics_->Record(static_cast<int>(code), latency);
  previous_backend_ = std::move(backend_);
  backend_ = nullptr;
}

bool Call::TryRetry(grpc::StatusCode code, const std::string& message, AttemptEnd end) {
  // The request can be sent again only if the client has seen nothing yet and every byte sent
  // is still kept.
  const bool resendable =
      response_ == ResponseState::kNotStarted && retry_copy_ == RetryCopy::kKept;
  FinishAttempt(code);
  const RetryDecision decision =
      retry_->OnAttemptEnded(end, static_cast<absl::StatusCode>(code), host_->Now(), resendable);
  if (!decision.retry()) {
    LogDebug("sluice proxy: not retrying ", path_, " (", GiveUpReasonName(decision.why),
             ", attempts ", attempts(), ", idempotent ", idempotent_, "): ", message);
    return false;
  }
  host_->metrics().retries_total.fetch_add(1, std::memory_order_relaxed);
  LogDebug("sluice proxy: retrying ", path_, " after: ", message);
  phase_ = CallPhase::kPicking;
  resp_pending_.clear();
  if (decision.verdict == RetryDecision::Verdict::kRetryLater) {
    retry_timer_ = host_->Schedule(decision.retry_at, TimerKind::kRetryPause, this);
  } else {
    host_->RetrySoon(this);
  }
  return true;
}

void Call::RetryOrFail(grpc::StatusCode code, const std::string& message, AttemptEnd end) {
  if (!TryRetry(code, message, end)) RespondError(code, message, true);
}

void Call::Finish() {
  phase_ = CallPhase::kFinished;
  // Gives back a retry slot still held and the call's place in the budget.
  if (retry_) retry_->Finish();
  CancelTimers();
}

void Call::CancelTimers() {
  CancelTimer(&deadline_timer_);
  CancelTimer(&attempt_timer_);
  CancelTimer(&retry_timer_);
}

void Call::RespondError(grpc::StatusCode code, const std::string& message,
                        bool keep_buffered_response) {
  DetachBackend(NGHTTP2_CANCEL);
  FinishAttempt(code);
  outcome_ = code;
  Finish();
  DropRequest();
  const std::string code_text = absl::StrCat(static_cast<int>(code));
  const std::string encoded_message = PercentEncodeGrpcMessage(message);
  if (response_ == ResponseState::kNotStarted) {
    HeaderBlock headers;
    headers.Add(":status", "200");
    headers.Add("content-type", "application/grpc");
    headers.Add("grpc-status", code_text);
    headers.Add("grpc-message", encoded_message);
    client_->SubmitResponse(client_stream_, headers, false);
    response_ = ResponseState::kEnded;
  } else if (response_ == ResponseState::kStreaming) {
    if (!keep_buffered_response) {
      resp_buf_.Clear();
      Account();
    }
    resp_trailers_.clear();
    resp_trailers_.Add("grpc-status", code_text);
    resp_trailers_.Add("grpc-message", encoded_message);
    response_ = ResponseState::kEnded;
    ResumeResponse();
  }
}

void Call::RespondHttpError(int http_status, grpc::StatusCode code, const std::string& message) {
  Finish();
  DropRequest();
  HeaderBlock headers;
  headers.Add(":status", absl::StrCat(http_status));
  headers.Add("content-type", "application/grpc");
  headers.Add("grpc-status", absl::StrCat(static_cast<int>(code)));
  headers.Add("grpc-message", PercentEncodeGrpcMessage(message));
  client_->SubmitResponse(client_stream_, headers, false);
  response_ = ResponseState::kEnded;
}

void Call::OnClientStreamClosed() {
  // Return the credit of request bytes nobody will forward now.
  DropRequest();
  // Cancel the backend's stream too.
  DetachBackend(NGHTTP2_CANCEL);
  if (phase_ != CallPhase::kFinished) {
    FinishAttempt(grpc::StatusCode::CANCELLED);
    outcome_ = grpc::StatusCode::CANCELLED;
    Finish();
  }
  phase_ = CallPhase::kReleased;
  host_->Release(this);
}

void Call::OnResponseHeadersDone(bool end_stream) {
  const std::optional<absl::string_view> status = resp_pending_.Find(":status");
  if (status && !status->empty() && (*status)[0] == '1' && !end_stream) {
    return;  // 1xx informational: not forwarded
  }
  attempt_ = AttemptState::kAnswered;
  // The backend answered: a streaming response may rightly take long from here.
  CancelTimer(&attempt_timer_);
  const grpc::StatusCode early = end_stream ? StatusOf(resp_pending_) : grpc::StatusCode::OK;
  if (idempotent_ &&
      (early == grpc::StatusCode::UNAVAILABLE || early == grpc::StatusCode::CANCELLED)) {
    // A trailers-only UNAVAILABLE of an idempotent method, or the CANCELLED a gRPC server gives
    // calls it had not started when it shuts down (the client did not cancel: its stream is
    // still open): another backend may do better.
    const std::optional<absl::string_view> message = resp_pending_.Find("grpc-message");
    if (TryRetry(early, message ? std::string(*message) : "", AttemptEnd::kAnswered)) {
      DetachBackend(NGHTTP2_NO_ERROR);
      return;
    }
    // No retry: the backend's own answer goes to the client below, as it is.
  }
  // The backend took the call: no more resending, so stop keeping what was sent.
  if (retry_copy_ == RetryCopy::kKept) ReleaseRetryCopy();
  if (end_stream) {
    // Trailers-only: the whole answer is this one block.
    const grpc::StatusCode code = StatusOf(resp_pending_);
    if (code != grpc::StatusCode::OK) {
      const std::optional<absl::string_view> message = resp_pending_.Find("grpc-message");
      LogDebug("sluice proxy: ", path_, " on ",
               backend_side_ != nullptr ? backend_side_->address() : std::string(),
               ": trailers-only status ", static_cast<int>(code), " ", message.value_or(""));
    }
    client_->SubmitResponse(client_stream_, resp_pending_, false);
    response_ = ResponseState::kEnded;
    Finish();
    FinishAttempt(code);
    DropRequest();
    return;
  }
  client_->SubmitResponse(client_stream_, resp_pending_, true);
  response_ = ResponseState::kStreaming;
}

void Call::OnResponseTrailers() {
  resp_trailers_.swap(resp_pending_);
  if (backend_ != nullptr && balancer_->wants_load_reports()) {
    if (const std::optional<absl::string_view> report =
            resp_trailers_.Find(health::kLoadReportTrailer)) {
      RecordLoadReport(*report);
    }
  }
  OnResponseEnd();
}

AccessRecord Call::ToAccessRecord(absl::Time now) const {
  AccessRecord record;
  // Wall-clock start for the reader; the duration itself is the host's clock.
  record.start = absl::Now() - (now - begun_);
  record.method = path_;
  record.client = client_ != nullptr ? absl::string_view(client_->peer()) : absl::string_view();
  const client::Backend* backend = backend_ != nullptr ? backend_.get() : previous_backend_.get();
  if (backend != nullptr) record.backend = backend->address();
  record.attempts = attempts();
  record.grpc_status = static_cast<int>(outcome_);
  record.latency = now - begun_;
  record.bytes_in = req_received_;
  record.bytes_out = resp_bytes_;
  return record;
}

void Call::RecordLoadReport(absl::string_view base64_value) {
  // -bin metadata travels base64-encoded in HTTP/2 (gRPC sends it unpadded); the trailer goes to
  // the client unchanged, this copy only feeds the backend's stats (weighted_round_robin).
  std::string bytes;
  if (!absl::Base64Unescape(base64_value, &bytes)) {
    LogDebug("sluice proxy: ", backend_->address(), " sent a ", health::kLoadReportTrailer,
             " trailer that is not base64; ignored");
    return;
  }
  health::RecordLoadReport(bytes, backend_->stats(), host_->Now());
}

void Call::OnResponseEnd() {
  if (phase_ == CallPhase::kFinished) return;
  response_ = ResponseState::kEnded;
  Finish();
  FinishAttempt(resp_trailers_.empty() ? grpc::StatusCode::UNKNOWN : StatusOf(resp_trailers_));
  // The backend answered before the client finished: nobody will forward the rest.
  if (request_ != RequestState::kComplete) DropRequest();
  ResumeResponse();
}

void Call::OnBackendStreamClosed(uint32_t error_code, uint64_t* unconsumed) {
  *unconsumed = resp_unconsumed_;
  resp_unconsumed_ = 0;
  backend_side_ = nullptr;
  backend_stream_ = 0;
  if (attempt_ == AttemptState::kNone || phase_ == CallPhase::kFinished) return;  // decided
  LogDebug("sluice proxy: ", path_, " on ", backend_->address(), ": stream closed early (",
           nghttp2_http2_strerror(error_code), "), response ",
           response_ != ResponseState::kNotStarted ? "started" : "not started");
  if (error_code == NGHTTP2_REFUSED_STREAM && attempt_ != AttemptState::kAnswered) {
    RetryOrFail(grpc::StatusCode::UNAVAILABLE,
                absl::StrCat("backend ", backend_->address(), " refused the stream"),
                AttemptEnd::kNeverReached);
    return;
  }
  if (response_ == ResponseState::kNotStarted) {
    RetryOrFail(grpc::StatusCode::UNAVAILABLE,
                absl::StrCat("backend ", backend_->address(), " reset the stream (",
                             nghttp2_http2_strerror(error_code), ")"),
                AttemptEnd::kAnswered);
    return;
  }
  // Mid-response reset: pass it on as a reset, as the backend did.
  FinishAttempt(error_code == NGHTTP2_CANCEL ? grpc::StatusCode::CANCELLED
                                             : grpc::StatusCode::UNAVAILABLE);
  Finish();
  client_->Reset(client_stream_, error_code == NGHTTP2_NO_ERROR
                                     ? static_cast<uint32_t>(NGHTTP2_INTERNAL_ERROR)
                                     : error_code);
}

void Call::OnBackendConnectionLost(bool never_connected) {
  const std::string address = backend_side_ != nullptr ? backend_side_->address() : std::string();
  backend_side_ = nullptr;
  backend_stream_ = 0;
  resp_unconsumed_ = 0;
  if (phase_ == CallPhase::kFinished) return;
  const std::string why = never_connected
                              ? absl::StrCat("cannot connect to backend ", address)
                              : absl::StrCat("lost the connection to backend ", address);
  if (response_ == ResponseState::kNotStarted) {
    RetryOrFail(grpc::StatusCode::UNAVAILABLE, why,
                never_connected ? AttemptEnd::kNeverReached : AttemptEnd::kAnswered);
  } else {
    RespondError(grpc::StatusCode::UNAVAILABLE, why, true);
  }
}

}  // namespace sluice::proxy
