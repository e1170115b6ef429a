#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "sluice/proxy/call.h"
#include "sluice/proxy/connection.h"

namespace sluice::proxy {

// Where a client session gets a new call for each request stream (the worker).
class CallFactory {
 public:
  virtual Call* NewCall(ClientSide* client, int32_t stream) = 0;

 protected:
  ~CallFactory() = default;
};

// One client connection (as nghttpx's shrpx_http2_upstream): the server side of an nghttp2
// session, whose user_data is this object. It announces SETTINGS, turns each request stream into
// a Call and passes the stream's events to it, and ends the connection with a two-step GOAWAY
// (at shutdown, or when the connection reaches its maximum age).
// ClientSide first: the calls' many calls into it then need no this-adjusting thunk.
class ClientSession final : public ClientSide, public Connection {
 public:
  ClientSession(ConnectionEnv* env, int fd, std::string peer, CallFactory* calls);
  ~ClientSession() override;

  // GOAWAY's first step: no new streams, please (the real last-stream-id follows shortly).
  void SendGoawayNotice();
  // Connection age, the final GOAWAY, and closing at the end of a grace period or shutdown.
  void Housekeep(bool shutting_down, absl::Time shutdown_deadline);
  void OnClosed() override;

  // ClientSide.
  void SubmitResponse(int32_t stream, const HeaderBlock& headers, bool body) override;
  bool SubmitTrailers(int32_t stream, const HeaderBlock& trailers) override;
  void ResumeBody(int32_t stream, bool was_deferred) override;
  void Consume(int32_t stream, size_t bytes) override;
  void Reset(int32_t stream, uint32_t error_code) override;
  const std::string& peer() const override { return Connection::peer(); }

  // nghttp2's callbacks (user_data is the session).
  int OnBeginHeaders(const nghttp2_frame* frame);
  int OnHeader(const nghttp2_frame* frame, absl::string_view name, absl::string_view value);
  int OnFrameRecv(const nghttp2_frame* frame);
  int OnDataChunk(int32_t stream_id, const uint8_t* data, size_t len);
  int OnStreamClose(int32_t stream_id);

 protected:
  const char* side() const override { return "client"; }
  bool TakeBody(Call& call, int32_t stream_id, size_t n,
                absl::FunctionRef<void(const char*, size_t)> sink) override;

 private:
  enum class Goaway : uint8_t { kNone, kNoticeSent, kFinalSent };

  CallFactory* const calls_;
  const absl::Time created_;
  Goaway goaway_ = Goaway::kNone;
  absl::Time final_goaway_at_ = absl::InfiniteFuture();
  absl::Time force_close_at_ = absl::InfiniteFuture();
};

}  // namespace sluice::proxy
