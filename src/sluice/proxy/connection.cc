#include "sluice/proxy/connection.h"

#include <sys/epoll.h>

#include <string_view>

#include "absl/strings/str_cat.h"
#include "sluice/core/log.h"

namespace sluice::proxy {

Connection::Connection(ConnectionEnv* env, int fd, std::string peer)
    : env_(env), transport_(fd), peer_(std::move(peer)) {}

Connection::~Connection() {
  // Out of the loop before the transport closes the descriptor (see EventLoop::Remove).
  env_->loop->Remove(transport_.fd());
  if (session_ != nullptr) nghttp2_session_del(session_);
}

void Connection::MarkDead(absl::string_view why) {
  if (dead_) return;
  dead_ = true;
  env_->dead.push_back(this);
  if (!why.empty()) {
    LogDebug("sluice proxy: worker ", env_->worker_index, ": ", side(), " ", peer_, ": ", why);
  }
}

std::vector<Call*> Connection::TakeStreams() {
  std::vector<Call*> calls;
  calls.reserve(streams_.size());
  for (auto& [id, call] : streams_) calls.push_back(call);
  streams_.clear();
  last_call_ = nullptr;
  return calls;
}

void Connection::OnIo(uint32_t events) {
  if (dead_) return;
  if (phase_ == Phase::kHandshaking && !Handshake()) return;
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) ReadFrom();
  if (!dead_ && (events & EPOLLOUT) != 0) MarkDirty();
}

bool Connection::Handshake() {
  switch (transport_.ContinueHandshake()) {
    case Transport::Handshake::kDone:
      if (!OnHandshakeDone()) return false;
      phase_ = Phase::kOpen;
      SetWantWrite(false);
      MarkDirty();  // our SETTINGS are waiting
      return true;
    case Transport::Handshake::kWantRead:
      SetWantWrite(false);
      return false;
    case Transport::Handshake::kWantWrite:
      SetWantWrite(true);
      return false;
    case Transport::Handshake::kFailed:
      break;
  }
  env_->metrics->protocol_errors_total.fetch_add(1, std::memory_order_relaxed);
  const bool verifies_clients =
      side() == std::string_view("client") && !env_->options->tls_client_ca_file.empty();
  bool certificate_refused = false;
  const std::string why = transport_.HandshakeFailure(verifies_clients, &certificate_refused);
  if (certificate_refused) {
    env_->metrics->client_certificate_rejections_total.fetch_add(1, std::memory_order_relaxed);
  }
  LogWarning("sluice proxy: TLS handshake with ", side(), " ", peer_, " failed: ", why);
  MarkDead("TLS handshake failed");
  return false;
}

void Connection::SetWantWrite(bool on) {
  if (want_write_ == on) return;
  want_write_ = on;
  env_->loop->SetWantWrite(transport_.fd(), this, on);
}

void Connection::ReadFrom() {
  std::vector<uint8_t>& buffer = env_->read_buffer;
  // A few reads per event, so one busy connection cannot starve the others. TLS reads until
  // the socket is dry: bytes OpenSSL has buffered would not wake epoll again.
  for (int round = 0; (round < 4 || transport_.tls()) && !dead_; ++round) {
    const ssize_t n = transport_.Read(buffer.data(), buffer.size());
    if (n == 0) {
      MarkDead("peer closed the connection");
      return;
    }
    if (n == Transport::kWouldBlock) break;
    if (n < 0) {
      std::string tls_reason;
      const std::string why = transport_.IoFailure("read", &tls_reason);
      // With TLS 1.3 a backend refuses the proxy's client certificate only after the
      // handshake, with an alert: say so without debug logging.
      if (!tls_reason.empty() && side() == std::string_view("backend")) {
        LogWarning("sluice proxy: backend ", peer_, " closed the TLS connection: ", tls_reason);
      }
      MarkDead(why);
      return;
    }
    const ssize_t rv = nghttp2_session_mem_recv(session_, buffer.data(), n);
    if (rv < 0) {
      // Not HTTP/2: GOAWAY(PROTOCOL_ERROR); a flood of frames that each ask for an answer
      // (PING, SETTINGS) from a peer that does not read them: GOAWAY(ENHANCE_YOUR_CALM). Then
      // close, this connection only.
      env_->metrics->protocol_errors_total.fetch_add(1, std::memory_order_relaxed);
      if (rv == NGHTTP2_ERR_HEADER_COMP) {
        // nghttp2 (1.52) decodes one header field (name + value) of at most 64 KiB
        // (NGHTTP2_HD_MAX_NV, fixed when the library is built; no option raises it). Past it the
        // connection's shared HPACK state is lost, so the whole connection goes with
        // COMPRESSION_ERROR, not just that call: say so, since clients see only a dropped
        // connection.
        LogWarning("sluice proxy: closing ", side(), " connection ", peer_,
                   ": a header field over 64 KiB (name + value; nghttp2's HPACK limit) cannot be "
                   "decoded; every call on this connection fails with it. Keep each header "
                   "field (metadata entry) under 64 KiB");
      } else {
        LogWarning("sluice proxy: closing ", side(), " connection ", peer_, ": ",
                   nghttp2_strerror(static_cast<int>(rv)));
      }
      nghttp2_session_terminate_session(
          session_, rv == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
      MarkDirty();
      break;
    }
    if (!transport_.tls() && static_cast<size_t>(n) < buffer.size()) break;
  }
  MarkDirty();
}

int Connection::SendDataFrame(const nghttp2_frame* frame, const uint8_t* frame_header,
                              size_t length) {
  if (out_.size() - out_off_ >= env_->options->write_buffer_limit) return NGHTTP2_ERR_WOULDBLOCK;
  Call* call = FindStream(frame->hd.stream_id);
  // No padding is ever asked for (no select-padding callback), so the frame is header + data.
  if (call == nullptr || frame->data.padlen > 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  const size_t before = out_.size();
  out_.append(reinterpret_cast<const char*>(frame_header), 9);
  const bool taken = TakeBody(*call, frame->hd.stream_id, length,
                              [this](const char* data, size_t n) { out_.append(data, n); });
  if (!taken || out_.size() - before != 9 + length) {
    out_.resize(before);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  return 0;
}

void Connection::Flush() {
  if (dead_ || phase_ != Phase::kOpen) return;
  const size_t limit = env_->options->write_buffer_limit;
  for (;;) {
    // Gather frames into one buffer, then one write: few, full writes are the cheap ones.
    while (out_.size() - out_off_ < limit) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) {
        MarkDead(absl::StrCat("nghttp2: ", nghttp2_strerror(static_cast<int>(n))));
        return;
      }
      if (n == 0) break;
      out_.append(reinterpret_cast<const char*>(data), n);
    }
    if (out_off_ == out_.size()) break;
    const ssize_t w = transport_.Write(out_.data() + out_off_, out_.size() - out_off_);
    if (w < 0) {
      if (w == Transport::kWouldBlock) break;
      std::string tls_reason;
      MarkDead(transport_.IoFailure("write", &tls_reason));
      return;
    }
    out_off_ += w;
    if (out_off_ < out_.size()) break;
    out_.clear();
    out_off_ = 0;
  }
  const bool pending = out_off_ < out_.size();
  SetWantWrite(pending);
  if (!pending && !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) {
    MarkDead("");
  }
}

}  // namespace sluice::proxy
