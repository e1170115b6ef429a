// A call's bytes between its two streams, and their flow-control credit: credit goes back to
// the sender only as the other side's session takes the bytes (end-to-end flow control), and a
// request's bytes are kept for a resend only while a retry can still use them.
#include <algorithm>

#include "sluice/proxy/call.h"

namespace sluice::proxy {
void Call::Recycle() {
  request_headers_.clear();
  path_.clear();
  req_buf_.Clear();  // each keeps one block; a large message's others are freed
  resp_buf_.Clear();
  resp_pending_.clear();
  resp_trailers_.clear();
  backend_.reset();
  previous_backend_.reset();
  retry_.reset();
}

void Call::Account() {
  const int64_t now = static_cast<int64_t>(req_buf_.size() + resp_buf_.size());
  metrics_->buffered_bytes.fetch_add(now - accounted_bytes_, std::memory_order_relaxed);
  accounted_bytes_ = now;
}

void Call::OnRequestData(const uint8_t* data, size_t len) {
  if (phase_ == CallPhase::kFinished) {
    // Nobody will forward these bytes: give the credit back at once.
    req_received_ += len;
    req_consumed_ += len;
    client_->Consume(client_stream_, len);
    return;
  }
  req_buf_.Append(reinterpret_cast<const char*>(data), len);
  req_received_ += len;
  if (retry_copy_ == RetryCopy::kKept && req_buf_.size() > host_->options().retry_buffer_limit) {
    retry_copy_ = RetryCopy::kReleased;  // too big to resend: this call will not be retried
  }
  Account();
  ResumeRequest();
}

void Call::OnRequestEnd() {
  request_ = RequestState::kComplete;
  ResumeRequest();
}

ssize_t Call::PlanRequestBody(size_t length, uint32_t* flags) {
  const size_t unsent = req_buf_.size() - (req_sent_ - req_base_);
  const size_t n = std::min(length, unsent);
  if (n == unsent) {  // this frame takes everything there is
    if (request_ == RequestState::kComplete) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      request_feed_ = BodyFeed::kDeferred;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

void Call::TakeRequestBody(size_t n, absl::FunctionRef<void(const char*, size_t)> sink) {
  req_buf_.Read(req_sent_ - req_base_, n, sink);
  req_sent_ += n;
  if (req_sent_ > req_consumed_) {
    // The backend's session has the bytes now: the client may send as much again.
    client_->Consume(client_stream_, req_sent_ - req_consumed_);
    req_consumed_ = req_sent_;
  }
  if (retry_copy_ == RetryCopy::kReleased) DropSentRequest();
}

void Call::OnResponseData(const uint8_t* data, size_t len) {
  resp_buf_.Append(reinterpret_cast<const char*>(data), len);
  resp_unconsumed_ += len;
  resp_bytes_ += len;
  Account();
  ResumeResponse();
}

ssize_t Call::PlanResponseBody(size_t length, uint32_t* flags) {
  const size_t unsent = resp_buf_.size();
  const size_t n = std::min(length, unsent);
  if (n == unsent) {  // this frame takes everything there is
    if (response_ == ResponseState::kEnded) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!resp_trailers_.empty() && client_->SubmitTrailers(client_stream_, resp_trailers_)) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      }
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      response_feed_ = BodyFeed::kDeferred;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

void Call::TakeResponseBody(size_t n, absl::FunctionRef<void(const char*, size_t)> sink) {
  resp_buf_.Read(0, n, sink);
  resp_buf_.Drop(n);
  if (backend_side_ != nullptr && resp_unconsumed_ > 0) {
    const uint64_t credit = std::min<uint64_t>(n, resp_unconsumed_);
    backend_side_->Consume(backend_stream_, credit);
    resp_unconsumed_ -= credit;
  }
  Account();
}

void Call::ResumeResponse() {
  if (response_ == ResponseState::kNotStarted) return;
  const bool deferred = response_feed_ == BodyFeed::kDeferred;
  response_feed_ = BodyFeed::kFlowing;
  client_->ResumeBody(client_stream_, deferred);
}

void Call::ResumeRequest() {
  if (backend_side_ == nullptr) return;
  const bool deferred = request_feed_ == BodyFeed::kDeferred;
  request_feed_ = BodyFeed::kFlowing;
  backend_side_->ResumeBody(backend_stream_, deferred);
}

void Call::DetachBackend(uint32_t rst) {
  if (backend_side_ == nullptr) return;
  if (resp_unconsumed_ > 0) {
    backend_side_->Consume(backend_stream_, resp_unconsumed_);
    resp_unconsumed_ = 0;
  }
  backend_side_->Detach(backend_stream_, rst);
  backend_side_ = nullptr;
  backend_stream_ = 0;
}

void Call::DropRequest() {
  if (req_received_ > req_consumed_)
    client_->Consume(client_stream_, req_received_ - req_consumed_);
  req_consumed_ = req_received_;
  req_base_ = req_received_;
  req_sent_ = req_received_;
  req_buf_.Clear();
  retry_copy_ = RetryCopy::kReleased;
  Account();
}

void Call::ReleaseRetryCopy() {
  retry_copy_ = RetryCopy::kReleased;
  DropSentRequest();
}

void Call::DropSentRequest() {
  req_buf_.Drop(req_sent_ - req_base_);
  req_base_ = req_sent_;
  Account();
}

}  // namespace sluice::proxy
