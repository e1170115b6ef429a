#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "sluice/proxy/event_loop.h"
#include "sluice/proxy/metrics.h"
#include "sluice/proxy/proxy.h"
#include "sluice/proxy/transport.h"

namespace sluice::proxy {

class Call;
class Connection;

// What every connection of one worker shares, owned by the worker.
struct ConnectionEnv {
  EventLoop* loop = nullptr;
  const ProxyOptions* options = nullptr;
  ProxyMetrics* metrics = nullptr;
  int worker_index = 0;
  // nghttp2's memory functions (the worker's SessionAllocator); null: malloc.
  nghttp2_mem* session_mem = nullptr;
  // Connections with frames to send (flushed once per loop pass), and those to close.
  std::vector<Connection*> dirty;
  std::vector<Connection*> dead;
  // Scratch reused by every connection: one read at a time, one header block at a time.
  std::vector<uint8_t> read_buffer = std::vector<uint8_t>(64 << 10);
  std::vector<nghttp2_nv> nva;
};

// The part both kinds of connection share (as nghttpx's shrpx_connection): a transport, its
// nghttp2 session, the bytes waiting to be written and the calls by stream id. Reads feed the
// session; Flush gathers the session's frames into one buffer and writes it.
class Connection : public IoHandler {
 public:
  enum class Phase : uint8_t { kConnecting, kHandshaking, kOpen };

  Connection(ConnectionEnv* env, int fd, std::string peer);
  virtual ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  nghttp2_session* session() const { return session_; }
  const std::string& peer() const { return peer_; }
  int fd() const { return transport_.fd(); }
  bool dead() const { return dead_; }
  Phase phase() const { return phase_; }

  // Frames are waiting: Flush at the end of this loop pass.
  void MarkDirty() {
    if (dead_ || dirty_) return;
    dirty_ = true;
    env_->dirty.push_back(this);
  }
  void ClearDirty() { dirty_ = false; }
  // The connection closes at the end of this loop pass (the worker's CloseDead); `why` is
  // logged at debug level unless empty.
  void MarkDead(absl::string_view why);
  void Flush();

  // The calls on this connection by stream id. nghttp2 calls back once per header and frame,
  // mostly for the stream it just reported, so the last lookup is remembered.
  Call* FindStream(int32_t stream_id) {
    if (stream_id == last_stream_id_ && last_call_ != nullptr) return last_call_;
    auto it = streams_.find(stream_id);
    if (it == streams_.end()) return nullptr;
    last_stream_id_ = stream_id;
    last_call_ = it->second;
    return last_call_;
  }
  void AddStream(int32_t stream_id, Call* call) { streams_[stream_id] = call; }
  void EraseStream(int32_t stream_id) {
    streams_.erase(stream_id);
    if (stream_id == last_stream_id_) last_call_ = nullptr;
  }
  std::vector<Call*> TakeStreams();
  size_t stream_count() const { return streams_.size(); }

  // nghttp2's send-data callback for a DATA frame sent without a copy (NO_COPY): its 9-byte
  // header, then the call's `length` bytes straight from the call's buffer into the output.
  // Returns 0, NGHTTP2_ERR_WOULDBLOCK while the output is full (nghttp2 asks again after the
  // next write), or NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE (that stream is reset) if the
  // stream's call is gone.
  int SendDataFrame(const nghttp2_frame* frame, const uint8_t* frame_header, size_t length);

  void OnIo(uint32_t events) override;
  // The connection is closing: its calls learn it. Called once, by the worker, before delete.
  virtual void OnClosed() = 0;

 protected:
  // "client" or "backend", for log lines.
  virtual const char* side() const = 0;
  // The TLS handshake finished: false to close (the reason logged by the override).
  virtual bool OnHandshakeDone() { return true; }
  // Puts the descriptor in the loop (EPOLLOUT too when `want_write`: a connect in progress).
  void Register(bool want_write) {
    want_write_ = want_write;
    env_->loop->Add(transport_.fd(), this, want_write);
  }
  // Hands `n` bytes of `call`'s body for `stream_id` to `sink` (the response towards a client,
  // the request towards a backend); false if the call no longer owns that stream.
  virtual bool TakeBody(Call& call, int32_t stream_id, size_t n,
                        absl::FunctionRef<void(const char*, size_t)> sink) = 0;
  // Runs the handshake; true once the connection is open.
  bool Handshake();
  void SetWantWrite(bool on);
  void ReadFrom();

  ConnectionEnv* const env_;
  Transport transport_;
  const std::string peer_;
  nghttp2_session* session_ = nullptr;
  Phase phase_ = Phase::kOpen;

 private:
  std::string out_;
  size_t out_off_ = 0;
  bool dirty_ = false;
  bool dead_ = false;
  bool want_write_ = false;
  absl::flat_hash_map<int32_t, Call*> streams_;
  int32_t last_stream_id_ = 0;
  Call* last_call_ = nullptr;
};

}  // namespace sluice::proxy
