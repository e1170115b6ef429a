#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "sluice/proxy/backend_readiness.h"
#include "sluice/proxy/call.h"
#include "sluice/proxy/connection.h"
#include "sluice/proxy/tls.h"

namespace sluice::proxy {

// One connection to a backend (as nghttpx's shrpx_http2_session): the client side of an nghttp2
// session, whose user_data is this object. Connects (non-blocking, then TLS when its route asks
// for it), carries the streams of calls' attempts and passes each stream's events to its call.
// BackendSide first: the calls' many calls into it then need no this-adjusting thunk.
class BackendSession final : public BackendSide, public Connection {
 public:
  // Whether new streams may go here.
  enum class Availability : uint8_t {
    kOpen,
    kGoawayReceived,  // the backend is going away: no new streams
    kDraining,        // idle too long: closing
  };

  // `fd` is connecting (non-blocking) unless `connected`; `tls` null: plain HTTP/2.
  BackendSession(ConnectionEnv* env, int fd, std::string address, const TlsContext* tls,
                 bool connected);
  ~BackendSession() override;

  // Whether the backend has shown it speaks HTTP/2 here (its SETTINGS arrived).
  enum class Confirmation : uint8_t { kAwaitingSettings, kConfirmed };

  Availability availability() const { return availability_; }
  Confirmation confirmation() const { return confirmation_; }
  // `readiness` hears how this connection turns out (confirmed, failed, broken). The route that
  // opened it is told from the start; another route sharing it, once it probes.
  void TellReadiness(BackendReadiness* readiness);
  bool accepts_streams() const { return !dead() && availability_ == Availability::kOpen; }
  // How many streams the backend allows at once (its SETTINGS_MAX_CONCURRENT_STREAMS).
  uint32_t remote_max_streams() const;
  absl::Time last_used() const { return last_used_; }
  // No call used this connection for `idle`: GOAWAY and close it.
  void CloseIfIdle(absl::Duration idle);

  void OnIo(uint32_t events) override;
  void OnClosed() override;

  // BackendSide.
  int32_t SubmitRequest(Call* call, const HeaderBlock& headers, absl::string_view timeout,
                        bool body) override;
  void ResumeBody(int32_t stream, bool was_deferred) override;
  void Consume(int32_t stream, size_t bytes) override;
  void Detach(int32_t stream, uint32_t error_code) override;
  const std::string& address() const override { return peer(); }

  // nghttp2's callbacks (user_data is the session).
  int OnBeginHeaders(const nghttp2_frame* frame);
  int OnHeader(const nghttp2_frame* frame, absl::string_view name, absl::string_view value);
  int OnFrameRecv(const nghttp2_frame* frame);
  int OnDataChunk(int32_t stream_id, const uint8_t* data, size_t len);
  int OnStreamClose(int32_t stream_id, uint32_t error_code);

 protected:
  const char* side() const override { return "backend"; }
  bool TakeBody(Call& call, int32_t stream_id, size_t n,
                absl::FunctionRef<void(const char*, size_t)> sink) override;
  bool OnHandshakeDone() override;

 private:
  const TlsContext* const tls_;
  Availability availability_ = Availability::kOpen;
  Confirmation confirmation_ = Confirmation::kAwaitingSettings;
  absl::Time last_used_;
  std::vector<BackendReadiness*> readiness_;
};

}  // namespace sluice::proxy
