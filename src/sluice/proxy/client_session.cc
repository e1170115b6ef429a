#include "sluice/proxy/client_session.h"

#include "sluice/core/log.h"

namespace sluice::proxy {
namespace {

// The most request header bytes a client may send (SETTINGS_MAX_HEADER_LIST_SIZE).
constexpr uint32_t kMaxRequestHeaderBytes = 64 << 10;
// Between GOAWAY's notice and the final GOAWAY: time for streams already in flight to arrive.
constexpr absl::Duration kGoawayNoticeLead = absl::Milliseconds(200);

ClientSession* Session(void* user_data) { return static_cast<ClientSession*>(user_data); }

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
int OnStreamCloseCb(nghttp2_session*, int32_t stream_id, uint32_t, void* ud) {
  return Session(ud)->OnStreamClose(stream_id);
}
int OnInvalidFrameCb(nghttp2_session*, const nghttp2_frame* frame, int error, void* ud) {
  LogWarning("sluice proxy: invalid frame (type ", static_cast<int>(frame->hd.type), ", stream ",
             frame->hd.stream_id, ") from ", Session(ud)->peer(), ": ", nghttp2_strerror(error));
  return 0;
}
// Response DATA goes without a copy through nghttp2's buffers: the read callback only says how
// much the frame takes; SendResponseDataCb then moves the bytes into the connection's output.
ssize_t ReadResponseBodyCb(nghttp2_session*, int32_t stream_id, uint8_t*, size_t length,
                           uint32_t* flags, nghttp2_data_source*, void* ud) {
  Call* call = Session(ud)->FindStream(stream_id);
  if (call == nullptr) return NGHTTP2_ERR_DEFERRED;
  const ssize_t n = call->PlanResponseBody(length, flags);
  if (n >= 0) *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  return n;
}
int SendResponseDataCb(nghttp2_session*, nghttp2_frame* frame, const uint8_t* frame_header,
                       size_t length, nghttp2_data_source*, void* ud) {
  return Session(ud)->SendDataFrame(frame, frame_header, length);
}

// One set for every client session of the process (nghttp2 only reads them).
const nghttp2_session_callbacks* ServerCallbacks() {
  static nghttp2_session_callbacks* const callbacks = [] {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, OnBeginHeadersCb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, OnHeaderCb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, OnFrameRecvCb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, OnDataChunkCb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, OnStreamCloseCb);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, OnInvalidFrameCb);
    nghttp2_session_callbacks_set_send_data_callback(cbs, SendResponseDataCb);
    return cbs;
  }();
  return callbacks;
}

const nghttp2_option* ServerOptions() {
  static nghttp2_option* const options = [] {
    nghttp2_option* o = nullptr;
    nghttp2_option_new(&o);
    // Credit goes back only as the other side drains the bytes: end-to-end flow control.
    nghttp2_option_set_no_auto_window_update(o, 1);
    // Rapid-reset defence: a client resetting streams faster than this loses its connection.
    nghttp2_option_set_stream_reset_rate_limit(o, 1000, 100);
    return o;
  }();
  return options;
}

}  // namespace

ClientSession::ClientSession(ConnectionEnv* env, int fd, std::string peer, CallFactory* calls)
    : Connection(env, fd, std::move(peer)), calls_(calls), created_(env->loop->now()) {
  const ProxyOptions& options = *env->options;
  if (options.tls_context != nullptr) {
    transport_.StartServerTls(*options.tls_context);
    phase_ = Phase::kHandshaking;
  }
  nghttp2_session_server_new3(&session_, ServerCallbacks(), this, ServerOptions(),
                              env->session_mem);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options.stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxRequestHeaderBytes},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 3);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(options.connection_window));
  Register(false);
  env->metrics->downstream_connections.fetch_add(1, std::memory_order_relaxed);
  env->metrics->downstream_connections_total.fetch_add(1, std::memory_order_relaxed);
  MarkDirty();
}

ClientSession::~ClientSession() {
  env_->metrics->downstream_connections.fetch_sub(1, std::memory_order_relaxed);
}

void ClientSession::SendGoawayNotice() {
  if (goaway_ != Goaway::kNone || dead()) return;
  // Two steps, as RFC 9113 suggests: a notice first, then the real last-stream-id once streams
  // the client sent meanwhile have arrived.
  nghttp2_submit_shutdown_notice(session_);
  goaway_ = Goaway::kNoticeSent;
  final_goaway_at_ = env_->loop->now() + kGoawayNoticeLead;
  MarkDirty();
}

void ClientSession::Housekeep(bool shutting_down, absl::Time shutdown_deadline) {
  const absl::Time now = env_->loop->now();
  const ProxyOptions& options = *env_->options;
  if (options.max_connection_age != absl::InfiniteDuration() && goaway_ == Goaway::kNone &&
      now - created_ >= options.max_connection_age) {
    SendGoawayNotice();
    force_close_at_ = now + options.max_connection_age_grace;
  }
  if (goaway_ == Goaway::kNoticeSent && now >= final_goaway_at_) {
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                          nullptr, 0);
    goaway_ = Goaway::kFinalSent;
    MarkDirty();
  }
  if (now >= force_close_at_ || (shutting_down && now >= shutdown_deadline)) {
    MarkDead("closing: grace period over");
  }
}

void ClientSession::OnClosed() {
  for (Call* call : TakeStreams()) call->OnClientStreamClosed();
}

void ClientSession::SubmitResponse(int32_t stream, const HeaderBlock& headers, bool body) {
  headers.ToNv(&env_->nva);
  nghttp2_data_provider provider{};
  provider.read_callback = ReadResponseBodyCb;
  nghttp2_submit_response(session_, stream, env_->nva.data(), env_->nva.size(),
                          body ? &provider : nullptr);
  MarkDirty();
}

bool ClientSession::SubmitTrailers(int32_t stream, const HeaderBlock& trailers) {
  trailers.ToNv(&env_->nva);
  return nghttp2_submit_trailer(session_, stream, env_->nva.data(), env_->nva.size()) == 0;
}

void ClientSession::ResumeBody(int32_t stream, bool was_deferred) {
  if (was_deferred) nghttp2_session_resume_data(session_, stream);
  MarkDirty();
}

bool ClientSession::TakeBody(Call& call, int32_t stream_id, size_t n,
                             absl::FunctionRef<void(const char*, size_t)> sink) {
  if (!call.OwnsClientStream(this, stream_id)) return false;
  call.TakeResponseBody(n, sink);
  return true;
}

void ClientSession::Consume(int32_t stream, size_t bytes) {
  nghttp2_session_consume(session_, stream, bytes);
  MarkDirty();
}

void ClientSession::Reset(int32_t stream, uint32_t error_code) {
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, error_code);
  MarkDirty();
}

int ClientSession::OnBeginHeaders(const nghttp2_frame* frame) {
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    AddStream(frame->hd.stream_id, calls_->NewCall(this, frame->hd.stream_id));
  }
  return 0;
}

int ClientSession::OnHeader(const nghttp2_frame* frame, absl::string_view name,
                            absl::string_view value) {
  Call* call = FindStream(frame->hd.stream_id);
  if (call == nullptr) return 0;
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;  // request trailers: not gRPC
  // Too many header bytes: resets this stream only.
  return call->OnRequestHeader(name, value) ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

int ClientSession::OnFrameRecv(const nghttp2_frame* frame) {
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  Call* call = FindStream(frame->hd.stream_id);
  if (call == nullptr) return 0;
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    call->OnRequestHeadersDone(end_stream);
  } else if (end_stream) {
    call->OnRequestEnd();
  }
  return 0;
}

int ClientSession::OnDataChunk(int32_t stream_id, const uint8_t* data, size_t len) {
  Call* call = FindStream(stream_id);
  if (call == nullptr) {
    // Nobody will forward these bytes: give the credit back at once.
    nghttp2_session_consume(session_, stream_id, len);
    return 0;
  }
  call->OnRequestData(data, len);
  return 0;
}

int ClientSession::OnStreamClose(int32_t stream_id) {
  Call* call = FindStream(stream_id);
  if (call == nullptr) return 0;
  EraseStream(stream_id);
  call->OnClientStreamClosed();
  return 0;
}

}  // namespace sluice::proxy
