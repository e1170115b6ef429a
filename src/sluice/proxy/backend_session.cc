#include "sluice/proxy/backend_session.h"

#include <sys/epoll.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "sluice/core/log.h"

namespace sluice::proxy {
namespace {

BackendSession* Session(void* user_data) { return static_cast<BackendSession*>(user_data); }

int OnBeginHeadersCb(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
  return Session(ud)->OnBeginHeaders(frame);
}
int OnHeaderCb(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
               const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
  return Session(ud)->OnHeader(frame,
                               absl::string_view(reinterpret_cast<const char*>(name), namelen),
                               absl::string_view(reinterpret_cast<const char*>(value), valuelen));
}
int OnFrameRecvCb(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
  return Session(ud)->OnFrameRecv(frame);
}
int OnDataChunkCb(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                  void* ud) {
  return Session(ud)->OnDataChunk(stream_id, data, len);
}
int OnStreamCloseCb(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* ud) {
  return Session(ud)->OnStreamClose(stream_id, error_code);
}
// Request DATA goes without a copy through nghttp2's buffers, as responses do on the client side.
ssize_t ReadRequestBodyCb(nghttp2_session*, int32_t stream_id, uint8_t*, size_t length,
                          uint32_t* flags, nghttp2_data_source*, void* ud) {
  Call* call = Session(ud)->FindStream(stream_id);
  if (call == nullptr) return NGHTTP2_ERR_DEFERRED;  // detached; its RST is queued
  const ssize_t n = call->PlanRequestBody(length, flags);
  if (n >= 0) *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  return n;
}
int SendRequestDataCb(nghttp2_session*, nghttp2_frame* frame, const uint8_t* frame_header,
                      size_t length, nghttp2_data_source*, void* ud) {
  return Session(ud)->SendDataFrame(frame, frame_header, length);
}

// One set for every backend session of the process (nghttp2 only reads them).
const nghttp2_session_callbacks* ClientCallbacks() {
  static nghttp2_session_callbacks* const callbacks = [] {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, OnBeginHeadersCb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, OnHeaderCb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, OnFrameRecvCb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, OnDataChunkCb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, OnStreamCloseCb);
    nghttp2_session_callbacks_set_send_data_callback(cbs, SendRequestDataCb);
    return cbs;
  }();
  return callbacks;
}

const nghttp2_option* ClientOptions() {
  static nghttp2_option* const options = [] {
    nghttp2_option* o = nullptr;
    nghttp2_option_new(&o);
    // Credit goes back only as the client's session takes the bytes: end-to-end flow control.
    nghttp2_option_set_no_auto_window_update(o, 1);
    return o;
  }();
  return options;
}

}  // namespace

BackendSession::BackendSession(ConnectionEnv* env, int fd, std::string address,
                               const TlsContext* tls, bool connected)
    : Connection(env, fd, std::move(address)), tls_(tls), last_used_(env->loop->now()) {
  // With TLS, even an immediate connect goes through the EPOLLOUT path, which starts TLS.
  phase_ = connected && tls == nullptr ? Phase::kOpen : Phase::kConnecting;
  const ProxyOptions& options = *env->options;
  nghttp2_session_client_new3(&session_, ClientCallbacks(), this, ClientOptions(),
                              env->session_mem);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options.stream_window},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(options.connection_window));
  Register(phase_ == Phase::kConnecting);
  env->metrics->upstream_connections.fetch_add(1, std::memory_order_relaxed);
}

BackendSession::~BackendSession() {
  env_->metrics->upstream_connections.fetch_sub(1, std::memory_order_relaxed);
}

uint32_t BackendSession::remote_max_streams() const {
  return nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

void BackendSession::CloseIfIdle(absl::Duration idle) {
  if (dead() || stream_count() > 0 || availability_ == Availability::kDraining ||
      env_->loop->now() - last_used_ < idle) {
    return;
  }
  availability_ = Availability::kDraining;
  nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
  MarkDirty();
}

void BackendSession::OnIo(uint32_t events) {
  if (dead()) return;
  if (phase_ != Phase::kConnecting) {
    Connection::OnIo(events);
    return;
  }
  const int err = transport_.ConnectError();
  if (err != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
    env_->metrics->upstream_connects_failed.fetch_add(1, std::memory_order_relaxed);
    MarkDead(absl::StrCat("connect failed: ", strerror(err != 0 ? err : ECONNREFUSED)));
    return;
  }
  if ((events & EPOLLOUT) == 0) return;
  if (tls_ != nullptr) {
    transport_.StartClientTls(*tls_, peer());
    phase_ = Phase::kHandshaking;
    Handshake();  // open once the handshake is done
    return;
  }
  phase_ = Phase::kOpen;
  MarkDirty();
}

bool BackendSession::OnHandshakeDone() {
  if (transport_.NegotiatedH2()) return true;
  LogWarning("sluice proxy: backend ", peer(), " did not agree to ALPN h2");
  MarkDead("no ALPN h2");
  return false;
}

void BackendSession::TellReadiness(BackendReadiness* readiness) {
  if (readiness == nullptr) return;
  if (std::find(readiness_.begin(), readiness_.end(), readiness) == readiness_.end()) {
    readiness_.push_back(readiness);
  }
  // Asked again (a probe after the endpoint left the set and came back): answer again.
  if (confirmation_ == Confirmation::kConfirmed && accepts_streams()) {
    readiness->OnConnected(peer());
  }
}

void BackendSession::OnClosed() {
  const bool never_connected = phase_ != Phase::kOpen;
  if (confirmation_ == Confirmation::kAwaitingSettings) {
    for (BackendReadiness* readiness : readiness_) readiness->OnConnectFailed(peer());
  } else if (availability_ == Availability::kOpen) {
    // Neither a GOAWAY from the backend nor our idle close: the backend went away.
    for (BackendReadiness* readiness : readiness_) readiness->OnConnectionLost(peer());
  }
  for (Call* call : TakeStreams()) call->OnBackendConnectionLost(never_connected);
}

int32_t BackendSession::SubmitRequest(Call* call, const HeaderBlock& headers,
                                      absl::string_view timeout, bool body) {
  if (timeout.empty()) {
    headers.ToNv(&env_->nva);
  } else {
    headers.ToNv(&env_->nva, "grpc-timeout", timeout);
  }
  nghttp2_data_provider provider{};
  provider.read_callback = ReadRequestBodyCb;
  const int32_t stream = nghttp2_submit_request(
      session_, nullptr, env_->nva.data(), env_->nva.size(), body ? &provider : nullptr, nullptr);
  if (stream < 0) return stream;
  AddStream(stream, call);
  last_used_ = env_->loop->now();
  MarkDirty();
  return stream;
}

void BackendSession::ResumeBody(int32_t stream, bool was_deferred) {
  if (was_deferred) nghttp2_session_resume_data(session_, stream);
  MarkDirty();
}

bool BackendSession::TakeBody(Call& call, int32_t stream_id, size_t n,
                              absl::FunctionRef<void(const char*, size_t)> sink) {
  // A retried call's earlier attempt may still have a frame queued here: not its bytes now.
  if (!call.OwnsBackendStream(this, stream_id)) return false;
  call.TakeRequestBody(n, sink);
  return true;
}

void BackendSession::Consume(int32_t stream, size_t bytes) {
  nghttp2_session_consume(session_, stream, bytes);
  MarkDirty();
}

void BackendSession::Detach(int32_t stream, uint32_t error_code) {
  if (error_code == NGHTTP2_NO_ERROR &&
      nghttp2_session_get_stream_local_close(session_, stream) == 0) {
    // The backend is done but our side of the stream is not: end it, or it would hold one of
    // the connection's stream slots until the backend resets it.
    error_code = NGHTTP2_CANCEL;
  }
  if (error_code != NGHTTP2_NO_ERROR) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, error_code);
  }
  EraseStream(stream);
  MarkDirty();
}

int BackendSession::OnBeginHeaders(const nghttp2_frame* frame) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  if (Call* call = FindStream(frame->hd.stream_id)) call->OnResponseHeadersBegin();
  return 0;
}

int BackendSession::OnHeader(const nghttp2_frame* frame, absl::string_view name,
                             absl::string_view value) {
  if (Call* call = FindStream(frame->hd.stream_id)) call->OnResponseHeader(name, value);
  return 0;
}

int BackendSession::OnFrameRecv(const nghttp2_frame* frame) {
  if (frame->hd.type == NGHTTP2_SETTINGS && confirmation_ == Confirmation::kAwaitingSettings &&
      (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
    confirmation_ = Confirmation::kConfirmed;
    for (BackendReadiness* readiness : readiness_) readiness->OnConnected(peer());
    return 0;
  }
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    // No new streams here; nghttp2 closes streams above last-stream-id as REFUSED_STREAM,
    // which retries them elsewhere.
    availability_ = Availability::kGoawayReceived;
    LogInfo("sluice proxy: backend ", peer(), " sent GOAWAY (last stream ",
            frame->goaway.last_stream_id, ")");
    return 0;
  }
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  Call* call = FindStream(frame->hd.stream_id);
  if (call == nullptr) return 0;
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
      call->OnResponseHeadersDone(end_stream);
    } else if (end_stream) {
      call->OnResponseTrailers();
    }
    return 0;
  }
  if (end_stream) call->OnResponseEnd();
  return 0;
}

int BackendSession::OnDataChunk(int32_t stream_id, const uint8_t* data, size_t len) {
  Call* call = FindStream(stream_id);
  if (call == nullptr) {
    nghttp2_session_consume(session_, stream_id, len);
    return 0;
  }
  call->OnResponseData(data, len);
  return 0;
}

int BackendSession::OnStreamClose(int32_t stream_id, uint32_t error_code) {
  Call* call = FindStream(stream_id);
  if (call == nullptr) return 0;
  EraseStream(stream_id);
  uint64_t unconsumed = 0;
  call->OnBackendStreamClosed(error_code, &unconsumed);
  if (unconsumed > 0) {
    // The stream is over: its last bytes free the connection window now; they are bounded by
    // the stream window already.
    nghttp2_session_consume_connection(session_, unconsumed);
  }
  return 0;
}

}  // namespace sluice::proxy
